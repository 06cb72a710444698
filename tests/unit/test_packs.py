"""Packed jobs (evalwatt.jobs.packs): which cells a per-model job or a judge pass runs, split by
time, under ids that stay the same for the same cells; cells done on disk left out."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_job_runtime import FAKE_SERVER
from test_status import Run

from evalwatt.base.vocabulary import RUN_KINDS, JobStatus
from evalwatt.config.load import load_config
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import JobResult
from evalwatt.jobs.pack import Pack, pack_id
from evalwatt.jobs.packs import judge_passes, model_packs, pack_seconds
from evalwatt.jobs.resolve import JobError
from evalwatt.jobs.run import RunJobs
from evalwatt.ops.evidence import RUN_RULES
from evalwatt.ops.submit import write_job_files
from evalwatt.plan.estimate import job_budget_s
from evalwatt.plan.matrix import plan_run
from evalwatt.smk.common import job_files
from evalwatt.smk.energy import energy_inputs
from evalwatt.smk.final import final_outputs
from evalwatt.smk.jobs import JobRules

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "config" / "config.yaml"
PEREN = REPO / "config" / "peren.yaml"


@pytest.fixture(scope="module")
def demo():
    config = load_config(DEMO)
    return config, plan_run(config)


@pytest.fixture(scope="module")
def study():
    config = load_config(PEREN)
    return config, plan_run(config)


def _with(config, **per_model):
    return config.replace(per_model=config.per_model.model_copy(update=per_model))


def test_pack_id_is_the_group_and_a_hash_of_the_sorted_cells() -> None:
    a = pack_id("m__vllm-g1-abcd", ["c2", "c1"])
    assert a == pack_id("m__vllm-g1-abcd", ["c1", "c2"])
    assert a.startswith("m__vllm-g1-abcd__") and len(a.rsplit("__", 1)[1]) == 8
    assert a != pack_id("m__vllm-g1-abcd", ["c1"])
    assert a != pack_id("other", ["c1", "c2"])
    pack = Pack("model", "m__vllm-g1-abcd", "m", ("c1", "c2"), 1.0)
    assert pack.id == a


def test_demo_packs_one_model_job_for_its_four_cells(demo) -> None:
    config, plan = demo
    packs = model_packs(plan, config, plan.cells)
    assert len(packs) == 1 and packs[0].kind == "model"
    assert set(packs[0].cells) == set(plan.cells) and len(plan.cells) == 4
    order = [(plan.cells[c].benchmark, plan.cells[c].temperature) for c in packs[0].cells]
    assert order == sorted(order)
    (base,) = plan.baselines
    assert packs[0].group == base and packs[0].id.startswith(base + "__")
    assert packs[0].estimate_s == pytest.approx(
        pack_seconds(plan, config, "model", packs[0].model, packs[0].cells)
    )
    assert packs[0].estimate_s <= job_budget_s(config)


def test_done_cells_are_left_out_and_the_id_changes(demo) -> None:
    config, plan = demo
    (full,) = model_packs(plan, config, plan.cells)
    pending = list(full.cells[2:])
    (rest,) = model_packs(plan, config, pending)
    assert rest.cells == tuple(pending)
    assert rest.id != full.id
    # the same missing cells give the same id, in any order, in any process
    (again,) = model_packs(plan, config, list(reversed(pending)))
    assert again.id == rest.id and again.cells == rest.cells
    assert model_packs(plan, config, []) == []


def test_demo_judge_pass_holds_the_judged_cells(demo) -> None:
    config, plan = demo
    judged = [c.id for c in plan.cells.values() if c.judge]
    assert len(judged) == 2
    (one,) = judge_passes(plan, config, plan.cells)
    assert one.kind == "judge-pass" and set(one.cells) == set(judged)
    judge = plan.cells[judged[0]].judge
    assert one.group == judge and one.model == config.judges[judge].model
    assert one.id.startswith(f"{judge}__")
    assert one.estimate_s == pytest.approx(
        pack_seconds(plan, config, "judge-pass", one.model, one.cells)
    )


def test_a_short_time_limit_splits_a_model_into_jobs_that_fit(demo) -> None:
    """One minute per job: each cell's estimate (a load, a cell, a pad) alone is over it, so
    each cell is a job of its own; every cell is in exactly one job."""
    config, plan = demo
    short = _with(config, max_job_min=1)
    split = model_packs(plan, short, plan.cells)
    assert len(split) == len(plan.cells)
    assert sorted(c for p in split for c in p.cells) == sorted(plan.cells)
    assert len({p.id for p in split}) == len(split)


def test_study_split_by_time_limit(study) -> None:
    """The study's models: each job within the budget unless it holds one cell, every cell in
    exactly one job, more jobs under a shorter limit."""
    config, plan = study
    packs = model_packs(plan, config, plan.cells)
    assert len(packs) >= len(plan.baselines)
    budget = job_budget_s(config)
    assert all(p.estimate_s <= budget or len(p.cells) == 1 for p in packs)
    assert sorted(c for p in packs for c in p.cells) == sorted(plan.cells)
    assert len({p.id for p in packs}) == len(packs)
    shorter = model_packs(plan, _with(config, max_job_min=60), plan.cells)
    assert len(shorter) > len(packs)
    for p in shorter:
        assert len({plan.cells[c].baseline for c in p.cells}) == 1


def test_time_budget_from_max_job_min_or_the_cluster(demo) -> None:
    config, _ = demo
    margin = config.planner.runtime_margin
    assert job_budget_s(config) == config.cluster.time_limit_min * 60 / margin
    assert job_budget_s(_with(config, max_job_min=5)) == 5 * 60 / margin


# --- from the files on disk: RunJobs --------------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Run:
    """The demo in per-model execution in a temporary results folder, nothing done."""
    fake_server = tmp_path / "fake_server.py"
    fake_server.write_text(FAKE_SERVER)
    demo_run = Run(tmp_path, fake_server)
    demo_run.config = demo_run.config.replace(execution="per-model")
    return demo_run


def _run(disk: Run) -> RunJobs:
    """The run's jobs as a new Snakemake run sees them now."""
    return RunJobs(disk.config, disk.plan, disk.layout)


