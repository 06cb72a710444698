"""What running the study costs in each execution mode, by phase, from the cost preview.

What it computes
    The study matrix (config/peren.yaml: 22 models, 6 benchmarks, temperatures 0 and 0.7,
    max_connections 10, 100 and 1000) planned by evalwatt, then its cost preview
    (``evalwatt.plan.estimate.cost_preview``, the estimates that also set each job's time
    limit) in both execution modes: GPU-hours by phase (generation, loading, reference idle,
    idle, padding, judging generation, the rest of judging) and Slurm jobs by kind. Then, per
    model, the share of its own jobs' GPU-hours outside generation in both modes.

Why
    Issue 17's goal: in per-model mode, GPU-hours outside generation and judging generation at
    most 10 % of the run's, printed beside the per-cell figure. The preview is the throughput
    model (config/throughput.yaml), calibrated by a run's measured rates where
    ``--calibration FILE`` (``evalwatt preview-check --write-calibration``) is given: without
    it the figures are the table's, and the script says so.

`--short` is the check CI runs (tests/test_benchmarks.py): 3 of the study's models and its
judge's, one temperature, two max_connections; figures printed, the goal not judged. The full
run exits 1 when the per-model share is above the goal.

    .venv/bin/python benchmarks/overhead.py                        # the study, both modes
    .venv/bin/python benchmarks/overhead.py --calibration cal.json # from a run's rates
    .venv/bin/python benchmarks/overhead.py --short --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from evalwatt.config.load import from_dict  # noqa: E402
from evalwatt.config.types import Config  # noqa: E402
from evalwatt.contracts.plan import CostPreview  # noqa: E402
from evalwatt.plan.estimate import cost_preview, per_cell_preview, per_model_preview  # noqa: E402
from evalwatt.plan.matrix import Plan, plan_run  # noqa: E402
from evalwatt.plan.preview import fixed_width, job_rows, phase_rows  # noqa: E402

STUDY = REPO / "config" / "peren.yaml"
GOAL_SHARE = 0.10
OWN_PHASES = ("loading", "reference_idle", "idle", "padding")


def study_config(short: bool, calibration: Path | None) -> Config:
    """config/peren.yaml as it is (``--short``: its first 3 models and the judge's, one
    temperature, 2 max_connections). The weights live on Jean Zay: planning does not look for
    them."""
    raw = yaml.safe_load(STUDY.read_text(encoding="utf-8"))
    if short:
        raw["sweeps"] = {"temperature": [0.0], "max_connections": [10, 100]}
    if calibration is not None:
        raw.setdefault("planner", {})["calibration"] = str(calibration)
    config = from_dict(raw, STUDY.parent, origin=str(STUDY))
    if not short:
        return config
    judges = {j.model for j in config.judges.values()}
    kept = [m for i, m in enumerate(config.models) if i < 3 or m.name in judges]
    return config.replace(models=kept)


def sub_plan(plan: Plan, model: str) -> Plan:
    """The plan of one model's cells and baselines (its judge passes: its judged cells)."""
    cells = {i: c for i, c in plan.cells.items() if c.model == model}
    baselines = {i: b for i, b in plan.baselines.items() if b.model == model}
    return Plan(models=plan.models, baselines=baselines, cells=cells)


def own_share(hours: dict[str, float]) -> float | None:
    """A model's own jobs: GPU-hours outside generation over all of them (judging aside)."""
    own = sum(hours[p] for p in OWN_PHASES)
    total = own + hours["generation"]
    return own / total if total > 0 else None


def per_model_rows(plan: Plan, config: Config) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("model", "GPUs", "cells", "per-cell", "per-model", "jobs")]
    for model in dict.fromkeys(c.model for c in plan.cells.values()):
        one = sub_plan(plan, model)
        cell_mode, model_mode = per_cell_preview(one, config), per_model_preview(one, config)
        shares = [own_share(m.gpu_hours.model_dump()) for m in (cell_mode, model_mode)]
        rows.append(
            (
                model,
                str(plan.models[model].gpus),
                str(len(one.cells)),
                *("–" if s is None else f"{100 * s:.1f} %" for s in shares),
                f"{cell_mode.jobs.cell + cell_mode.jobs.baseline} -> {model_mode.jobs.model}",
            )
        )
    return rows


def figures(cost: CostPreview) -> dict[str, Any]:
    return {
        m.execution: {
            "jobs": m.jobs.model_dump(),
            "gpu_hours": m.gpu_hours.model_dump(),
            "gpu_hours_total": m.gpu_hours_total,
            "share_outside_generation": m.overhead_share,
        }
        for m in cost.modes
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="CI's small matrix")
    parser.add_argument("--calibration", type=Path, help="a calibration file (preview-check)")
    parser.add_argument("--json", type=Path, help="write the figures there")
    args = parser.parse_args(argv)
    config = study_config(args.short, args.calibration)
    plan = plan_run(config)
    cost = cost_preview(plan, config)
    source = f"calibrated by {args.calibration}" if args.calibration else "uncalibrated table"
    print(f"{STUDY.name}{' (short)' if args.short else ''}: {len(plan.models)} models, "
          f"{cost.cells} cells ({cost.judged_cells} judge-scored); preview: {source}")  # fmt: skip
    print(f"machine: {platform.node()}, Python {platform.python_version()}\n")
    print("\n".join(fixed_width(phase_rows(cost))))
    print()
    print("\n".join(fixed_width(job_rows(cost))))
    per_cell, per_model = cost.mode("per-cell"), cost.mode("per-model")
    share, beside = per_model.overhead_share or 0.0, per_cell.overhead_share or 0.0
    verdict = "meets" if share <= GOAL_SHARE else "misses"
    print(
        f"\nGPU-hours outside generation and judging generation: per-model {100 * share:.1f} % "
        f"(goal <= {100 * GOAL_SHARE:.0f} %: {verdict} it), per-cell {100 * beside:.1f} %"
    )
    print("\neach model's own jobs (judging aside): share outside generation, jobs")
    print("\n".join(fixed_width(per_model_rows(plan, config))))
    if args.json:
        args.json.write_text(json.dumps(figures(cost), indent=2) + "\n", encoding="utf-8")
    return 0 if args.short or share <= GOAL_SHARE else 1


if __name__ == "__main__":
    sys.exit(main())
