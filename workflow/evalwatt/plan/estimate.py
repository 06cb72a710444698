"""How long each job should take, from the planner's assumptions (not measurements).

One estimate feeds both the cost preview (``evalwatt plan``: GPU-hours split into loading,
inference, padding, baselines and judging) and the time each job asks the scheduler for, so
that the two can never disagree. A job's time limit is the estimate times
``planner.runtime_margin``, at least ``planner.min_runtime_min``, times the attempt number on
a retry (a job killed at its limit comes back with more time), and never more than the
cluster's ``time_limit_min``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evalwatt.base.vocabulary import JobKind
from evalwatt.config.load import Config
from evalwatt.contracts.plan import CostAssumptions, CostPreview, GpuHours
from evalwatt.plan.matrix import Plan


@dataclass(frozen=True)
class Estimate:
    """Seconds of one job, by phase."""

    load_s: float
    inference_s: float
    pad_s: float

    @property
    def total_s(self) -> float:
        return self.load_s + self.inference_s + self.pad_s


def load_seconds(plan: Plan, config: Config, model: str) -> float:
    """Server start-up and weight loading of ``model``, at the planner's assumed speed."""
    planner = config.planner
    weights_gb = plan.models[model].vram_gb / planner.vram_overhead
    return planner.server_start_s + weights_gb / planner.load_gb_per_s


def inference_seconds(config: Config, benchmark: str) -> float:
    bench = config.benchmarks[benchmark]
    return bench.samples_run * bench.expected_s_per_sample


def estimate(plan: Plan, config: Config, kind: JobKind, job_id: str) -> Estimate:
    """The estimate of a cell, baseline or judge job (the judge scores the cell's answers).
    The padding is the job's own rule (``PadSpec.sleep_s``) applied to the busy seconds."""
    pad = config.cluster.pad()
    if kind == "baseline":
        load = load_seconds(plan, config, plan.baselines[job_id].model)
        return Estimate(load, 0.0, pad.sleep_s(load))
    cell = plan.cells[job_id]
    model = cell.model
    if kind == "judge" and cell.judge:
        model = config.judges[cell.judge].model
    load, infer = load_seconds(plan, config, model), inference_seconds(config, cell.benchmark)
    return Estimate(load, infer, pad.sleep_s(load + infer))


def runtime_minutes(
    plan: Plan, config: Config, kind: JobKind, job_id: str, attempt: int = 1
) -> int:
    """The time limit a job asks for on its ``attempt``-th try, in whole minutes."""
    planner = config.planner
    seconds = estimate(plan, config, kind, job_id).total_s * planner.runtime_margin
    minutes = max(planner.min_runtime_min, math.ceil(seconds / 60))
    return int(min(config.cluster.time_limit_min, minutes * max(1, attempt)))


def cost_preview(plan: Plan, config: Config) -> CostPreview:
    """A rough GPU-hour budget, split the way the energy is: loading, inference, padding,
    baselines and judging. Built from the planner's assumptions, the same estimates that set
    each job's time limit; not measurements. Unrounded: printing rounds."""
    hours = dict.fromkeys(GpuHours.model_fields, 0.0)
    for cell in plan.cells.values():
        gpus = max(plan.models[cell.model].gpus, 0)
        est = estimate(plan, config, "cell", cell.id)
        hours["loading"] += gpus * est.load_s / 3600
        hours["inference"] += gpus * est.inference_s / 3600
        hours["padding"] += gpus * est.pad_s / 3600
        if cell.judge:
            judge_model = config.judges[cell.judge].model
            judge = estimate(plan, config, "judge", cell.id)
            hours["judging"] += plan.models[judge_model].gpus * judge.total_s / 3600
    for base in plan.baselines.values():
        est = estimate(plan, config, "baseline", base.id)
        hours["baselines"] += plan.models[base.model].gpus * est.total_s / 3600
    window_s = config.cluster.accounting_window_s
    return CostPreview(
        cells=len(plan.cells),
        baselines=len(plan.baselines),
        judge_jobs=sum(1 for c in plan.cells.values() if c.judge),
        gpu_hours=GpuHours(**hours),
        gpu_hours_total=sum(hours.values()),
        assumptions=CostAssumptions(
            server_start_s=config.planner.server_start_s,
            load_gb_per_s=config.planner.load_gb_per_s,
            accounting_window_s=window_s,
            pad_margin_s=config.cluster.pad_margin_s if window_s > 0 else 0.0,
        ),
    )
