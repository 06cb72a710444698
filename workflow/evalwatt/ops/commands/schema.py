"""``evalwatt schema table|config``: the final table's columns or the config's keys, as the
reference pages in docs/ embed them."""

from __future__ import annotations

import argparse
import sys

from evalwatt.config.load import describe_schema
from evalwatt.ops.commands.common import Subparsers
from evalwatt.table.final import describe_columns


def add(sub: Subparsers) -> None:
    p = sub.add_parser("schema", help="print the final table's columns or the config keys")
    p.add_argument("what", choices=["table", "config"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(describe_columns() if args.what == "table" else describe_schema())
    return 0
