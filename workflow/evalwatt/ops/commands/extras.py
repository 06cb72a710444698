"""``evalwatt glmm`` and ``evalwatt figures``: the optional extras, their arguments passed
through unparsed. Their modules need JAX or matplotlib, so they are imported only when run."""

from __future__ import annotations

import argparse

from evalwatt.ops.commands.common import Subparsers


def add(sub: Subparsers) -> None:
    glmm = sub.add_parser(
        "glmm", help="refit the study's Gamma GLMM on a table (the glmm extra)", add_help=False
    )
    glmm.add_argument("rest", nargs=argparse.REMAINDER)
    glmm.set_defaults(func=run_glmm)
    figures = sub.add_parser("figures", help="figures from a final table", add_help=False)
    figures.add_argument("rest", nargs=argparse.REMAINDER)
    figures.set_defaults(func=run_figures)


def run_glmm(args: argparse.Namespace) -> int:
    from evalwatt.report.glmm import main as glmm_main

    return glmm_main(args.rest)


def run_figures(args: argparse.Namespace) -> int:
    from evalwatt.report.figures import main as figures_main

    return figures_main(args.rest)
