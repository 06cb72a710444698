"""Each job's time limit: its estimate x margin, at least the minimum, growing on retries."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from evalwatt.base.layout import Layout
from evalwatt.config.load import from_dict
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.estimate import estimate, runtime_minutes
from evalwatt.plan.matrix import plan_run

CELL = "Qwen2.5-32B-Instruct__writingbench__t0__c10"


@pytest.fixture
def planned(small_config):
    def make(**planner):
        small_config["planner"] = planner
        config = from_dict(small_config, Path("."))
        return config, plan_run(config)

    return make


def test_estimate_by_hand(planned):
    config, plan = planned()
    load_32b = 60 + 32.76 * 2  # server start + 65.52 GB at 1 GB/s
    cell = estimate(plan, config, "cell", CELL)
    assert cell.load_s == pytest.approx(load_32b)
    assert cell.inference_s == pytest.approx(128 * 20.0)
    assert cell.pad_s == 0.0  # the writingbench cell outlasts the 330 s window
    base = estimate(plan, config, "baseline", plan.cells[CELL].baseline)
    assert base.total_s == pytest.approx(330.0)  # load + pad = window + margin
    judge = estimate(plan, config, "judge", CELL)
    assert judge.load_s == pytest.approx(60 + 79.67 * 2)  # the judge's own model


def test_runtime_grows_with_each_attempt_up_to_the_cap(planned):
    config, plan = planned(runtime_margin=2.0, min_runtime_min=10)
    total = estimate(plan, config, "cell", CELL).total_s
    first = math.ceil(total * 2.0 / 60)
    assert runtime_minutes(plan, config, "cell", CELL, 1) == first
    assert runtime_minutes(plan, config, "cell", CELL, 2) == min(90, 2 * first)
    assert runtime_minutes(plan, config, "cell", CELL, 5) == 90  # time_limit_min caps it


def test_short_jobs_get_the_minimum(planned):
    config, plan = planned(runtime_margin=1.0, min_runtime_min=15)
    base = plan.cells[CELL].baseline
    assert runtime_minutes(plan, config, "baseline", base, 1) == 15
    assert runtime_minutes(plan, config, "baseline", base, 2) == 30


def test_the_job_object_and_the_rule_resources_agree(planned):
    config, plan = planned()
    job = resolve_job(config, plan, Layout.of("results", "unit"), "cell", CELL)
    assert [job.resources.runtime_minutes(a) for a in (1, 2)] == [
        runtime_minutes(plan, config, "cell", CELL, a) for a in (1, 2)
    ]
    slurm = job.resources.scheduler.slurm_executor_resources()
    assert slurm["nodes"] == 1  # --gpus=N alone could spread over nodes
    assert slurm["mem_mb_per_cpu"] == 4000
    assert "runtime" not in slurm  # per job, from the estimate


def test_the_estimate_pads_like_the_job(planned):
    """One padding rule: the estimate's pad is the sleep the job's spec asks for after the
    estimated busy seconds (a baseline pads; the long writingbench cell does not)."""
    config, plan = planned()
    layout = Layout.of("results", "unit")
    for kind, job_id in (("baseline", plan.cells[CELL].baseline), ("cell", CELL)):
        est = estimate(plan, config, kind, job_id)
        spec = resolve_job(config, plan, layout, kind, job_id).spec
        assert est.pad_s == spec.pad.sleep_s(est.load_s + est.inference_s), kind
    assert estimate(plan, config, "baseline", plan.cells[CELL].baseline).pad_s > 0
