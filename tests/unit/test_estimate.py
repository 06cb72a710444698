"""The estimate of each job, from the throughput model, worked out by hand; each job's time limit
(its estimate x margin, at least the minimum, growing on retries); packing by time.

The small config (tests/conftest.py) on a throughput table of round numbers written here, so
that every figure below can be checked with a pencil."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from evalwatt.base.layout import Layout
from evalwatt.config.load import from_dict
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.estimate import (
    estimate,
    estimate_cells,
    generation_seconds,
    judge_seconds,
    pack_chunks,
    run_order,
    runtime_minutes,
)
from evalwatt.plan.matrix import plan_run
from evalwatt.plan.throughput import model_rates

CELL = "Qwen2.5-32B-Instruct__writingbench__t0__c10"
LOAD_32B = 60 + 32.76 * 2  # server start + 65.52 GB at 1 GB/s
JOB_S = 5.0  # planner.job_overhead_s: each job's loaded seconds outside its cells
LOAD_JUDGE = 60 + 79.67 * 2


def _row(name: str, arch: str, active: list[float], reference: float) -> dict:
    return {
        "name": name,
        "device": "gpu",
        "gpu": "H100",
        "architecture": arch,
        "active_params_b": active,
        "reference_active_params_b": reference,
        "gpus": 1,
        "tokens_per_s_max": 1000,
        "half_saturation": 10,
        "max_batch": 64,
        "prefill_tokens_per_s": 10000,
        "points": [],
        "source": "round numbers for the tests",
    }


TABLE = {
    "version": 1,
    "default_gpu": "H100",
    "precision_factors": [{"weight_bits": 16, "factor": 1.0, "source": "rows"}],
    # Qwen2.5-32B's own active parameters: scale 1; the judge (MoE, 79.67B) at half speed
    "rows": [
        _row("dense", "dense", [12, 40], 32.76),
        _row("moe", "moe", [8, 1000], 79.67 / 2),
    ],
}


@pytest.fixture
def planned(small_config, tmp_path):
    def make(table=TABLE, calibration=None, **planner):
        path = tmp_path / f"table-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump(table))
        planner["throughput_table"] = str(path)
        if calibration is not None:
            cal = tmp_path / "calibration.json"
            cal.write_text(json.dumps(calibration))
            planner["calibration"] = str(cal)
        small_config["planner"] = planner
        config = from_dict(small_config, Path("."))
        return config, plan_run(config)

    return make


def test_a_cell_by_hand(planned):
    """128 samples x (500 prompt tokens / 10,000 tok/s + 500 output tokens / T(10)), with
    T(10) = 1000 x 10 / (10 + 10) = 500 tok/s: 134.4 s; Inspect's 10 s beside it, and the
    job's own 5 s outside its cell (planner.job_overhead_s)."""
    config, plan = planned()
    cell = estimate(plan, config, "cell", CELL)
    assert cell.load_s == pytest.approx(LOAD_32B)
    assert cell.generation_s == pytest.approx(128 * (500 / 10000 + 500 / 500))
    assert cell.idle_s == 10.0 + JOB_S
    assert cell.total_s == pytest.approx(330.0)  # 274.9 s busy: padded to window + margin
    base = estimate(plan, config, "baseline", plan.cells[CELL].baseline)
    assert base.total_s == pytest.approx(330.0)  # load + pad = window + margin


def test_requests_in_flight_are_bounded_by_the_samples_and_the_batch(planned):
    config, plan = planned()
    c100 = plan.cells["Qwen2.5-32B-Instruct__writingbench__t0__c100"]
    # min(100 connections, 128 samples, max_batch 64) = 64 in flight
    decode = 1000 * 64 / (64 + 10)
    assert generation_seconds(plan, config, c100) == pytest.approx(128 * (0.05 + 500 / decode))
    piqa = plan.cells["Qwen2.5-32B-Instruct__piqa__t0__c100"]  # limit 100 samples
    assert generation_seconds(plan, config, piqa) == pytest.approx(100 * (0.05 + 500 / decode))