def _finish_cell(disk: Run, cell_id: str, **spec_update) -> Path:
    job = _run(disk).job("cell", cell_id)
    if spec_update:
        job = dataclasses.replace(job, spec=job.spec.model_copy(update=spec_update))
    disk.finish(job)
    return job.files.result


def test_per_model_jobs_are_one_model_job_and_one_judge_pass(disk) -> None:
    run = _run(disk)
    kinds = [k for k, _ in run.jobs()]
    assert kinds == ["model", "judge-pass"]
    (pack,) = [p for (k, _), p in run.packs.items() if k == "model"]
    assert set(pack.cells) == set(disk.plan.cells)
    per_cell = RunJobs(disk.config.replace(execution="per-cell"), disk.plan, disk.layout)
    assert [k for k, _ in per_cell.jobs()] == ["baseline"] + ["cell"] * 4 + ["judge-pass"]


def test_done_cells_on_disk_are_not_run_again(disk) -> None:
    (first_id,) = [i for k, i in _run(disk).jobs() if k == "model"]
    cells = [c for c in _run(disk).packs[("model", first_id)].cells]
    before = [_finish_cell(disk, c) for c in cells[:2]]
    run = _run(disk)
    (rest_id,) = [i for k, i in run.jobs() if k == "model"]
    assert rest_id != first_id
    assert run.packs[("model", rest_id)].cells == tuple(cells[2:])
    assert set(run.done.cells) == set(cells[:2])
    # the finished cells' inputs are their own results; the others wait for the new job
    assert run.cell_input(cells[0]) == before[0]
    assert run.cell_input(cells[3]) == disk.layout.run_result("model", rest_id)
    assert run.packed_in("cell", cells[3]) == ("model", rest_id)
    assert [i for k, i in _run(disk).jobs() if k == "model"] == [rest_id]  # stable


