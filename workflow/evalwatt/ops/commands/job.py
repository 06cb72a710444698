"""``evalwatt job SPEC``: run one rendered job (what every job.sbatch calls)."""

from __future__ import annotations

import argparse
from pathlib import Path

from evalwatt.ops.commands.common import Subparsers
from evalwatt.runtime.runner import main as job_main


def add(sub: Subparsers) -> None:
    p = sub.add_parser("job", help="run one rendered job (what job.sbatch calls)")
    p.add_argument("spec", type=Path)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return job_main([str(args.spec)])
