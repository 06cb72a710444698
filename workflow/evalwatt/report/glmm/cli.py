"""``evalwatt glmm TABLE``: refit the study's GLMM and print its table (text, or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evalwatt.base.errors import EXIT_USER_ERROR, UserError
from evalwatt.report.glmm.data import DEFAULT_ENERGY_COLUMN, load_table, prepare
from evalwatt.report.glmm.fit import DEFAULT_CHAINS, DEFAULT_DRAWS, fit
from evalwatt.report.glmm.terms import summarize
from evalwatt.report.glmm.text import format_report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evalwatt glmm",
        description="Refit the study's Gamma GLMM (energy per question per billion parameters).",
    )
    p.add_argument("table", type=Path, help="final table or CSV/Parquet (.parquet, .csv)")
    p.add_argument(
        "--energy-column",
        default=DEFAULT_ENERGY_COLUMN,
        help=f"energy in Wh per question (default {DEFAULT_ENERGY_COLUMN})",
    )
    p.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="draws per chain (and warm-up)")
    p.add_argument("--chains", type=int, default=DEFAULT_CHAINS, help="chains (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="the model's table as a JSON list")
    return p


def main(argv: list[str] | None = None) -> int:
    """``evalwatt glmm``: print the model's table (text, or ``--json``); UserError -> exit 2."""
    args = parser().parse_args(argv)
    try:
        data = prepare(load_table(args.table), args.energy_column)
        result = fit(data, draws=args.draws, chains=args.chains, seed=args.seed)
    except UserError as exc:
        print(f"evalwatt glmm: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    terms = summarize(result)
    if args.json:
        print(json.dumps([t.as_json() for t in terms], indent=2, allow_nan=False))
        for note in data.notes:
            print(f"evalwatt glmm: note: {note}", file=sys.stderr)
    else:
        sys.stdout.write(format_report(result, terms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
