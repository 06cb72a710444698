"""``evalwatt repeats``: the mean and spread of every cell's repeats, as a table
(evalwatt.table.repeats)."""

from __future__ import annotations

import argparse

from evalwatt.ops.commands.common import Subparsers, add_configfile, layout_of, load
from evalwatt.plan.matrix import plan_run
from evalwatt.table.repeats import write_repeats_table


def add(sub: Subparsers) -> None:
    p = sub.add_parser("repeats", help="mean and spread of the cells' repeats (a table)")
    add_configfile(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    print(write_repeats_table(config, plan_run(config), layout_of(config)))
    return 0
