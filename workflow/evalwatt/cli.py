"""The ``evalwatt`` command: plan a run, compute energy from recorded traces, run a job."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evalwatt.errors import EXIT_USER_ERROR, UserError
from evalwatt.paths import REPO_DIR

DEFAULT_CONFIG = REPO_DIR / "config" / "config.yaml"


def _plan(args: argparse.Namespace) -> int:
    from evalwatt.config import load_config
    from evalwatt.plan import cost_preview, plan_run

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
    from evalwatt.energy.sources import TraceSource
    from evalwatt.energy.terms import cell_terms
    from evalwatt.energy.trace import read_timeline, read_trace

    marks = read_timeline(args.timeline)
    cell = TraceSource(read_trace(args.trace), marks)
    baseline = None
    if args.baseline_trace:
        if not args.baseline_timeline:
            raise UserError("--baseline-trace needs --baseline-timeline")
        baseline = TraceSource(
            read_trace(args.baseline_trace), read_timeline(args.baseline_timeline)
        )
    tokens = args.output_tokens or marks.get("output_tokens")
    terms = cell_terms(cell, baseline, None, args.questions, int(tokens) if tokens else None)
    inference = terms["terms"]["inference"]
    samples = _samples_inside(cell, marks)
    out: dict[str, Any] = {
        "trace": str(args.trace),
        "source": cell.name,
        "is_estimate": cell.is_estimate,
        "devices": cell.trace.devices,
        "inference_energy_j": inference["energy_j"],
        "inference_duration_s": marks["inference_end"] - marks["inference_start"],
        "check_counter_samples_inside_window_j": samples,
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
    print(json.dumps(out, indent=2))
    return 0


def _samples_inside(source: Any, marks: dict[str, float]) -> float:
    """Counter difference between the first and last samples inside the inference window
    (no interpolation): the reference the interpolated value is checked against."""
    total = 0.0
    for s in source.trace.series.values():
        inside = [
            (t, e)
            for t, e in zip(s.t_unix, s.energy_mj, strict=True)
            if marks["inference_start"] <= t <= marks["inference_end"]
        ]
        total += (inside[-1][1] - inside[0][1]) / 1000.0
    return total


def _job(args: argparse.Namespace) -> int:
    from evalwatt.runtime.job import main as job_main

    return job_main([str(args.spec)])


def _schema(args: argparse.Namespace) -> int:
    from evalwatt.config import describe_schema
    from evalwatt.results import describe_columns

    sys.stdout.write(describe_columns() if args.what == "table" else describe_schema())
    return 0


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
    energy.add_argument("--questions", type=int, help="completed samples (for Wh per question)")
    energy.add_argument("--output-tokens", type=int, help="default: output_tokens of the marks")
    energy.set_defaults(func=_energy)

    job = sub.add_parser("job", help="run one rendered job (what job.sbatch calls)")
    job.add_argument("spec", type=Path)
    job.set_defaults(func=_job)

    schema = sub.add_parser("schema", help="print the final table's columns or the config keys")
    schema.add_argument("what", choices=["table", "config"])
    schema.set_defaults(func=_schema)
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
