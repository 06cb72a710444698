"""The demo pipeline, end to end and for real, on a reduced subset.

A real llama.cpp server with SmolLM2-135M on the CPU, real Inspect evaluations (HumanEval by
unit tests, WritingBench by the same model as a judge, in one judge pass), the real sampler, a
load-only baseline, forced padding, and the final table. Then the rerun rules: a second run
does nothing; deleting one cell's result reruns that cell and what depends on it, nothing else.

What is not run here: vLLM and NVML (no GPU on CI machines); their code paths are covered by
the unit tests, and the sampler was checked on a real GPU (docs/methodology.md#validation).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from evalwatt.base.layout import Layout
from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import CellRecord
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.spec import JobSpec
from evalwatt.contracts.timeline import TimelineFile
from evalwatt.plan.matrix import plan_run
from evalwatt.report.preview_check import check, measured_jobs, run_check, write_calibration
from evalwatt.table.final import SCHEMA_VERSION as TABLE_SCHEMA_VERSION
from evalwatt.table.final import read_table

REPO = Path(__file__).resolve().parents[2]
WINDOW_S = 12.0
CELLS = 4  # 2 benchmarks x 2 temperatures

pytestmark = pytest.mark.integration


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--profile",  # the demo's profile, as users run it (2 cores, rule bodies in threads)
        str(REPO / "profiles" / "local"),
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake dry run, as {rule: count}."""
    counts: dict[str, int] = {}
    block = output.split("Job stats:")[-1]
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("demo")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["run"] = "ci"
    config["cluster"]["accounting_window_s"] = WINDOW_S
    config["cluster"]["pad_margin_s"] = 1
    config["benchmarks"]["humaneval"]["limit"] = 1
    config["benchmarks"]["humaneval"]["max_tokens"] = 48
    config["benchmarks"]["writingbench"]["task_args"] = {"sample_ids": [202], "checklist_items": 1}
    config["benchmarks"]["writingbench"]["samples"] = 1  # the one sample id
    config["benchmarks"]["writingbench"]["max_tokens"] = 48
    config["judges"]["smollm2-judge"]["max_tokens"] = 24
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    return workdir


def test_final_table_has_scores_and_estimated_energy(demo: Path) -> None:
    rows = read_table(demo / "results/ci/final/energy_table.parquet").to_pylist()
    assert len(rows) == CELLS
    assert {r["benchmark"] for r in rows} == {"humaneval", "writingbench"}
    assert {r["temperature"] for r in rows} == {0.0, 0.7}
    for row in rows:
        assert row["samples_completed"] == 1
        # A score, or a null with its reason (never NaN): the 135M judge's answer may have no
        # grade in it.
        assert (row["score"] is None) == (row["score_null_reason"] is not None)
        assert row["score"] is not None or row["benchmark"] == "writingbench"
        assert row["output_tokens"] > 0
        # No GPU here: the GPU family is null with a reason, never zero.
        assert row["gpu_energy_per_question_wh"] is None
        assert "NVML" in row["gpu_energy_null_reason"]
        # The CPU estimate is there, named, positive and self-consistent.
        assert row["cpu_est_energy_source"] == "cpu-model"
        assert row["cpu_est_inference_energy_j"] > 0
        assert row["cpu_est_energy_per_question_wh"] == pytest.approx(
            row["cpu_est_inference_energy_j"] / 3600 / row["samples_completed"]
        )
        assert row["cpu_est_net_energy_j"] == pytest.approx(
            row["cpu_est_job_energy_j"]
            - row["cpu_est_pad_energy_j"]
            - row["cpu_est_baseline_job_energy_j"]
            + row["cpu_est_baseline_pad_energy_j"]
        )
        # The generation window (the headline) inside the evaluation window (the Inspect call).
        assert row["generation_window_null_reason"] is None
        assert 0 < row["inference_duration_s"] <= row["evaluation_duration_s"]
        assert row["cpu_est_inference_energy_j"] <= row["cpu_est_evaluation_energy_j"]
        assert row["cpu_est_evaluation_overhead_energy_j"] == pytest.approx(
            row["cpu_est_evaluation_energy_j"] - row["cpu_est_inference_energy_j"]
        )
        # Padding was needed and measured: the job outlasted the accounting window.
        assert row["pad_duration_s"] > 0
        assert row["job_duration_s"] >= WINDOW_S
        assert row["baseline_job_duration_s"] >= WINDOW_S
        judged = row["benchmark"] == "writingbench"
        assert row["scored_by"] == ("judge job" if judged else "in-job")
        assert (row["cpu_est_judge_energy_j"] is not None) == judged
        assert row["schema_version"] == TABLE_SCHEMA_VERSION
        assert row["gpus_allocated"] is None and row["gpus_measured"] is None  # a CPU demo


