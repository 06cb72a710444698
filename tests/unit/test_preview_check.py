"""After a run: the preview against the seconds each kind of job used, and the run's measured
rates as a calibration file that the next preview reads (evalwatt.report.preview_check).

Two synthetic runs: a per-cell run of the small config (tests/conftest.py) whose job results
carry chosen wall times, and the packed run of tests/unit/packed_jobs.py (a model job with two
cells, a judge pass, a baseline: real contracts, as the runtime writes them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from packed_jobs import (
    CELL_A,
    CELL_B,
    MODEL_MARKS,
    T_INF0,
    T_INF1,
    T_READY,
    evaluation,
    model_job,
)
from packed_jobs import judge_pass as make_judge_pass
from packed_jobs import result as make_result
from packed_jobs import spec as make_spec

from evalwatt.base.layout import Layout
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import SchemaVersionError, read_contract, write_contract
from evalwatt.contracts.plan import Calibration
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.plan.estimate import estimate
from evalwatt.plan.matrix import plan_run
from evalwatt.report.preview_check import (
    PreviewCheckError,
    calibration,
    check,
    measured_jobs,
    read_measured,
    run_check,
    write_calibration,
)

STATUS = SamplerStatus(
    started_unix=0.0, stopped_unix=1.0, interval_s=0.1, rounds=10, late_rounds=0,
    max_late_s=0.0, median_late_s=0.0, traces={}, unavailable={"nvml": "not in this test"},
)  # fmt: skip


def _write_job(root: Path, kind: str, job_id: str, wall_s: float, **work: object) -> None:
    folder = root / {"cell": "cells", "baseline": "baselines"}[kind] / job_id
    folder.mkdir(parents=True)
    marks = {"job_start": 1000.0, "load_start": 1000.5, "ready": 1030.5, "job_end": 1000 + wall_s}
    job = make_result(
        kind, job_id, make_spec(kind, job_id, folder, **work), marks, sampler_status=STATUS
    )
    write_contract(folder / "result.json", job)


@pytest.fixture
def per_cell_run(small_config, tmp_path):
    """The 32B model's 8 cells and its baseline, each job 100 s longer than the one before."""
    small_config["results_dir"] = str(tmp_path)
    config = from_dict(small_config, Path("."))
    plan = plan_run(config)
    layout = Layout.of(tmp_path, config.run)
    cells = [c for c in plan.cells.values() if c.model == "Qwen2.5-32B-Instruct"]
    for i, cell in enumerate(cells):
        _write_job(layout.root, "cell", cell.id, 200.0 + 100 * i, evaluation=evaluation())
    _write_job(layout.root, "baseline", cells[0].baseline, 330.0)
    _write_job(layout.root, "cell", "not-a-planned-cell", 50.0, evaluation=evaluation())
    return config, plan, layout, cells


def test_each_kind_against_the_estimates_of_the_same_jobs(per_cell_run):
    config, plan, layout, cells = per_cell_run
    checks, notes = check(plan, config, measured_jobs(layout))
    by_kind = {k.kind: k for k in checks}
    assert list(by_kind) == ["cell", "baseline"]
    cell = by_kind["cell"]
    assert cell.jobs == 8
    assert cell.measured_s == pytest.approx(sum(200.0 + 100 * i for i in range(8)))
    assert cell.preview_s == pytest.approx(
        sum(estimate(plan, config, "cell", c.id).total_s for c in cells)
    )
    assert cell.measured_gpu_s == cell.measured_s  # the results' servers have 1 GPU
    base = by_kind["baseline"]
    assert (base.jobs, base.measured_s) == (1, 330.0)
    assert notes == ["cell not-a-planned-cell: not in the plan"]


def test_the_page_and_the_calibration_of_a_per_cell_run(per_cell_run, tmp_path):
    config, plan, layout, _ = per_cell_run
    text, cal = run_check(config, plan, layout)
    assert "| cell | 8 |" in text and "| baseline | 1 |" in text
    assert cal.models["m"].load_s == pytest.approx(30.0)  # ready - load_start of 10 jobs
    from evalwatt.report.figures.report import write_preview_check_page

    write_preview_check_page(config, tmp_path / "page.html")
    page = (tmp_path / "page.html").read_text()
    assert "<td>cell</td>\n<td>8</td>" in page and "not-a-planned-cell" in page


