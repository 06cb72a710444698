"""Figures from the final table and from job traces (matplotlib, Agg canvas, PNG and SVG).

``make_figures(table, out_dir)`` draws every table figure it can and returns one
``FigureResult`` per figure: its files and caption, or the reason it was skipped (a table
without reasoning/non-reasoning pairs has no reasoning comparison, and says so).
``power_timeline(trace, timeline, out_dir)`` draws one job. ``write_index`` records the results
as JSON for the report. Same input, same bytes: no dates or random ids in the files.

docs/results.md explains how to read each figure; workflow/report/*.rst are their captions in
the Snakemake report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa

from evalwatt.base.atomic import write_text
from evalwatt.base.errors import EXIT_USER_ERROR, UserError
from evalwatt.base.layout import FIGURE_INDEX
from evalwatt.report.figures._common import FAMILIES, FigureResult, pick_family
from evalwatt.report.figures.tables import (
    energy_vs_params,
    energy_vs_time_tokens,
    max_connections,
    paired,
    score_vs_energy,
)
from evalwatt.report.figures.timeline import power_timeline
from evalwatt.table.final import read_table

__all__ = ["FigureResult", "main", "make_figures", "power_timeline", "write_index"]

NEEDED = (
    "model",
    "benchmark",
    "temperature",
    "max_connections",
    "gpus",
    "total_params_b",
    "active_params_b",
    "weight_bits",
    "moe",
    "reasoning",
    "score",
    "score_metric",
    "output_tokens",
    "inference_duration_s",
)


def make_figures(
    table: pa.Table,
    out_dir: Path | str,
    *,
    family: str | None = None,
    pairs: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> list[FigureResult]:
    """Every table figure, in a fixed order. ``family`` (gpu, cpu, cpu_est) picks the energy
    columns; None: the first family with values. ``pairs`` overrides the automatic model
    pairing per factor (``{"reasoning": [(with, without), ...]}``)."""
    out = Path(out_dir)
    rows = table.to_pylist()
    fam = pick_family(rows, family)
    needed = [*NEEDED, f"{fam}_energy_per_question_wh", f"{fam}_inference_energy_j"]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise UserError(f"the table has no column {', '.join(missing)}: the figures need it")
    if not rows:
        raise UserError("the table has no rows: nothing to draw")
    return [
        *score_vs_energy(rows, out, fam),
        energy_vs_time_tokens(rows, out, fam),
        energy_vs_params(rows, out, fam),
        *paired(rows, out, fam, pairs),
        max_connections(rows, out, fam),
    ]


def write_index(results: Sequence[FigureResult], path: Path | str) -> None:
    """The figures, their captions and skip reasons, as JSON (atomically)."""
    write_text(path, json.dumps([r.as_json() for r in results], indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """``evalwatt figures TABLE OUT_DIR [--family F] [--trace T --timeline M]``."""
    p = argparse.ArgumentParser(prog="evalwatt figures", description=__doc__.split("\n")[0])
    p.add_argument("table", type=Path, help="final table (.parquet)")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--family", choices=FAMILIES, help="energy columns (default: first with values)")
    p.add_argument("--trace", type=Path, action="append", default=[], help="a job's trace")
    p.add_argument("--timeline", type=Path, action="append", default=[], help="its timeline")
    args = p.parse_args(argv)
    try:
        if len(args.trace) != len(args.timeline):
            raise UserError("give one --timeline per --trace")
        results = make_figures(read_table(args.table), args.out_dir, family=args.family)
        for i, (trace, timeline) in enumerate(zip(args.trace, args.timeline, strict=True)):
            results.append(
                power_timeline(trace, timeline, args.out_dir, name=f"power_timeline__{i}")
            )
    except UserError as exc:
        print(f"evalwatt figures: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    write_index(results, args.out_dir / FIGURE_INDEX)
    for r in results:
        print(
            f"{r.name}: " + (f"skipped: {r.skipped}" if r.skipped else ", ".join(map(str, r.files)))
        )
    return 0