def test_a_reasoning_model_writes_more_up_to_max_tokens(planned, small_config):
    small_config["models"][0]["reasoning"] = True
    config, plan = planned(reasoning_output_factor=40)
    cell = plan.cells[CELL]  # 500 x 40 = 20,000 tokens, capped by max_tokens 16,000
    assert generation_seconds(plan, config, cell) == pytest.approx(128 * (0.05 + 16000 / 500))


def test_a_model_without_a_row_falls_back_to_seconds_per_sample(planned):
    config, plan = planned()
    smol = next(c for c in plan.cells.values() if c.model == "SmolLM2-135M-Instruct")
    assert generation_seconds(plan, config, smol) == pytest.approx(100 * 0.5)
    assert "expected_s_per_sample" in model_rates(config, smol.model, "cpu").note


def test_a_gpu_without_rows_takes_the_default_gpus_and_says_so(planned, small_config):
    small_config["cluster"]["gpu_model"] = "NVIDIA H200"
    config, plan = planned()
    rates = model_rates(config, "Qwen2.5-32B-Instruct", "gpu")
    assert rates.row is not None and "no row for GPU 'NVIDIA H200'" in rates.note
    assert generation_seconds(plan, config, plan.cells[CELL]) == pytest.approx(134.4)


def test_the_judge_calls_by_hand(planned):
    """writingbench: 128 judge calls of 1,000 prompt and 100 output tokens on the judge, whose
    row runs at half speed (MoE, 79.67B active against a reference of half that)."""
    config, plan = planned()
    decode, prefill = 500 / 2, 10000 / 2  # T(10) and the prefill, halved
    expected = 128 * (1000 / prefill + 100 / decode)
    assert judge_seconds(plan, config, plan.cells[CELL]) == pytest.approx(expected)
    judge = estimate(plan, config, "judge", CELL)
    assert judge.load_s == pytest.approx(LOAD_JUDGE)  # the judge's own model
    assert judge.generation_s == pytest.approx(expected)
    assert judge_seconds(plan, config, plan.cells["Qwen2.5-32B-Instruct__piqa__t0__c10"]) == 0


def test_a_calibration_wins_where_it_measured(planned):
    calibration = {
        "schema_version": 3,
        "run": "earlier",
        "inspect_overhead_s": 4.0,
        "judge_overhead_s": 0.5,
        "cooldown_s": 3.0,
        "job_overhead_s": {"cell": 6.5},  # the other kinds: the planner's
        "models": {
            "Qwen2.5-32B-Instruct": {
                "load_s": 30.0,
                "tokens_per_s": {"10": 250.0},
                "judge_s_per_call": {},
                "cells": 4,
            }
        },
    }
    config, plan = planned(calibration=calibration)
    cell = estimate(plan, config, "cell", CELL)
    assert (cell.load_s, cell.idle_s) == (30.0, 4.0 + 6.5)
    assert cell.generation_s == pytest.approx(128 * 500 / 250)  # measured: prefill included
    c100 = plan.cells["Qwen2.5-32B-Instruct__writingbench__t0__c100"]  # not measured: the table
    assert generation_seconds(plan, config, c100) == pytest.approx(
        128 * (0.05 + 500 / (1000 * 64 / 74))
    )
    packed = estimate_cells(plan, config, "Qwen2.5-32B-Instruct", [plan.cells[CELL]])
    assert packed.idle_s == 4.0 + 3.0 + JOB_S  # Inspect, the measured cooldown, the job's own
    # a judged cell's judgement: its measured 0.5 s around the calls, not a cell's Inspect 4 s
    judged = [c for c in plan.cells.values() if c.judge]
    assert judged
    judging = estimate_cells(plan, config, "Qwen3-Next-80B-A3B-Instruct", judged, "judge-pass")
    assert judging.idle_s == pytest.approx(0.5 * len(judged) + JOB_S)
    # A version 2 file did not measure the judgement: its cells' Inspect 4 s stands in, as it
    # did when the file was written (not the planner's assumed 10 s).
    older = {k: v for k, v in calibration.items() if k != "judge_overhead_s"}
    config, plan = planned(calibration={**older, "schema_version": 2})
    judging = estimate_cells(plan, config, "Qwen3-Next-80B-A3B-Instruct", judged, "judge-pass")
    assert judging.idle_s == pytest.approx(4.0 * len(judged) + JOB_S)


