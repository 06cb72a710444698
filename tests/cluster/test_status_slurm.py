"""`evalwatt status` against the real Slurm: jobs submitted by hand with the comments the
Slurm executor plugin and `evalwatt submit` give them, one per state: PENDING (held),
RUNNING, CANCELLED, FAILED, and COMPLETED without a result (never done). Finished jobs are
found whether or not the accounting stores comments (by the ids of the plugin's log files and
of evalwatt submit's record)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from evalwatt.base.layout import Layout, repeat_id
from evalwatt.config.load import load_config
from evalwatt.jobs.repeats import repeat_job
from evalwatt.jobs.run import RunJobs
from evalwatt.ops.evidence import slurm_comments, snakemake_log_dir
from evalwatt.ops.job_state import State
from evalwatt.ops.status import run_status
from evalwatt.ops.submit import write_job_files
from evalwatt.plan.matrix import plan_run

REPO = Path(__file__).resolve().parents[2]
CI_CONFIG = REPO / "tests" / "cluster" / "ci-slurm.yaml"

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("slurm_cluster")]


def _sbatch(comment: str, output: Path, script: str, *extra: str) -> str:
    """Submit as the Slurm executor plugin does: its comment, its log file per job id."""
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = ["sbatch", "--parsable", "-A", "evalwatt", "-p", "gpu", "-c", "1", "--mem=100"]
    argv += [f"--output={output}", f"--comment={comment}", *extra, f"--wrap={script}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def _as_plugin(kind: str, job_id: str, script: str, *extra: str) -> str:
    logs = snakemake_log_dir(Path.cwd(), kind, job_id) / "%j.log"
    return _sbatch(slurm_comments(kind, job_id)[0], logs.resolve(), script, *extra)


def _slurm_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-j", job_id, "--format=State"], capture_output=True, text=True
    )
    return out.stdout.strip().split()[0] if out.stdout.strip() else ""


def _wait(job_id: str, states: set[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while _slurm_state(job_id) not in states:
        assert time.monotonic() < deadline, f"job {job_id}: {_slurm_state(job_id)}, not {states}"
        time.sleep(0.5)


def test_status_shows_each_slurm_state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(CI_CONFIG.read_text())
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    config = load_config(tmp_path / "c.yaml", check_environment=False)
    plan = plan_run(config)
    layout = Layout.of(config.results_dir, config.run)
    run = RunJobs(config, plan, layout)
    jobs = {(k, i): run.job(k, i) for k, i in run.jobs()}
    for job in jobs.values():
        write_job_files(job)
    (base_id,) = plan.baselines
    humaneval = next(c for c in plan.cells if "__humaneval__" in c)
    writing = next(c for c in plan.cells if "__writingbench__" in c)
    rep = repeat_job(jobs[("cell", humaneval)], layout, 1)
    write_job_files(rep)
    time.sleep(1.1)  # submissions come after the specs were written
    submitted = {}
    try:
        submitted["held"] = _as_plugin("baseline", base_id, "true", "--hold")
        submitted["running"] = _as_plugin("cell", humaneval, "sleep 300")
        submitted["failed"] = _as_plugin("cell", writing, "exit 3")
        (judge_pass,) = [i for k, i in jobs if k == "judge-pass"]
        submitted["completed"] = _as_plugin("judge-pass", judge_pass, "exit 0")
        # As evalwatt submit does: its comment, and the id recorded next to the job.
        submitted["cancelled"] = _sbatch(
            slurm_comments("cell", rep.job_id)[1], layout.submit_dir() / "%j_0_log.out", "sleep 300"
        )
        layout.submissions("cell", rep.job_id).write_text(submitted["cancelled"] + "\n")
        _wait(submitted["running"], {"RUNNING"})
        _wait(submitted["cancelled"], {"RUNNING"})
        subprocess.run(["scancel", submitted["cancelled"]], check=True)
        for key in ("failed", "completed", "cancelled"):
            _wait(submitted[key], {"FAILED", "COMPLETED", "CANCELLED"})

        status = run_status(RunJobs(config, plan, layout))
        by = {(j.kind, j.job_id): j for j in status.jobs}
        assert status.slurm_note is None
        held = by[("baseline", base_id)]
        assert (held.state, held.scheduler_job_id) == (State.PENDING, submitted["held"])
        running = by[("cell", humaneval)]
        assert running.state == State.RUNNING and running.node
        failed = by[("cell", writing)]
        assert failed.state == State.FAILED and "Slurm FAILED" in failed.reason
        assert "exit 3:0" in failed.reason
        trap = by[("judge-pass", judge_pass)]  # Slurm COMPLETED, but no result: never done
        assert trap.state == State.FAILED and "without evalwatt's result" in trap.reason
        cancelled = by[("cell", repeat_id(humaneval, 1))]
        assert cancelled.state == State.FAILED and "CANCELLED" in cancelled.reason
        assert cancelled.repeat_of == humaneval
        assert status.exit_code == 1
    finally:
        for job_id in submitted.values():
            subprocess.run(["scancel", job_id], check=False)
