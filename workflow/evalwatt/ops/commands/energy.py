"""``evalwatt energy``: the energy terms of one recorded trace (and its baseline's), as JSON.

Bad input (a file that cannot be read, a malformed trace or timeline, a mark missing, out of
order or outside the trace, a count below 1) is a UserError: one line, exit 2. A counter that
went backwards inside a window is not bad input but a fact of the measurement (a driver reload
or GPU reset): that term is null with the reason, the same null the final table carries; if it
is the headline inference window, ``inference_energy_j`` is null with ``inference_null_reason``,
a note says so on stderr, and the exit code is 0."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evalwatt.base.errors import UserError
from evalwatt.contracts.record import FamilyEnergy
from evalwatt.energy.sources import INFERENCE_WINDOW, JOB_WINDOW, PAD_WINDOW, TraceSource
from evalwatt.energy.terms import cell_terms, parse_count
from evalwatt.energy.trace_files import read_timeline, read_trace
from evalwatt.ops.commands.common import Subparsers


def add(sub: Subparsers) -> None:
    p = sub.add_parser("energy", help="energy terms of a recorded trace (JSON)")
    p.add_argument("--trace", type=Path, required=True, help="CSV or Parquet trace")
    p.add_argument("--timeline", type=Path, required=True, help="marks JSON")
    p.add_argument("--baseline-trace", type=Path)
    p.add_argument("--baseline-timeline", type=Path)
    p.add_argument("--questions", metavar="N", help="completed samples, >= 1 (for Wh per question)")
    p.add_argument("--output-tokens", metavar="N", help=">= 1; default: output_tokens of the marks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    questions = parse_count(args.questions, "--questions")
    tokens = parse_count(args.output_tokens, "--output-tokens")
    if bool(args.baseline_trace) != bool(args.baseline_timeline):
        raise UserError("--baseline-trace and --baseline-timeline go together: give both or none")
    marks = read_timeline(args.timeline)
    cell = TraceSource(read_trace(args.trace), marks)
    cell.check_marks(args.timeline, required=[INFERENCE_WINDOW], optional=[JOB_WINDOW, PAD_WINDOW])
    baseline = None
    if args.baseline_trace:
        baseline = TraceSource(
            read_trace(args.baseline_trace), read_timeline(args.baseline_timeline)
        )
        baseline.check_marks(args.baseline_timeline, required=[JOB_WINDOW, PAD_WINDOW])
    if tokens is None and "output_tokens" in marks:
        tokens = int(marks["output_tokens"])
    family = cell_terms(cell, baseline, None, questions, tokens)
    out = _summary(args.trace, cell, family)
    print(json.dumps(out, indent=2, allow_nan=False))  # a NaN here is a bug: fail loudly
    if out["inference_energy_j"] is None:
        print(
            f"evalwatt energy: note: inference_energy_j is null: {out['inference_null_reason']}",
            file=sys.stderr,
        )
    return 0


def _summary(trace: Path, cell: TraceSource, family: FamilyEnergy) -> dict[str, Any]:
    """The headline window, its checks, the whole-job terms and every term in full."""
    terms = family.terms
    inference = terms["inference"]
    return {
        "trace": str(trace),
        "source": cell.name,
        "is_estimate": cell.is_estimate,
        "devices": cell.trace.devices,
        "inference_energy_j": inference.energy_j,
        "inference_null_reason": inference.null_reason,
        "inference_duration_s": _duration(inference.window),
        "check_counter_samples_inside_window_j": (
            _samples_inside(cell, inference.window)
            if inference.energy_j is not None and inference.window is not None
            else None
        ),
        "check_power_integral_j": inference.power_integral_j,
        "whole_job": {
            k: terms[k].energy_j for k in ("job", "pad", "baseline_job", "baseline_pad", "net")
        },
        "gap_j": terms["gap"].energy_j,
        "gap_pct": family.gap_pct,
        "per_unit_wh": {k: v.value_wh for k, v in family.per_unit.items()},
        "terms": {k: t.model_dump(mode="json") for k, t in terms.items()},
    }


def _duration(window: tuple[float, float] | None) -> float | None:
    return None if window is None else window[1] - window[0]


def _samples_inside(source: TraceSource, window: tuple[float, float]) -> float | None:
    """Counter difference between the first and last samples inside the headline window (no
    interpolation): the reference the interpolated value is checked against. None when a
    device has fewer than two samples there or its counter went backwards there."""
    return source.trace.inner_counter_j(*window)
