"""The ``evalwatt`` command: plan a run, compute energy from recorded traces, run a job."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from evalwatt.base.errors import EXIT_USER_ERROR, UserError
from evalwatt.base.paths import DEFAULT_CONFIG
from evalwatt.config.load import describe_schema, load_config
from evalwatt.energy.sources import INFERENCE_WINDOW, JOB_WINDOW, PAD_WINDOW, TraceSource
from evalwatt.energy.terms import cell_terms, parse_count
from evalwatt.energy.trace import read_timeline, read_trace
from evalwatt.plan.estimate import cost_preview
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.runner import main as job_main
from evalwatt.table.final import describe_columns


def _plan(args: argparse.Namespace) -> int:
    config = load_config(args.configfile)
    plan = plan_run(config)
    if args.json:
        print(json.dumps([m.__dict__ for m in plan.models.values()], indent=2))
        return 0
    print(f"run {config.run} on {config.cluster['name']}: {len(plan.models)} models")
    print(f"{'model':42} {'backend':9} {'GPUs':>4} {'CPUs':>4} {'VRAM GB':>8}  why")
    for m in plan.models.values():
        print(f"{m.model:42} {m.backend:9} {m.gpus:>4} {m.cpus:>4} {m.vram_gb:>8.1f}  {m.reason}")
    cost = cost_preview(plan, config)
    print(
        f"\n{cost['cells']} cells, {cost['baselines']} load-only baselines, "
        f"{cost['judge_jobs']} judge jobs"
    )
    print("estimated GPU-hours (rough: assumptions below, not measurements):")
    for part, hours in cost["gpu_hours"].items():
        print(f"  {part:10} {hours:10.2f}")
    print(f"  {'total':10} {cost['gpu_hours_total']:10.2f}")
    print("assumptions: " + ", ".join(f"{k}={v}" for k, v in cost["assumptions"].items()))
    return 0


def _energy(args: argparse.Namespace) -> int:
    """Energy terms of one recorded trace as JSON on stdout.

    Bad input (a file that cannot be read, a malformed trace or timeline, a mark missing, out of
    order or outside the trace, a count below 1) is a UserError: one line, exit 2. A counter
    that went backwards inside a window is not bad input but a fact of the measurement (a
    driver reload or GPU reset): that term is null with the reason, the same null the final
    table carries; if it is the headline inference window, ``inference_energy_j`` is null
    with ``inference_null_reason``, a note says so on stderr, and the exit code is 0."""
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
    terms = cell_terms(cell, baseline, None, questions, tokens)
    inference = terms["terms"]["inference"]
    measured = inference["energy_j"] is not None
    out: dict[str, Any] = {
        "trace": str(args.trace),
        "source": cell.name,
        "is_estimate": cell.is_estimate,
        "devices": cell.trace.devices,
        "inference_energy_j": inference["energy_j"],
        "inference_null_reason": inference["null_reason"],
        "inference_duration_s": _duration(inference["window"]),
        "check_counter_samples_inside_window_j": (
            _samples_inside(cell, inference["window"]) if measured else None
        ),
        "check_power_integral_j": inference["power_integral_j"],
        "whole_job": {
            k: terms["terms"][k]["energy_j"]
            for k in ("job", "pad", "baseline_job", "baseline_pad", "net")
        },
        "gap_j": terms["terms"]["gap"]["energy_j"],
        "gap_pct": terms["gap_pct"],
        "per_unit_wh": {k: v["value_wh"] for k, v in terms["per_unit"].items()},
        "terms": terms["terms"],
    }
    print(json.dumps(out, indent=2, allow_nan=False))  # a NaN here is a bug: fail loudly
    if not measured:
        print(
            f"evalwatt energy: note: inference_energy_j is null: {inference['null_reason']}",
            file=sys.stderr,
        )
    return 0


def _duration(window: tuple[float, float] | None) -> float | None:
    return None if window is None else window[1] - window[0]


def _samples_inside(source: Any, window: tuple[float, float]) -> float | None:
    """Counter difference between the first and last samples inside the headline window (no
    interpolation): the reference the interpolated value is checked against. None when a
    device has fewer than two samples there or its counter went backwards there."""
    return source.trace.inner_counter_j(*window)


def _job(args: argparse.Namespace) -> int:
    return job_main([str(args.spec)])


def _schema(args: argparse.Namespace) -> int:
    sys.stdout.write(describe_columns() if args.what == "table" else describe_schema())
    return 0


def _glmm(args: argparse.Namespace) -> int:
    from evalwatt.report.glmm import main as glmm_main

    return glmm_main(args.rest)


def _figures(args: argparse.Namespace) -> int:
    from evalwatt.report.figures import main as figures_main

    return figures_main(args.rest)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evalwatt", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="GPU count per model and a cost preview")
    plan.add_argument("--configfile", type=Path, default=DEFAULT_CONFIG)
    plan.add_argument("--json", action="store_true", help="per-model plan as a JSON list")
    plan.set_defaults(func=_plan)

    energy = sub.add_parser("energy", help="energy terms of a recorded trace (JSON)")
    energy.add_argument("--trace", type=Path, required=True, help="CSV or Parquet trace")
    energy.add_argument("--timeline", type=Path, required=True, help="marks JSON")
    energy.add_argument("--baseline-trace", type=Path)
    energy.add_argument("--baseline-timeline", type=Path)
    energy.add_argument(
        "--questions", metavar="N", help="completed samples, >= 1 (for Wh per question)"
    )
    energy.add_argument(
        "--output-tokens", metavar="N", help=">= 1; default: output_tokens of the marks"
    )
    energy.set_defaults(func=_energy)

    job = sub.add_parser("job", help="run one rendered job (what job.sbatch calls)")
    job.add_argument("spec", type=Path)
    job.set_defaults(func=_job)

    schema = sub.add_parser("schema", help="print the final table's columns or the config keys")
    schema.add_argument("what", choices=["table", "config"])
    schema.set_defaults(func=_schema)
    __import__("evalwatt.ops.status").ops.status.register(sub)  # evalwatt status
    __import__("evalwatt.ops.submit").ops.submit.register(sub)  # evalwatt submit
    __import__("evalwatt.ops.staging").ops.staging.register(sub)  # evalwatt stage
    __import__("evalwatt.report.audit").report.audit.register(sub)  # evalwatt audit
    __import__("evalwatt.table.repeats").table.repeats.register(sub)  # evalwatt repeats
    glmm = sub.add_parser(
        "glmm", help="refit the study's Gamma GLMM on a table (the glmm extra)", add_help=False
    )
    glmm.add_argument("rest", nargs=argparse.REMAINDER)
    glmm.set_defaults(func=_glmm)
    figures = sub.add_parser("figures", help="figures from a final table", add_help=False)
    figures.add_argument("rest", nargs=argparse.REMAINDER)
    figures.set_defaults(func=_figures)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Expected errors (``UserError``: bad config, sheet, trace, value) become
    one message on stderr and exit 2; only real bugs show a traceback."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"evalwatt {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:  # `evalwatt ... | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
