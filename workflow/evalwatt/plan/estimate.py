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
from typing import Any

from evalwatt.config.load import Config
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
    planner = config.raw["planner"]
    weights_gb = plan.models[model].vram_gb / planner["vram_overhead"]
    return float(planner["server_start_s"] + weights_gb / planner["load_gb_per_s"])


def inference_seconds(config: Config, benchmark: str) -> float:
    bench = config.benchmarks[benchmark]
    samples = min(bench["samples"], bench["limit"] or bench["samples"])
    return float(samples * bench["expected_s_per_sample"])


def pad_seconds(config: Config, busy_s: float) -> float:
    """The sleep that brings a job past the accounting window (0 when there is none)."""
    window = config.cluster["accounting_window_s"]
    if window <= 0:
        return 0.0
    return max(0.0, window + config.cluster["pad_margin_s"] - busy_s)


def estimate(plan: Plan, config: Config, kind: str, job_id: str) -> Estimate:
    """The estimate of a cell, baseline or judge job (the judge scores the cell's answers)."""
    if kind == "baseline":
        load = load_seconds(plan, config, plan.baselines[job_id].model)
        return Estimate(load, 0.0, pad_seconds(config, load))
    cell = plan.cells[job_id]
    model = cell.model
    if kind == "judge":
        model = config.raw["judges"][cell.judge]["model"]
    load, infer = load_seconds(plan, config, model), inference_seconds(config, cell.benchmark)
    return Estimate(load, infer, pad_seconds(config, load + infer))


def runtime_minutes(plan: Plan, config: Config, kind: str, job_id: str, attempt: int = 1) -> int:
    """The time limit a job asks for on its ``attempt``-th try, in whole minutes."""
    planner = config.raw["planner"]
    seconds = estimate(plan, config, kind, job_id).total_s * planner["runtime_margin"]
    minutes = max(planner["min_runtime_min"], math.ceil(seconds / 60))
    return int(min(config.cluster["time_limit_min"], minutes * max(1, attempt)))


def cost_preview(plan: Plan, config: Config) -> dict[str, Any]:
    """A rough GPU-hour budget, split the way the energy is: loading, inference, padding,
    baselines and judging. Built from the planner's assumptions (evalwatt.plan.estimate), the same
    estimates that set each job's time limit; not measurements."""
    planner = config.raw["planner"]
    window = config.cluster["accounting_window_s"]
    hours = {"loading": 0.0, "inference": 0.0, "padding": 0.0, "baselines": 0.0, "judging": 0.0}
    for cell in plan.cells.values():
        gpus = max(plan.models[cell.model].gpus, 0)
        est = estimate(plan, config, "cell", cell.id)
        hours["loading"] += gpus * est.load_s / 3600
        hours["inference"] += gpus * est.inference_s / 3600
        hours["padding"] += gpus * est.pad_s / 3600
        if cell.judge:
            judge_model = config.raw["judges"][cell.judge]["model"]
            judge = estimate(plan, config, "judge", cell.id)
            hours["judging"] += plan.models[judge_model].gpus * judge.total_s / 3600
    for base in plan.baselines.values():
        est = estimate(plan, config, "baseline", base.id)
        hours["baselines"] += plan.models[base.model].gpus * est.total_s / 3600
    parts = dict(hours)  # unrounded: printing rounds
    return {
        "cells": len(plan.cells),
        "baselines": len(plan.baselines),
        "judge_jobs": sum(1 for c in plan.cells.values() if c.judge),
        "gpu_hours": parts,
        "gpu_hours_total": sum(parts.values()),
        "assumptions": {
            "server_start_s": planner["server_start_s"],
            "load_gb_per_s": planner["load_gb_per_s"],
            "accounting_window_s": window,
            "pad_margin_s": config.cluster["pad_margin_s"] if window > 0 else 0.0,
        },
    }
