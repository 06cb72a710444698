"""``evalwatt plan``: the GPUs, CPUs and memory of each model and why, then the run's cells,
baselines, judge jobs and its GPU-hour preview."""

from __future__ import annotations

import argparse
import json

from evalwatt.config.section import shown
from evalwatt.ops.commands.common import Subparsers, add_configfile, add_json, load
from evalwatt.plan.estimate import cost_preview
from evalwatt.plan.matrix import plan_run


def add(sub: Subparsers) -> None:
    p = sub.add_parser("plan", help="GPU count per model and a cost preview")
    add_configfile(p)
    add_json(p, "per-model plan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    plan = plan_run(config)
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in plan.models.values()], indent=2))
        return 0
    print(f"run {config.run} on {config.cluster.name}: {len(plan.models)} models")
    print(f"{'model':42} {'backend':9} {'GPUs':>4} {'CPUs':>4} {'VRAM GB':>8}  why")
    for m in plan.models.values():
        print(f"{m.model:42} {m.backend:9} {m.gpus:>4} {m.cpus:>4} {m.vram_gb:>8.1f}  {m.reason}")
    cost = cost_preview(plan, config)
    print(
        f"\n{cost.cells} cells, {cost.baselines} load-only baselines, {cost.judge_jobs} judge jobs"
    )
    print("estimated GPU-hours (rough: assumptions below, not measurements):")
    for part, hours in cost.gpu_hours.model_dump().items():
        print(f"  {part:10} {hours:10.2f}")
    print(f"  {'total':10} {cost.gpu_hours_total:10.2f}")
    assumed = cost.assumptions.model_dump().items()
    print("assumptions: " + ", ".join(f"{k}={shown(v)}" for k, v in assumed))
    return 0
