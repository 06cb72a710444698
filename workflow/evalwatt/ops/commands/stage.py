"""On the login node: check, and with --download fetch, the model weights and the benchmarks'
datasets the run's jobs read, and write the stage manifest. Exit 0 when everything is staged,
1 when something is missing, 2 for bad input.

(``evalwatt stage``, the description its --help shows; the work is evalwatt.ops.staging's.)
"""

from __future__ import annotations

import argparse
import json

from evalwatt.ops.commands.common import Subparsers, add_configfile, add_json, description, load
from evalwatt.ops.staging import format_items, stage
from evalwatt.plan.matrix import plan_run


def add(sub: Subparsers) -> None:
    what = "check (--download: fetch) the weights and datasets offline jobs need"
    p = sub.add_parser("stage", help=what, description=description(__doc__))
    add_configfile(p)
    p.add_argument("--download", action="store_true", help="fetch what is missing (online)")
    add_json(p, "one object per item")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args, check_environment=False)
    items, manifest = stage(config, plan_run(config), download=args.download)
    if args.json:
        print(json.dumps([i.to_json() for i in items], indent=2))
    else:
        print(format_items(items))
        print(f"manifest: {manifest}")
    return 0 if all(i.ready for i in items) else 1