def test_the_rates_of_a_packed_run_by_hand(tmp_path):
    """Model m's model job and baseline started its server (load = ready - load_start of
    each); its two packed cells give tokens/s at max_connections 10 (69,120 output tokens each
    over their generation windows) and their cooldowns; the judge pass's judged cell 100
    calls in 4 s at max_connections 4. A packed result is never a job of its own."""
    run = model_job(tmp_path)
    make_judge_pass(tmp_path, "a", run.cells["a"] / "result.json")
    jobs = measured_jobs(Layout(tmp_path))
    assert sorted((j.kind, j.packed) for j in jobs) == [
        ("baseline", False), ("cell", True), ("cell", True), ("judge", True),
        ("judge-pass", False), ("model", False),
    ]  # fmt: skip
    model = next(j for j in jobs if j.kind == "model")
    assert model.cells == ("a", "b")
    cal = calibration("unit", jobs)
    gen_a = CELL_A["generation_end"] - CELL_A["generation_start"]
    gen_b = CELL_B["generation_end"] - CELL_B["generation_start"]
    m = cal.models["m"]
    assert m.tokens_per_s == {"10": pytest.approx(2 * 69120 / (gen_a + gen_b))}
    assert m.judge_s_per_call == {"4": pytest.approx(4.0 / 100)}
    assert m.cells == 2
    baseline = next(j for j in jobs if j.kind == "baseline")
    loads = [MODEL_MARKS["ready"] - MODEL_MARKS["load_start"], baseline.load_s]
    judge_pass = next(j for j in jobs if j.kind == "judge-pass")
    loads.append(judge_pass.load_s)  # the judge pass loads "m" too, as the judge
    assert m.load_s == pytest.approx(sum(loads) / 3)
    cooldowns = [T_INF0 - (T_READY + 7.5), 0.5]
    assert cal.cooldown_s == pytest.approx(sum(cooldowns) / 2)
    overheads = [(T_INF1 - T_INF0) - gen_a, 3.4 - gen_b]
    assert cal.inspect_overhead_s == pytest.approx(sum(overheads) / 2)
    # the judgement: its 6 s judging window around 4 s of judge calls
    assert cal.judge_overhead_s == pytest.approx(6.0 - 4.0)
    write_calibration(tmp_path / "cal.json", cal)
    assert read_contract(Calibration, tmp_path / "cal.json") == cal


def test_each_job_kind_s_seconds_outside_its_cells_by_hand(tmp_path):
    """The model job: its wall time less its load, its 7 s reference idle, its two cells'
    cooldowns and evaluations and its pad; the judge pass: less its one judgement (6 s); the
    baseline: less its load and pad only (its hold counts: it is outside any cell)."""
    run = model_job(tmp_path)
    make_judge_pass(tmp_path, "a", run.cells["a"] / "result.json")
    cal = calibration("unit", measured_jobs(Layout(tmp_path)))
    m = MODEL_MARKS
    wall, load = m["job_end"] - m["job_start"], m["ready"] - m["load_start"]
    pad = m["pad_end"] - m["pad_start"]
    cell_a = (T_INF1 - T_INF0) + (T_INF0 - (T_READY + 7.5))
    cell_b = 3.4 + 0.5
    assert cal.job_overhead_s["model"] == pytest.approx(wall - load - 7.0 - cell_a - cell_b - pad)
    base = read_measured(run.baseline / "result.json").marks
    base_outside = (base["job_end"] - base["job_start"]) - (base["ready"] - base["load_start"])
    base_outside -= base["pad_end"] - base["pad_start"]
    assert cal.job_overhead_s["baseline"] == pytest.approx(base_outside)
    assert cal.job_overhead_s["baseline"] > 0 and cal.job_overhead_s["model"] > 0
    # the judge pass has the baseline's real marks, and one judgement of 6 s inside them
    assert cal.job_overhead_s["judge-pass"] == pytest.approx(base_outside - 6.0)
    assert set(cal.job_overhead_s) == {"model", "baseline", "judge-pass"}


def test_a_run_copied_elsewhere_calibrates_as_the_original(tmp_path):
    """A packed cell records its model job's folder as an absolute path: in a copy of the run
    (a kept validation run, gpu_modes.py --merge) the model job's cells are still its own, so
    its seconds outside them are the original's, also once the original is gone."""
    original = tmp_path / "original"
    run = model_job(original)
    make_judge_pass(original, "a", run.cells["a"] / "result.json")
    before = calibration("unit", measured_jobs(Layout(original)))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    after = calibration("unit", measured_jobs(Layout(copy)))
    assert after == before


def test_a_calibration_of_version_1_or_2_still_reads(tmp_path):
    """Written before the job overhead (version 1) or the judge overhead (version 2) was
    measured: it reads, without them (the planner's values stand in); a version this
    evalwatt never wrote is refused."""
    old = {"schema_version": 1, "run": "r", "inspect_overhead_s": 2.0, "cooldown_s": None,
           "models": {}}  # fmt: skip
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(old))
    assert read_contract(Calibration, path).job_overhead_s == {}
    path.write_text(json.dumps({**old, "schema_version": 2, "job_overhead_s": {"cell": 1.0}}))
    cal = read_contract(Calibration, path)
    assert cal.job_overhead_s == {"cell": 1.0} and cal.judge_overhead_s is None
    path.write_text(json.dumps({**old, "schema_version": 4}))
    with pytest.raises(SchemaVersionError, match="reads version 1, 2 and 3"):
        read_contract(Calibration, path)


def test_a_result_of_an_unknown_version_is_named(tmp_path):
    path = tmp_path / "cells" / "c" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema_version": 3, "kind": "cell"}))
    with pytest.raises(PreviewCheckError, match=r"result.json: job result schema_version 3"):
        read_measured(path)
