"""``evalwatt preview-check``: after a run, the cost preview against the seconds and GPU-seconds
each kind of job used, the run's measured rates, and (``--write-calibration FILE``) those rates
as a calibration file that the next preview reads (``planner.calibration``).

It reads the results on disk (``results/<run>/*/*/result.json``) and the config as it is now:
point ``planner.calibration`` at the file written here and `evalwatt plan` shows the calibrated
preview."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalwatt.base.errors import UserError
from evalwatt.ops.commands.common import Subparsers, add_configfile, description, layout_of, load
from evalwatt.plan.matrix import plan_run
from evalwatt.report.preview_check import run_check, write_calibration


def add(sub: Subparsers) -> None:
    p = sub.add_parser(
        "preview-check",
        help="after a run: the preview against measured GPU-seconds per job kind",
        description=description(__doc__),
    )
    add_configfile(p)
    p.add_argument(
        "--write-calibration",
        type=Path,
        metavar="FILE",
        help="write the run's measured rates there (JSON), for planner.calibration",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args, check_environment=False)
    layout = layout_of(config)
    if not layout.root.is_dir():
        raise UserError(f"{layout.root}: no results of run {config.run} to check")
    text, calibration = run_check(config, plan_run(config), layout)
    print(text, end="")
    if args.write_calibration:
        write_calibration(args.write_calibration, calibration)
        print(f"\nwrote {args.write_calibration}: set planner.calibration to it")
    return 0
