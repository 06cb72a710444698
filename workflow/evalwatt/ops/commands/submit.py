"""Send one cell, or N repeats of it for a variance study, outside the Snakemake DAG.

(``evalwatt submit CELL [--repeats N]``, the description its --help shows; the work is
evalwatt.ops.submit's.)
"""

from __future__ import annotations

import argparse

from evalwatt.ops.commands.common import Subparsers, add_configfile, description, load
from evalwatt.ops.submit import EXECUTORS, MAX_REPEATS, submit_cell
from evalwatt.plan.matrix import plan_run


def add(sub: Subparsers) -> None:
    what = "send one cell, or N repeats of it, outside the DAG (submitit)"
    p = sub.add_parser("submit", help=what, description=description(__doc__))
    p.add_argument("cell", help="cell id (evalwatt status lists them)")
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help=f"run repeats 1..N as <cell>__r1..__rN (1 to {MAX_REPEATS}); default: the cell",
    )
    add_configfile(p)
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="auto",
        help="auto (default): Slurm when sbatch is on PATH, else local (one job at a time)",
    )
    p.add_argument("--wait", action="store_true", help="wait for Slurm jobs to end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    submitted = submit_cell(
        config,
        plan_run(config),
        args.cell,
        repeats=args.repeats,
        executor=args.executor,
        wait=args.wait,
    )
    print(f"{len(submitted)} job(s) sent; `evalwatt status --configfile {args.configfile}`")
    return 0
