"""Where each cell, baseline, model job, judge pass and repeat of a run stands, from its
results folder and (when there is one) Slurm. Exit 0 when every job is done, 1 when some are
not, 2 for bad input.

(``evalwatt status``, the description its --help shows; the states are evalwatt.ops.status's.)
"""

from __future__ import annotations

import argparse
import json
import sys

from evalwatt.jobs.run import RunJobs
from evalwatt.ops.commands.common import (
    Subparsers,
    add_configfile,
    add_json,
    description,
    layout_of,
    load,
)
from evalwatt.ops.status import run_status
from evalwatt.ops.status_text import format_status
from evalwatt.plan.matrix import plan_run


def add(sub: Subparsers) -> None:
    what = "each job of the run: done, failed (why, log), running, pending, not started"
    p = sub.add_parser("status", help=what, description=description(__doc__))
    add_configfile(p)
    add_json(p, "one object per job")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args, check_environment=False)
    status = run_status(RunJobs(config, plan_run(config), layout_of(config)))
    if args.json:
        print(json.dumps([j.to_json() for j in status.jobs], indent=2))
    else:
        sys.stdout.write(format_status(status))
    return status.exit_code