def test_a_model_job_loads_once_and_pays_reference_idle_and_cooldowns(planned, small_config):
    small_config["per_model"] = {"reference_idle_s": 10, "cooldown_max_s": 60}
    config, plan = planned()
    cells = [c for c in plan.cells.values() if c.model == "Qwen2.5-32B-Instruct"]
    packed = estimate_cells(plan, config, "Qwen2.5-32B-Instruct", cells)
    singles = [estimate(plan, config, "cell", c.id) for c in cells]
    assert len(cells) == 8
    assert packed.load_s == pytest.approx(LOAD_32B)
    assert packed.reference_idle_s == 10
    assert packed.generation_s == pytest.approx(sum(e.generation_s for e in singles))
    # Inspect + a cooldown bound per cell, and the job's own seconds once
    assert packed.idle_s == pytest.approx(8 * (10 + 60) + JOB_S)
    assert packed.pad_s == 0.0
    assert packed.total_s < sum(e.total_s for e in singles)


def test_a_judge_pass_loads_the_judge_once_for_all_its_cells(planned):
    config, plan = planned()
    judged = [c for c in plan.cells.values() if c.judge]
    assert judged
    judge_pass = estimate_cells(plan, config, "Qwen3-Next-80B-A3B-Instruct", judged, "judge-pass")
    per_cell = [estimate(plan, config, "judge", c.id) for c in judged]
    assert judge_pass.load_s == pytest.approx(LOAD_JUDGE)
    assert judge_pass.reference_idle_s == 0.0
    assert judge_pass.generation_s == pytest.approx(sum(e.generation_s for e in per_cell))
    assert judge_pass.idle_s == pytest.approx(10 * len(judged) + JOB_S)


def test_packing_splits_by_the_time_budget(planned, small_config):
    """per_model.max_job_min 20 at margin 2: 600 s per job, which the 8 cells (134 to 200 s of
    generation each, besides the load) do not fit in; the cluster's 90 minutes (2,700 s) do."""
    small_config["per_model"] = {"max_job_min": 20, "reference_idle_s": 0, "cooldown_max_s": 0}
    config, plan = planned()
    cells = [c for c in plan.cells.values() if c.model == "Qwen2.5-32B-Instruct"]
    chunks = pack_chunks(plan, config, "Qwen2.5-32B-Instruct", cells, "model")
    assert len(chunks) > 1
    assert [c.id for chunk, _ in chunks for c in chunk] == [c.id for c in run_order(cells)]
    for chunk, est in chunks:
        assert est.total_s <= 20 * 60 / 2 or len(chunk) == 1
        assert est == estimate_cells(plan, config, "Qwen2.5-32B-Instruct", chunk)
    small_config["per_model"]["max_job_min"] = None
    config, plan = planned()
    assert len(pack_chunks(plan, config, "Qwen2.5-32B-Instruct", cells, "model")) == 1


def test_runtime_grows_with_each_attempt_up_to_the_cap(planned):
    config, plan = planned(runtime_margin=2.0, min_runtime_min=10)
    total = estimate(plan, config, "cell", CELL).total_s
    first = max(10, math.ceil(total * 2.0 / 60))
    assert runtime_minutes(plan, config, "cell", CELL, 1) == first
    assert runtime_minutes(plan, config, "cell", CELL, 2) == min(90, 2 * first)
    assert runtime_minutes(plan, config, "cell", CELL, 9) == 90  # time_limit_min caps it


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
    estimated busy seconds (a baseline pads; a short piqa cell too)."""
    config, plan = planned()
    layout = Layout.of("results", "unit")
    piqa = "Qwen2.5-32B-Instruct__piqa__t0__c100"
    for kind, job_id in (("baseline", plan.cells[CELL].baseline), ("cell", CELL), ("cell", piqa)):
        est = estimate(plan, config, kind, job_id)
        spec = resolve_job(config, plan, layout, kind, job_id).spec
        assert est.pad_s == pytest.approx(spec.pad.sleep_s(est.load_s + est.inference_s)), kind
    assert estimate(plan, config, "cell", piqa).pad_s > 0
