"""Per-model execution on a real Slurm: `snakemake --profile profiles/slurm-ci` against the
single-node cluster of tests/cluster/slurm-up.sh, on the CI demo with `execution: per-model`
and two temperatures (4 cells: 2 benchmarks x 2 temperatures, 2 of them judge-scored).

What is checked is what Slurm itself recorded (sacct): one model job for the 4 cells and one
judge pass for the 2 judged cells, where per-cell execution submits a job per cell and per
baseline; the final table has the per-cell run's columns and every cell its energy; a model job
cancelled after its second cell is followed by exactly one new model job, for the 2 missing
cells only, and the finished cells' results are left byte for byte as they were.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_slurm import PROFILE, REPO, SNAKEMAKE, _config, _sacct, _snakemake

from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.spec import JobSpec
from evalwatt.table.final import read_table

pytestmark = pytest.mark.cluster

RUN = "per-model"
MODEL_COMMENT = "rule_run_job_wildcards_model_"
PASS_COMMENT = "rule_run_judge_pass_wildcards_judge-pass_"


@pytest.fixture(scope="module", autouse=True)
def _cluster(slurm_cluster) -> None:
    """Every test here needs the test cluster (tests/conftest.py starts it)."""


def _two_temperatures(execution: str):
    def edit(data: dict) -> None:
        data["run"] = RUN
        data["execution"] = execution
        data["sweeps"]["temperature"] = [0.0, 0.7]

    return edit


def _rows(workdir: Path, prefix: str) -> list[dict[str, str]]:
    """The Slurm jobs of ``workdir`` whose comment (the plugin's rule and wildcards) starts
    with ``prefix``, oldest first."""
    return [r for r in _sacct(workdir) if r["Comment"].startswith(prefix)]


def _table(workdir: Path):
    return read_table(workdir / "results" / RUN / "final" / "energy_table.parquet")


@pytest.fixture(scope="module")
def per_model_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workdir = tmp_path_factory.mktemp("per-model")
    done = _snakemake(workdir, _config(workdir, "per-model", _two_temperatures("per-model")))
    return workdir, done


def test_four_cells_run_as_one_model_job_and_one_judge_pass(per_model_run) -> None:
    workdir, done = per_model_run
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _sacct(workdir)
    models, passes = _rows(workdir, MODEL_COMMENT), _rows(workdir, PASS_COMMENT)
    assert len(models) == 1 and len(passes) == 1 and len(jobs) == 2, jobs
    assert all(r["State"] == "COMPLETED" for r in jobs), jobs
    root = workdir / "results" / RUN
    cells = {p.parent.name: read_contract(JobResult, p) for p in root.glob("cells/*/result.json")}
    assert len(cells) == 4
    model_dir = root / "models" / models[0]["Comment"].removeprefix(MODEL_COMMENT)
    for result in cells.values():
        assert result.kind == "cell" and result.packed_in is not None
        assert Path(result.packed_in).resolve() == model_dir.resolve()
        assert result.scheduler_job_id == models[0]["JobIDRaw"]
    judged = {p.parent.name for p in root.glob("judges/*/result.json")}
    assert len(judged) == 2 and judged <= set(cells)
    assert not (root / "baselines").exists()
    # A second run finds nothing to do: each cell's inputs are the same files as in the first
    # (its model job's and its judge pass's results), so no energy is redone.
    again = _snakemake(workdir, workdir / "per-model.yaml", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]


def test_the_table_has_the_per_cell_columns_and_every_cell_its_energy(
    per_model_run, demo_run
) -> None:
    """Against the per-cell run of the same demo (tests/cluster/conftest.py: one temperature,
    so its cells are the per-model run's at temperature 0)."""
    (model_dir, model_done), (cell_dir, cell_done) = per_model_run, demo_run
    assert model_done.returncode == 0 and cell_done.returncode == 0, cell_done.stderr[-3000:]
    packed = _table(model_dir)
    own = read_table(cell_dir / "results" / "slurm-ci" / "final" / "energy_table.parquet")
    assert packed.column_names == own.column_names
    assert len(packed) == 4
    assert set(own.column("cell_id").to_pylist()) < set(packed.column("cell_id").to_pylist())
    for row in packed.to_pylist():
        assert row["cpu_est_inference_energy_j"] > 0, row["cell_id"]
        assert row["gpu_inference_energy_j"] is None  # fake GPUs: no NVML, a null, not 0 J


def _cell_results(root: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in root.glob("cells/*/result.json")}


def _wait_for(predicate, what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _is_cancelled_model_job(workdir: Path, job_id: str) -> bool:
    """Whether sacct has job ``job_id`` as cancelled and as the model job (by its comment)."""
    rows = [r for r in _sacct(workdir) if r["JobIDRaw"] == job_id]
    return bool(rows) and all(
        r["State"].startswith("CANCELLED") and r["Comment"].startswith(MODEL_COMMENT) for r in rows
    )


def test_a_cancelled_model_job_is_followed_by_one_job_for_its_missing_cells(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "cancel", _two_temperatures("per-model"))
    root = tmp_path / "results" / RUN
    argv = [str(SNAKEMAKE), "--retries", "0", "--snakefile", str(REPO / "Snakefile")]
    argv += ["--profile", str(PROFILE), "--directory", str(tmp_path), "--configfile", str(config)]
    # Ctrl-C as in a terminal: a test run started in the background (a shell's `cmd &`)
    # inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    first = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(lambda: len(_cell_results(root)) >= 2, "the model job's second cell")
        # the only job running then (the judge pass waits for it); sacct records a job's
        # comment only once it ended, so it is found by its folder and state
        (running,) = [r for r in _sacct(tmp_path) if r["State"] == "RUNNING"]
        subprocess.run(["scancel", running["JobIDRaw"]], check=True)
        # slurmdbd records the state and the comment a moment apart: until both are there,
        # the job is not yet known as the cancelled model job
        _wait_for(
            lambda: _is_cancelled_model_job(tmp_path, running["JobIDRaw"]),
            "Slurm to record the cancellation of the model job",
            120,
        )
        # The executor plugin (2.8.0) compares sacct's state with its list of failed states
        # as a whole string, and a job cancelled by a user is "CANCELLED by <uid>": it would
        # wait for that job for ever (SIGTERM too: it waits for its running jobs). The user's
        # move, then: Ctrl-C (SIGINT: Snakemake cancels its jobs and exits), run it again.
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0, out[-3000:]
    kept = _cell_results(root)
    assert 2 <= len(kept) < 4, sorted(kept)

    again = _snakemake(tmp_path, config)
    assert again.returncode == 0, again.stderr[-3000:]
    models = _rows(tmp_path, MODEL_COMMENT)
    assert len(models) == 2, models  # the cancelled one, and exactly one new one
    new_id = models[1]["Comment"].removeprefix(MODEL_COMMENT)
    assert new_id != models[0]["Comment"].removeprefix(MODEL_COMMENT)
    spec = read_contract(JobSpec, root / "jobs" / "model" / new_id / "spec.json")
    assert spec.pack is not None
    missing = {c.cell_id for c in spec.pack.cells}
    assert missing.isdisjoint(kept) and len(missing) + len(kept) == 4
    after = _cell_results(root)
    assert {c: after[c] for c in kept} == kept  # byte for byte
    assert len(after) == 4 and len(_table(tmp_path)) == 4