def test_inputs_stay_the_same_once_the_packed_jobs_are_done(disk) -> None:
    """A cell's energy input is its model job's result (and its judgement's, its pass's)
    before and after the run: a changed set of inputs would make Snakemake redo the energy of
    every cell on the second run."""
    run = _run(disk)
    (model_id,) = [i for k, i in run.jobs() if k == "model"]
    (pass_id,) = [i for k, i in run.jobs() if k == "judge-pass"]
    cells = run.packs[("model", model_id)].cells
    judged = run.packs[("judge-pass", pass_id)].cells
    before = {c: (run.cell_input(c), run.judged_input(c)) for c in cells}
    model_root = disk.layout.run_result("model", model_id).parent
    pass_root = disk.layout.run_result("judge-pass", pass_id).parent
    for cell in cells:
        _finish_cell(disk, cell)
        _repoint(disk.layout.run_result("cell", cell), model_root)
    for cell in judged:
        disk.finish(_run(disk).job("judge", cell))
        _repoint(disk.layout.run_result("judge", cell), pass_root)
    killed = _run(disk)  # no packed job's own result: as if both were killed at the end
    assert list(killed.jobs()) == []
    assert killed.cell_input(cells[0]) == disk.layout.run_result("cell", cells[0])
    for kind, job_id in (("model", model_id), ("judge-pass", pass_id)):
        disk.finish(run.job(kind, job_id))
    after = _run(disk)
    assert list(after.jobs()) == []
    assert {c: (after.cell_input(c), after.judged_input(c)) for c in cells} == before


def _repoint(result: Path, packed_in: Path) -> None:
    """Mark a finished result as written by the packed job in ``packed_in``."""
    data = read_contract(JobResult, result)
    write_contract(result, data.model_copy(update={"packed_in": packed_in}))


def test_a_result_of_another_spec_or_unreadable_is_not_done(disk) -> None:
    cells = list(disk.plan.cells)
    evaluation = _run(disk).job("cell", cells[0]).spec.evaluation
    assert evaluation is not None
    _finish_cell(disk, cells[0], evaluation=evaluation.model_copy(update={"max_tokens": 7}))
    _finish_cell(disk, cells[1])
    disk.layout.run_result("cell", cells[2]).parent.mkdir(parents=True)
    disk.layout.run_result("cell", cells[2]).write_text("{}")
    done = _run(disk).done.cells
    assert set(done) == {cells[1]}


def test_an_incomplete_result_is_kept(disk) -> None:
    cell = next(iter(disk.plan.cells))
    disk.finish(_run(disk).job("cell", cell), JobStatus.INCOMPLETE, ["1 of 3 samples"])
    assert cell in _run(disk).done.cells


def test_a_judgement_is_done_until_its_cell_is_made_again(disk) -> None:
    judged = [c.id for c in disk.plan.cells.values() if c.judge]
    for c in judged:
        _finish_cell(disk, c)
    disk.finish(_run(disk).job("judge", judged[0]))
    run = _run(disk)
    assert set(run.done.judged) == {judged[0]}
    (pass_id,) = [i for k, i in run.jobs() if k == "judge-pass"]
    assert run.packs[("judge-pass", pass_id)].cells == (judged[1],)
    assert run.judged_input(judged[0]) == disk.layout.run_result("judge", judged[0])
    assert run.judged_input(judged[1]) == disk.layout.run_result("judge-pass", pass_id)
    later = time.time() + 5  # the cell made again after its judgement
    os.utime(disk.layout.run_result("cell", judged[0]), (later, later))
    assert _run(disk).done.judged == {}


def test_a_model_job_spec_packs_the_cells_as_their_own_jobs_would_run(disk) -> None:
    run = _run(disk)
    (model_id,) = [i for k, i in run.jobs() if k == "model"]
    job = run.job("model", model_id)
    spec = job.spec
    assert spec.kind == "model" and spec.pack is not None and spec.evaluation is None
    assert spec.run_dir == disk.layout.run_dir("model", model_id).resolve()
    assert spec.pack.reference_idle_s == disk.config.per_model.reference_idle_s
    assert spec.pack.cooldown.max_s == disk.config.per_model.cooldown_max_s
    for packed in spec.pack.cells:
        own = run.job("cell", packed.cell_id).spec
        assert spec.packed_cell_spec(packed) == own
    pack = run.packs[("model", model_id)]
    margin = disk.config.planner.runtime_margin
    expected = max(disk.config.planner.min_runtime_min, math.ceil(pack.estimate_s * margin / 60))
    assert job.resources.runtime_minutes(1) == min(disk.config.cluster.time_limit_min, expected)
    assert job.resources.runtime_minutes(4) == disk.config.cluster.time_limit_min