def test_timeline_is_ordered_and_inside_the_trace(demo: Path) -> None:
    order = [
        "job_start",
        "load_start",
        "ready",
        "inference_start",
        "generation_start",
        "generation_end",
        "inference_end",
        "exit",
        "pad_start",
        "pad_end",
        "job_end",
    ]
    for result in (demo / "results/ci/cells").glob("*/result.json"):
        data = read_contract(JobResult, result)
        marks = [data.marks[Mark(name)] for name in order]
        assert marks == sorted(marks)
        trace = pq.read_table(result.parent / "trace-cpu-est.parquet").column("t_unix").to_pylist()
        assert trace[0] <= data.marks[Mark.JOB_START] + 1.0
        assert trace[-1] >= data.marks[Mark.JOB_END] - 1.0
    # One judge pass scores both judged cells; each judgement has its own windows inside the
    # pass, and the pass alone has the exit and the end.
    (judge_pass,) = (demo / "results/ci/judge-passes").glob("*/result.json")
    pass_marks = read_contract(JobResult, judge_pass).marks
    judged = [Mark.READY, Mark.JUDGING_START, Mark.GENERATION_START, Mark.GENERATION_END]
    judged += [Mark.JUDGING_END]
    judgements = list((demo / "results/ci/judges").glob("*/result.json"))
    assert len(judgements) == 2
    for result in judgements:
        data = read_contract(JobResult, result)
        assert [data.marks[m] for m in judged] == sorted(data.marks[m] for m in judged)
        assert data.marks[Mark.JUDGING_END] <= pass_marks[Mark.EXIT] <= pass_marks[Mark.JOB_END]
        assert data.packed_in == judge_pass.parent
        assert Mark.INFERENCE_START not in data.marks  # judging is not inference


def test_every_contract_file_loads_through_its_model(demo: Path) -> None:
    """spec.json, timeline.json, result.json and energy/*.json: each read by its model, which
    refuses an unknown version or key, and each consistent with the files around it."""
    root = demo / "results/ci"
    specs = {p.parent.parent.name + "/" + p.parent.name: p for p in root.glob("jobs/*/*/spec.json")}
    assert len(specs) == CELLS + 1 + 1  # cells, one baseline, one judge pass
    for key, path in specs.items():
        spec = read_contract(JobSpec, path)
        assert f"{spec.kind}/{spec.job_id}" == key
        result = read_contract(JobResult, spec.run_dir / "result.json")
        assert result.spec == spec and result.status == JobStatus.OK, result.problems
        timeline = read_contract(TimelineFile, spec.run_dir / "timeline.json")
        assert timeline.marks == result.marks
    records = [read_contract(CellRecord, p) for p in root.glob("energy/*.json")]
    assert len(records) == CELLS
    table = {r["cell_id"]: r for r in read_table(root / "final/energy_table.parquet").to_pylist()}
    for record in records:
        assert table[record.cell_id]["cpu_est_net_energy_j"] == record.row.cpu_est.net_energy_j
        assert (record.jobs.judge is not None) == (record.row.scored_by == "judge job")


def test_rendered_scripts_are_valid_shell(demo: Path) -> None:
    scripts = list((demo / "results/ci/jobs").glob("*/*/job.sbatch"))
    assert len(scripts) == CELLS + 1 + 1  # cells, one baseline, one judge pass
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
        text = script.read_text()
        assert "#SBATCH --cpus-per-task=2" in text
        assert "--gpus" not in text  # a CPU model asks for no GPU


def test_the_demo_run_calibrates_its_own_preview(demo: Path, tmp_path: Path) -> None:
    """Once calibrated on the demo's own jobs (`evalwatt preview-check --write-calibration`),
    the preview of each job kind is within 10 % of the GPU-seconds (here CPU-seconds) they
    used."""
    raw = yaml.safe_load((demo / "config.yaml").read_text())
    raw["results_dir"] = str(demo / "results")
    config = from_dict(raw, demo)
    layout = Layout.of(demo / "results", "ci")
    _, measured_cal = run_check(config, plan_run(config), layout)
    write_calibration(tmp_path / "cal.json", measured_cal)
    raw["planner"] = {"calibration": str(tmp_path / "cal.json")}
    calibrated = from_dict(raw, demo)
    checks, _ = check(plan_run(calibrated), calibrated, measured_jobs(layout))
    assert {k.kind for k in checks} == {"baseline", "cell", "judge-pass"}
    for k in checks:
        assert k.measured_s == pytest.approx(k.preview_s, rel=0.10), k.kind


def test_second_run_does_nothing_quickly(demo: Path) -> None:
    started = time.monotonic()
    done = snakemake(demo)
    elapsed = time.monotonic() - started
    assert done.returncode == 0
    assert "Nothing to be done" in done.stdout + done.stderr
    assert elapsed < 30


def test_deleting_one_cell_reruns_that_cell_only(demo: Path) -> None:
    cells = demo / "results/ci/cells"
    target = cells / "SmolLM2-135M-Instruct__humaneval__t0__c2" / "result.json"
    others = {p: p.stat().st_mtime for p in cells.glob("*/result.json") if p != target}
    target.unlink()
    plan = snakemake(demo, "-n")
    output = plan.stdout + plan.stderr
    assert job_counts(output) == {
        "run_job": 1,
        "cell_energy": 1,
        "final_table": 1,
        "figures": 1,
        "report_pages": 1,
        "all": 1,
        "total": 6,
    }
    done = snakemake(demo)
    assert done.returncode == 0, done.stderr[-3000:]
    assert target.exists()
    assert {p: p.stat().st_mtime for p in others} == others
    assert len(read_table(demo / "results/ci/final/energy_table.parquet")) == CELLS
