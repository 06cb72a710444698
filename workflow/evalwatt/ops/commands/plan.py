"""``evalwatt plan``: the GPUs, CPUs and memory of each model and why, then the run's cost in
both execution modes: hours by phase, jobs by kind, the throughput each model was given."""

from __future__ import annotations

import argparse
import json

from evalwatt.ops.commands.common import Subparsers, add_configfile, add_json, load
from evalwatt.plan.estimate import cost_preview
from evalwatt.plan.matrix import plan_run
from evalwatt.plan.preview import assumption_text, fixed_width, job_rows, phase_rows, rate_rows


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
    judged = f"{cost.judged_cells} judge-scored"
    print(f"\n{cost.cells} cells ({judged}); this run's execution: {cost.execution}")
    print("estimated hours by phase, both modes (the throughput model, not measurements):")
    print("\n".join(fixed_width(phase_rows(cost))))
    print()
    print("\n".join(fixed_width(job_rows(cost))))
    print("\nthroughput used:")
    print("\n".join(fixed_width(rate_rows(cost), left=(0, 1, 3))))
    print(f"assumptions: {assumption_text(cost)}")
    return 0