def test_a_judge_pass_spec_scores_each_cell_into_its_judged_folder(disk) -> None:
    run = _run(disk)
    (pass_id,) = [i for k, i in run.jobs() if k == "judge-pass"]
    spec = run.job("judge-pass", pass_id).spec
    assert spec.kind == "judge-pass" and spec.judging is not None
    judge = disk.config.judges[next(iter(disk.config.judges))]
    assert spec.model.name == judge.model
    assert spec.judging.temperature == judge.temperature
    for judged in spec.judging.cells:
        assert judged.cell_result == disk.layout.run_result("cell", judged.cell_id).resolve()
        assert judged.run_dir == disk.layout.run_dir("judge", judged.cell_id).resolve()


def test_a_model_job_no_longer_planned_is_resolved_from_its_rendered_spec(disk) -> None:
    """Slurm's Snakemake process plans again from the files: a retry of a model job some of
    whose cells are done since must still find the job (its runtime skips those cells)."""
    run = _run(disk)
    (model_id,) = [i for k, i in run.jobs() if k == "model"]
    job = run.job("model", model_id)
    write_job_files(job)
    _finish_cell(disk, job.pack.cells[0])
    later = _run(disk)
    assert ("model", model_id) not in later.packs
    again = later.job("model", model_id)
    assert again.spec == job.spec and again.pack.cells == job.pack.cells
    with pytest.raises(JobError, match="not planned now"):
        later.job("model", "SmolLM2__llama-cpp-g0-00000000__deadbeef")


def test_energy_inputs_follow_the_mode_and_the_disk(disk) -> None:
    run = _run(disk)
    cell = next(c for c in disk.plan.cells.values() if c.judge)
    (model_id,) = [i for k, i in run.jobs() if k == "model"]
    (pass_id,) = [i for k, i in run.jobs() if k == "judge-pass"]
    assert energy_inputs(disk.config, run, cell.id) == {
        "cell": str(disk.layout.run_result("model", model_id)),
        "judge": str(disk.layout.run_result("judge-pass", pass_id)),
    }
    per_cell = RunJobs(disk.config.replace(execution="per-cell"), disk.plan, disk.layout)
    assert energy_inputs(disk.config, per_cell, cell.id) == {
        "cell": str(disk.layout.run_result("cell", cell.id)),
        "baseline": str(disk.layout.run_result("baseline", cell.baseline)),
        "judge": str(disk.layout.run_result("judge-pass", pass_id)),
    }
    outputs = final_outputs(run)
    assert str(disk.layout.run_result("model", model_id)) in outputs
    assert not any("/baselines/" in o or "/cells/" in o for o in outputs)


def test_the_job_rules_inputs_and_folders(disk) -> None:
    """A judge pass waits for its cells' results (per-model: the model job that writes them);
    each run rule's output pattern spells its kinds' folders (``judge-passes``)."""
    run = _run(disk)
    (model_id,) = [i for k, i in run.jobs() if k == "model"]
    (pass_id,) = [i for k, i in run.jobs() if k == "judge-pass"]
    rules = JobRules(run)
    inputs = rules.inputs(SimpleNamespace(kind="judge-pass", job=pass_id))
    assert inputs["script"] == str(disk.layout.job_script("judge-pass", pass_id))
    assert inputs["cells"] == [str(disk.layout.run_result("model", model_id))] * 2
    assert rules.inputs(SimpleNamespace(kind="model", job=model_id)) == {
        "script": str(disk.layout.job_script("model", model_id))
    }
    for rule, kinds in RUN_RULES.items():
        pattern = str(job_files(disk.layout, rule).result)
        for kind in kinds:
            filled = pattern.replace("{kind}", kind).replace("{job}", "x")
            assert filled == str(disk.layout.run_result(kind, "x"))
    assert {k for kinds in RUN_RULES.values() for k in kinds} == set(RUN_KINDS)
