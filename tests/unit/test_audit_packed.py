"""The audit of a per-model run: a row per model job and judge pass with its total against the
sum of its windows (its cells' evaluation windows, load, reference idle, cooldowns, exit/pad),
and a row per cell saying its job total is the model job's. Every number is recomputed here
from the real H100 trace (packed_jobs.py) with an independent interpolation."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from packed_jobs import (
    CELL_A,
    CELL_B,
    MODEL_MARKS,
    SLURM_ID,
    judge_pass,
    model_job,
    real_marks,
    rows_of,
)
from test_energy_packed import joules

from evalwatt.config.load import from_dict
from evalwatt.energy.cluster.settings import Settings
from evalwatt.report.audit import AuditJob, audit_jobs, audit_row, audit_table, sources_markdown

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings() -> Settings:
    from conftest import _SMALL_CONFIG  # type: ignore[import-not-found]

    raw = copy.deepcopy(_SMALL_CONFIG)
    raw["cluster"]["accounting_window_s"] = 120
    return Settings.of(from_dict(raw, REPO))


def _job(kind: str, run_dir: Path, cells: tuple[str, ...] = ("a", "b")) -> AuditJob:
    return AuditJob(
        kind=kind, job_id=run_dir.name, cells=cells, run_dir=run_dir, baseline_id=None,
        gpus_planned=1,
    )  # fmt: skip


def test_the_model_job_total_against_the_sum_of_its_windows(tmp_path, settings):
    run = model_job(tmp_path)
    row = audit_row(settings, "unit", _job("model", run.model))
    m = MODEL_MARKS
    cells = (CELL_A, CELL_B)
    windows = {
        "nvml_cells_j": sum(joules(c["inference_start"], c["inference_end"]) for c in cells),
        "nvml_load_j": joules(m["load_start"], m["ready"]),
        "nvml_reference_idle_j": joules(m["reference_idle_start"], m["reference_idle_end"]),
        "nvml_cooldown_j": sum(joules(c["cooldown_start"], c["cooldown_end"]) for c in cells),
        "nvml_exit_pad_j": joules(m["exit"], m["job_end"]),
    }
    for name, value in windows.items():
        assert row[name] == pytest.approx(value, rel=1e-9), name
    total = sum(windows.values())
    assert row["nvml_windows_j"] == pytest.approx(total, rel=1e-9)
    job = joules(m["job_start"], m["job_end"])
    assert row["nvml_job_j"] == pytest.approx(job, rel=1e-9)
    assert row["nvml_outside_windows_j"] == pytest.approx(job - total, rel=1e-9)
    # outside the windows: the sampler's start before loading, the import, between the cells
    assert row["nvml_outside_windows_j"] > 0
    seconds = (
        sum(c["inference_end"] - c["inference_start"] for c in (CELL_A, CELL_B))
        + sum(c["cooldown_end"] - c["cooldown_start"] for c in (CELL_A, CELL_B))
        + (m["ready"] - m["load_start"])
        + (m["reference_idle_end"] - m["reference_idle_start"])
        + (m["job_end"] - m["exit"])
    )
    assert row["windows_s"] == pytest.approx(seconds)
    assert row["packed_cells"] == 2 and row["windows_null_reason"] is None
    assert row["scheduler_job_id"] == SLURM_ID and row["gpus_measured"] == 1
    assert row["flagged"] is False, row["flags"]
    audit_table([row])  # the row fits the schema
    text = "\n".join(sources_markdown([row], 10.0))
    assert "each total against the sum of its windows" in text
    assert f"| model `{run.model.name}` | 2 | {row['nvml_windows_j']:.0f} |" in text


def test_a_packed_cells_row_says_its_job_total_is_the_model_jobs(tmp_path, settings):
    run = model_job(tmp_path)
    row = audit_row(settings, "unit", _job("cell", run.cells["a"], ("a",)))
    assert row["nvml_job_j"] is None and row["elapsed_s"] is None
    why = f"packed in model {run.model.name}: its job total is that job's row"
    assert row["nvml_null_reason"] == why
    assert row["packed_in"] == run.model.name
    assert row["nvml_inference_j"] == pytest.approx(
        joules(CELL_A["inference_start"], CELL_A["inference_end"]), rel=1e-9
    )
    assert row["gpu_uuids"] and row["flagged"] is False
    audit_table([row])


def test_a_model_job_without_a_result_is_flagged(tmp_path, settings):
    run = model_job(tmp_path)
    (run.model / "result.json").unlink()
    row = audit_row(settings, "unit", _job("model", run.model))
    assert row["flagged"] is True and "did not finish" in row["flags"]
    assert row["nvml_job_j"] is None and "did not finish" in row["nvml_null_reason"]
    assert "results of the cells it finished are kept" in row["nvml_null_reason"]
    assert "| model" in "\n".join(sources_markdown([row], 10.0))  # no crash on the nulls


def test_the_judge_pass_total_against_its_judging_windows(tmp_path, settings):
    run = model_job(tmp_path)
    pass_dir, _ = judge_pass(tmp_path, "a", run.cells["a"] / "result.json")
    row = audit_row(settings, "unit", _job("judge-pass", pass_dir, ("a",)))
    base, real = rows_of("baseline"), real_marks("baseline")
    judging = joules(real["ready"] + 1.0, real["ready"] + 7.0, base)
    assert row["nvml_cells_j"] == pytest.approx(judging, rel=1e-9)
    load = joules(real["load_start"], real["ready"], base)
    exit_pad = joules(real["exit"], real["job_end"], base)
    assert row["nvml_windows_j"] == pytest.approx(judging + load + exit_pad, rel=1e-9)
    assert row["nvml_reference_idle_j"] is None and row["nvml_cooldown_j"] is None


def test_audit_jobs_lists_each_model_job_and_judge_pass_once(tmp_path):
    run = model_job(tmp_path)
    _, judged = judge_pass(tmp_path, "a", run.cells["a"] / "result.json")

    def ref(kind: str, run_dir: Path, packed: Path) -> SimpleNamespace:
        return SimpleNamespace(kind=kind, job_id=run_dir.name, run_dir=run_dir, packed_in=packed)

    records = [
        SimpleNamespace(
            cell_id=c,
            row=SimpleNamespace(baseline_id="m__base", gpus=1),
            jobs=SimpleNamespace(
                cell=ref("cell", run.cells[c], run.model),
                baseline=None,
                judge=ref("judge", judged, tmp_path / "judge-passes" / "judge__89abcdef")
                if c == "a"
                else None,
            ),
        )
        for c in ("a", "b")
    ]
    jobs = audit_jobs(records)  # type: ignore[arg-type]
    kinds = [(j.kind, j.job_id, j.cells) for j in jobs]
    assert kinds == [
        ("cell", "a", ("a",)),
        ("model", run.model.name, ("a", "b")),
        ("judge", "a", ("a",)),
        ("judge-pass", "judge__89abcdef", ("a",)),
        ("cell", "b", ("b",)),
    ]
    assert [j.packed_in for j in jobs if j.kind == "cell"] == [run.model, run.model]


def test_an_audit_of_a_copied_run_reads_the_copys_model_job(tmp_path, settings):
    """A packed cell records its model job's folder as an absolute path: an admin auditing a
    copy of the run (the original gone) gets the model job's row from the copy, the same
    joules, not a job that "did not finish"."""
    run = model_job(tmp_path / "orig")
    before = audit_row(settings, "unit", _job("model", run.model))
    copy = tmp_path / "copy" / "run"
    shutil.copytree(run.model.parents[1], copy)
    shutil.rmtree(tmp_path / "orig")
    records = [
        SimpleNamespace(
            cell_id=c,
            row=SimpleNamespace(baseline_id="m__base", gpus=1),
            jobs=SimpleNamespace(
                cell=SimpleNamespace(
                    kind="cell", job_id=c, run_dir=copy / "cells" / c, packed_in=run.model
                ),
                baseline=None,
                judge=None,
            ),
        )
        for c in ("a", "b")
    ]
    model = next(j for j in audit_jobs(records) if j.kind == "model")  # type: ignore[arg-type]
    assert model.run_dir == copy / "models" / run.model.name
    after = audit_row(settings, "unit", model)
    assert after["nvml_job_j"] is not None and after["flagged"] is False, after["flags"]
    for name in ("nvml_job_j", "nvml_windows_j", "nvml_cells_j", "nvml_load_j"):
        assert after[name] == before[name], name


def test_the_markdown_describes_the_model_job_and_its_cells(tmp_path):
    from evalwatt.report.audit import _job_lines

    run = model_job(tmp_path)
    model = "\n".join(_job_lines("model", run.model, {}))
    assert f"**model** `{run.model.name}` — Slurm job {SLURM_ID}" in model
    assert "cells: a (ok); b (ok)" in model
    cell = "\n".join(_job_lines("cell", run.cells["a"], {}))
    assert f"written by model `{run.model.name}`" in cell
    assert "inference_start..inference_end" in cell and "cooldown_start..cooldown_end" in cell
    (run.model / "result.json").unlink()
    assert "the job did not finish" in "\n".join(_job_lines("model", run.model, {}))
