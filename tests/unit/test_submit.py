"""`evalwatt submit`: one cell or its repeats outside the DAG, through submitit.

Without Slurm here, the local executor runs the real rendered job script (``bash job.sbatch``
-> ``evalwatt job spec.json``) against the fake server of test_job_runtime; the Slurm side of
submitit is tested on the real cluster (tests/cluster/test_submit_slurm.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_job_runtime import FAKE_SERVER, _fake_served
from test_status import Run

from evalwatt.base.layout import Layout, repeat_id, repeat_of
from evalwatt.base.slurm import SlurmView
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.jobs.resolve import resolve_job
from evalwatt.ops.cli import main
from evalwatt.ops.job_state import State
from evalwatt.ops.status import run_status
from evalwatt.ops.submit import (
    SubmitError,
    cell_jobs,
    choose_executor,
    slurm_parameters,
    submit_jobs,
)
from evalwatt.plan.matrix import plan_run

CELL = "SmolLM2-135M-Instruct__humaneval__t0__c2"


@pytest.fixture
def run(tmp_path: Path) -> Run:
    server = tmp_path / "fake_server.py"
    server.write_text(FAKE_SERVER)
    return Run(tmp_path, server)


def test_repeats_have_their_own_ids_and_folders(run):
    jobs = cell_jobs(run.config, run.plan, run.layout, CELL, 3)
    assert [j.job_id for j in jobs] == [repeat_id(CELL, n) for n in (1, 2, 3)]
    assert [repeat_of(j.job_id) for j in jobs] == [(CELL, 1), (CELL, 2), (CELL, 3)]
    cell = run.job("cell", CELL)
    for n, job in enumerate(jobs, start=1):
        assert job.spec.run_dir == run.layout.run_dir("cell", repeat_id(CELL, n)).resolve()
        assert job.spec.evaluation == cell.spec.evaluation  # the same work
        assert job.spec.server == cell.spec.server and job.baseline_id == cell.baseline_id
        assert job.script == run.layout.job_script("cell", repeat_id(CELL, n))
    (only,) = cell_jobs(run.config, run.plan, run.layout, CELL, None)
    assert only.spec == cell.spec


@pytest.mark.parametrize("repeats", [0, -1, 101])
def test_a_bad_repeat_count_is_refused(run, repeats):
    with pytest.raises(SubmitError, match="allowed: 1 to 100"):
        cell_jobs(run.config, run.plan, run.layout, CELL, repeats)


def test_an_unknown_cell_is_refused_with_the_known_ones(run):
    with pytest.raises(SubmitError, match=r"no cell 'nope' in the plan; cells of run demo: Smol"):
        cell_jobs(run.config, run.plan, run.layout, "nope", None)


def test_slurm_is_asked_for_the_planned_resources(small_config, tmp_path):
    config = from_dict(small_config, tmp_path)
    plan = plan_run(config)
    layout = Layout.of(tmp_path / "results", config.run)
    cell_id = next(c for c in plan.cells if c.startswith("Qwen2.5-32B"))
    job = resolve_job(config, plan, layout, "cell", cell_id)
    params = slurm_parameters(job)
    assert params["gpus_per_node"] == job.resources.gpus == 2
    assert params["cpus_per_task"] == job.resources.cpus == 48
    assert params["nodes"] == 1 and params["ntasks_per_node"] == 1
    assert params["time"] == job.resources.runtime_minutes(1)
    assert params["mem_per_cpu"] == f"{job.resources.scheduler.mem_mb_per_cpu}M"
    assert (params["partition"], params["account"], params["qos"], params["constraint"]) == (
        "gpu_p6",
        "abc@h100",
        "qos_gpu-t3",
        "h100",
    )
    assert params["comment"] == f"evalwatt_submit_cell_{cell_id}"
    assert params["job_name"] == job.scheduler_name
    cpu_cell = next(c for c in plan.cells if c.startswith("SmolLM2"))
    assert "gpus_per_node" not in slurm_parameters(
        resolve_job(config, plan, layout, "cell", cpu_cell)
    )


def test_the_executor_choice(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert choose_executor("auto") == "local"
    assert choose_executor("local") == "local"
    with pytest.raises(SubmitError, match="no sbatch on PATH"):
        choose_executor("slurm")


def test_local_repeats_run_the_job_script_one_after_the_other(run, monkeypatch, tmp_path):
    """Two repeats through submitit's local executor: each runs the rendered job.sbatch (a
    load-only job against the fake server), lands in its own folder, and is not sent again."""
    monkeypatch.chdir(tmp_path)
    jobs = [
        dataclasses.replace(j, spec=_fake_served(j, run.fake_server))
        for j in cell_jobs(run.config, run.plan, run.layout, CELL, 2)
    ]
    sent = submit_jobs(jobs, run.layout, "local")
    assert [s.job_id for s in sent] == [repeat_id(CELL, 1), repeat_id(CELL, 2)]
    results = [read_contract(JobResult, s.result) for s in sent]
    assert [r.job_id for r in results] == [s.job_id for s in sent]
    # One after the other: the second started after the first ended.
    assert results[1].marks["job_start"] >= results[0].marks["job_end"]
    assert all(s.log.exists() for s in sent)
    status = run_status(run.fresh(), slurm=SlurmView(), running_here=set())
    states = {j.job_id: j.state for j in status.jobs if j.repeat_of == CELL}
    assert states == {repeat_id(CELL, 1): State.DONE, repeat_id(CELL, 2): State.DONE}
    assert submit_jobs(jobs, run.layout, "local") == []  # done: not sent again


def test_the_command_refuses_bad_input(tmp_path, capsys):
    from test_status import _write_config

    config = _write_config(tmp_path)
    assert main(["submit", "nope", "--configfile", str(config), "--executor", "local"]) == 2
    assert "no cell 'nope'" in capsys.readouterr().err
    assert main(["submit", CELL, "--repeats", "0", "--configfile", str(config)]) == 2


# --- the repeats' mean and spread (evalwatt.table.repeats) ---------------------------------


def test_the_spread_of_a_cell_over_its_repeats():
    from evalwatt.table.repeats import repeat_spread

    rows = [
        {"cell_id": CELL, "gpu_inference_energy_j": 10.0, "score": 0.5},
        {"cell_id": repeat_id(CELL, 2), "gpu_inference_energy_j": 14.0, "score": 0.5},
        {"cell_id": repeat_id(CELL, 1), "gpu_inference_energy_j": 12.0, "score": None},
        {"cell_id": "other__cell__t0__c1", "gpu_inference_energy_j": 99.0, "score": 1.0},
    ]
    (out,) = repeat_spread(rows, ["gpu_inference_energy_j", "score"])
    assert out["cell_id"] == CELL and out["measurements"] == 3
    assert out["repeat_ids"] == [repeat_id(CELL, 1), repeat_id(CELL, 2)]
    assert out["gpu_inference_energy_j_n"] == 3
    assert out["gpu_inference_energy_j_mean"] == pytest.approx(12.0)
    assert out["gpu_inference_energy_j_std"] == pytest.approx(2.0)  # sample (n - 1)
    assert (out["gpu_inference_energy_j_min"], out["gpu_inference_energy_j_max"]) == (10.0, 14.0)
    assert out["score_n"] == 2 and out["score_std"] == 0.0


def test_the_spread_never_makes_up_a_value():
    from evalwatt.table.repeats import repeat_spread, spread

    assert spread([None, None]).mean is None and spread([None]).n == 0
    one = spread([3.0, None])
    assert (one.n, one.mean, one.std) == (1, 3.0, None)  # one value: no spread, not 0
    with pytest.raises(ValueError, match="not a finite number"):
        spread([1.0, float("nan")])
    with pytest.raises(KeyError, match="gpu_typo"):
        repeat_spread([{"cell_id": repeat_id(CELL, 1), "x": 1}], ["gpu_typo"])
    assert repeat_spread([{"cell_id": CELL, "x": 1.0}], ["x"]) == []  # no repeats: nothing
