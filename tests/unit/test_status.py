"""`evalwatt status`: every state of a job from its results folder, this machine's processes
and a fake Slurm (small `sacct` and `squeue` scripts on PATH printing canned lines).

Results are real: a load-only job runs through the real job runtime against the fake server
of test_job_runtime, and its result is given each planned job's kind, id and spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_job_runtime import FAKE_SERVER, _fake_served

from evalwatt.base import slurm
from evalwatt.base.layout import Layout, repeat_id
from evalwatt.base.slurm import SlurmView, query_jobs
from evalwatt.base.vocabulary import JobStatus
from evalwatt.config.load import from_dict, read_config_file
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.result import JobResult, PackedOutcome
from evalwatt.jobs.repeats import repeat_job
from evalwatt.jobs.resolve import Job
from evalwatt.jobs.run import RunJobs
from evalwatt.ops.cli import main
from evalwatt.ops.evidence import error_of_log, known_ids, slurm_comments
from evalwatt.ops.job_state import State
from evalwatt.ops.status import run_status
from evalwatt.ops.status_text import format_status, report_not_done
from evalwatt.ops.submit import write_job_files
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.runner import run_job
from evalwatt.runtime.server import ServerError

REPO = Path(__file__).resolve().parents[2]
CELL = "SmolLM2-135M-Instruct__humaneval__t0__c2"


def demo_config(results: Path, config_path: Path | None = None):
    path = config_path or REPO / "config" / "config.yaml"
    data = read_config_file(path)
    data["results_dir"] = str(results)
    return from_dict(data, path.parent, origin=str(path))


class Run:
    """The demo's plan in a temporary results folder, every job rendered."""

    def __init__(self, tmp: Path, fake_server: Path) -> None:
        self.config = demo_config(tmp / "results")
        self.plan = plan_run(self.config)
        self.layout = Layout.of(self.config.results_dir, self.config.run)
        self.fake_server = fake_server
        self.run = RunJobs(self.config, self.plan, self.layout)
        self.jobs = {(k, i): self.run.job(k, i) for k, i in self.run.jobs()}
        for job in self.jobs.values():
            write_job_files(job)
        self._template: JobResult | None = None

    def fresh(self) -> RunJobs:
        """The run's jobs as a new Snakemake run or `evalwatt status` sees them now."""
        return RunJobs(self.config, self.plan, self.layout)

    def job(self, kind: str, job_id: str) -> Job:
        return self.jobs[(kind, job_id)]

    def template(self) -> JobResult:
        """One real result (a load-only job run by the runtime), made once."""
        if self._template is None:
            base = next(j for (k, _), j in self.jobs.items() if k == "baseline")
            self._template = run_job(_fake_served(base, self.fake_server))
            write_contract(base.files.result, self._template.model_copy(update={"spec": base.spec}))
        return self._template

    def finish(self, job: Job, status: JobStatus = JobStatus.OK, problems=()) -> None:
        result = self.template().model_copy(
            update={
                "kind": job.kind,
                "job_id": job.job_id,
                "spec": job.spec,
                "status": status,
                "problems": tuple(problems),
            }
        )
        job.files.root.mkdir(parents=True, exist_ok=True)
        write_contract(job.files.result, result)

    def state(self, kind: str, job_id: str, slurm: SlurmView | None = None, running=None):
        status = run_status(self.fresh(), slurm=slurm or SlurmView(), running_here=running or set())
        return next(j for j in status.jobs if (j.kind, j.job_id) == (kind, job_id))


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    path = tmp_path / "fake_server.py"
    path.write_text(FAKE_SERVER)
    return path


@pytest.fixture
def run(tmp_path: Path, fake_server: Path) -> Run:
    return Run(tmp_path, fake_server)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch):
    """sacct and squeue on PATH printing the lines given (``fake_slurm(sacct=[...])``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sacct", "squeue"):
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\necho "$@" >> {bin_dir}/{name}.args\ncat {bin_dir}/{name}.out\n'
        )
        script.chmod(0o755)
        (bin_dir / f"{name}.out").write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def set_lines(sacct=(), squeue=()):
        (bin_dir / "sacct.out").write_text("".join(f"{line}\n" for line in sacct))
        (bin_dir / "squeue.out").write_text("".join(f"{line}\n" for line in squeue))
        return query_jobs(time.time() - 3600)

    return set_lines


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def sacct_line(job_id: str, state: str, comment: str, exit_code="0:0", submit=None) -> str:
    return "|".join(
        [job_id, state, exit_code, comment, "00:01:02", "node7", _iso(submit or time.time() + 5)]
    )


# --- from the files alone ------------------------------------------------------------------------


def test_a_job_with_an_ok_result_is_done_and_nothing_else_is(run):
    cell = run.job("cell", CELL)
    assert run.state("cell", CELL).state == State.NOT_STARTED
    run.finish(cell)
    done = run.state("cell", CELL)
    assert done.state == State.DONE and done.done
    assert done.scheduler_job_id.startswith("local:")
    assert (done.model, done.benchmark, done.temperature) == (
        "SmolLM2-135M-Instruct",
        "humaneval",
        0,
    )


def test_an_incomplete_result_is_shown_as_such_with_its_problems(run):
    run.finish(run.job("cell", CELL), JobStatus.INCOMPLETE, ["1 of 3 samples completed"])
    state = run.state("cell", CELL)
    assert state.state == State.INCOMPLETE and not state.done
    assert state.reason == "1 of 3 samples completed"


def test_a_result_that_does_not_load_is_a_failure(run):
    cell = run.job("cell", CELL)
    cell.files.root.mkdir(parents=True)
    cell.files.result.write_text(json.dumps({"schema_version": 1}))
    state = run.state("cell", CELL)
    assert state.state == State.FAILED and "does not load" in state.reason


def test_a_failed_runtime_gives_its_error_and_its_log(run):
    """The real runtime fails (the server crashes); its traceback is in the job log."""
    cell = run.job("cell", CELL)
    spec = _fake_served(cell, run.fake_server)
    argv = list(spec.server.argv)
    argv[-1] = "crash"
    spec = spec.model_copy(update={"server": spec.server.model_copy(update={"argv": tuple(argv)})})
    log = run.layout.job_log("cell", CELL)
    log.parent.mkdir(parents=True, exist_ok=True)
    with pytest.raises(ServerError) as failure:
        run_job(spec)
    error_line = f"evalwatt.runtime.server.ServerError: {str(failure.value).splitlines()[0]}"
    log.write_text(f"Traceback (most recent call last):\n  File 'x'\n{error_line}\n  tail\n")
    state = run.state("cell", CELL)
    assert state.state == State.FAILED
    assert "ServerError" in state.reason and "exited with code 3" in state.reason
    assert state.log == str(log)
    # The next attempt sets the failed folder aside; it is counted.
    run.finish(cell)
    cell.files.root.rename(cell.files.attempt("20260101T000000"))
    run.finish(cell)
    assert run.state("cell", CELL).attempts == 1


def test_a_job_killed_without_an_error_names_its_last_phase(run):
    cell = run.job("cell", CELL)
    cell.files.root.mkdir(parents=True)
    (cell.files.timeline).write_text(
        json.dumps({"schema_version": 1, "marks": {"job_start": 1.0, "load_start": 2.0}})
    )
    state = run.state("cell", CELL)
    assert (
        state.state == State.FAILED and state.reason == "stopped without a result after load_start"
    )


def test_a_job_running_on_this_machine_is_running(run, tmp_path):
    """A process whose command line holds the job's spec (relative to its cwd) runs it."""
    cell = run.job("cell", CELL)
    cell.files.root.mkdir(parents=True)
    cell.files.timeline.write_text(json.dumps({"schema_version": 1, "marks": {"job_start": 1.0}}))
    relative = os.path.relpath(cell.spec_path.resolve(), tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", relative], cwd=tmp_path
    )
    try:
        time.sleep(0.2)
        status = run_status(run.fresh(), slurm=SlurmView())
        state = next(j for j in status.jobs if j.job_id == CELL and j.kind == "cell")
        assert state.state == State.RUNNING
    finally:
        proc.kill()
        proc.wait()
    assert run.state("cell", CELL).state == State.FAILED


# --- with Slurm --------------------------------------------------------------------------------

SNAKEMAKE_COMMENT = slurm_comments("cell", CELL)[0]


@pytest.mark.parametrize(
    ("slurm_state", "expected", "words"),
    [
        ("RUNNING", State.RUNNING, "RUNNING on node7"),
        ("PENDING", State.PENDING, "PENDING queued"),
        ("REQUEUED", State.PENDING, "queued"),
        ("COMPLETING", State.RUNNING, "COMPLETING"),
        ("FAILED", State.FAILED, "Slurm FAILED"),
        ("TIMEOUT", State.FAILED, "time limit"),
        ("OUT_OF_MEMORY", State.FAILED, "out of memory"),
        ("NODE_FAIL", State.FAILED, "node failed"),
        ("PREEMPTED", State.FAILED, "preempted"),
        ("CANCELLED by 0", State.FAILED, "Slurm CANCELLED (it was cancelled)"),
        # The executor plugin's trap: UNKNOWN (and COMPLETED) without a result is no success.
        ("COMPLETED", State.FAILED, "without evalwatt's result"),
        ("UNKNOWN", State.FAILED, "without evalwatt's result"),
    ],
)
def test_each_slurm_state(run, fake_slurm, slurm_state, expected, words):
    slurm = fake_slurm(sacct=[sacct_line("4242", slurm_state, SNAKEMAKE_COMMENT, "1:0")])
    state = run.state("cell", CELL, slurm)
    assert state.state == expected
    assert words in state.reason
    assert state.scheduler_job_id == "4242"
    if expected == State.PENDING:
        assert state.log.endswith(f".snakemake/slurm_logs/rule_run_job/cell_{CELL}/4242.log")


def test_a_failed_slurm_job_gives_the_runtimes_error(run, fake_slurm):
    log = run.layout.job_log("cell", CELL)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("Traceback...\nFileNotFoundError: no weights at /models/x on this node\n")
    slurm = fake_slurm(sacct=[sacct_line("7", "FAILED", SNAKEMAKE_COMMENT, "1:0")])
    state = run.state("cell", CELL, slurm)
    assert state.state == State.FAILED and "no weights at /models/x" in state.reason
    assert state.log == str(log)


def test_the_latest_submission_counts_and_older_runs_do_not(run, fake_slurm):
    old = time.time() - 3 * 3600  # before the job's spec was written: another run's job
    slurm = fake_slurm(
        sacct=[
            sacct_line("10", "TIMEOUT", SNAKEMAKE_COMMENT, submit=old),
            sacct_line("11", "TIMEOUT", SNAKEMAKE_COMMENT),
            sacct_line("12", "PENDING", SNAKEMAKE_COMMENT, submit=time.time() + 10),
        ]
    )
    assert run.state("cell", CELL, slurm).scheduler_job_id == "12"
    only_old = fake_slurm(sacct=[sacct_line("10", "TIMEOUT", SNAKEMAKE_COMMENT, submit=old)])
    assert run.state("cell", CELL, only_old).state == State.NOT_STARTED


def test_squeue_knows_queued_jobs_whose_comment_sacct_lacks(run, fake_slurm):
    """Where the accounting stores no comments, the controller still has them."""
    line = f"55|RUNNING|{SNAKEMAKE_COMMENT}|0:42|node3|{_iso(time.time() + 1)}"
    slurm = fake_slurm(sacct=["55|RUNNING|||00:00:42|node3|" + _iso(time.time())], squeue=[line])
    state = run.state("cell", CELL, slurm)
    assert state.state == State.RUNNING and state.node == "node3"


def test_a_result_beats_slurm_unless_a_newer_submission_is_queued(run, fake_slurm):
    run.finish(run.job("cell", CELL))
    done = fake_slurm(
        sacct=[sacct_line("3", "COMPLETED", SNAKEMAKE_COMMENT, submit=time.time() - 5)]
    )
    assert run.state("cell", CELL, done).state == State.DONE
    queued = fake_slurm(sacct=[sacct_line("4", "PENDING", SNAKEMAKE_COMMENT)])
    assert run.state("cell", CELL, queued).state == State.PENDING


def test_no_slurm_is_a_note_not_an_error(run, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    view = query_jobs(None)
    assert not view.available and "sacct not found" in view.note


def test_a_failing_sacct_is_a_note(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sacct", "squeue"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'slurmdbd down' >&2\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    view = query_jobs(None)
    assert not view.available and "slurmdbd down" in view.note


def test_the_slurm_client_says_why_a_command_gave_no_answer(tmp_path):
    """One client for status, submit and the sacct source: a missing command, a time-out and a
    failure are replies that say so, never exceptions."""
    missing = slurm.run([str(tmp_path / "sacct")], timeout_s=5)
    assert not missing.ok and missing.returncode is None and missing.body is None
    assert missing.why(5).startswith("not found (") and missing.error == missing.not_started
    slow = tmp_path / "squeue"
    slow.write_text("#!/bin/sh\nsleep 5\n")
    slow.chmod(0o755)
    late = slurm.run([str(slow)], timeout_s=0.2)
    assert late.timed_out and late.why(0.2) == "gave no answer within 0.2 s"
    assert late.error == "timed out" and late.elapsed_s < 5
    failing = tmp_path / "scontrol"
    failing.write_text("#!/bin/sh\necho partial\necho 'no controller' >&2\nexit 3\n")
    failing.chmod(0o755)
    failed = slurm.run([str(failing), "show", "config"], timeout_s=5)
    assert (failed.returncode, failed.body, failed.error) == (3, "partial\n", "no controller\n")
    assert failed.why(5) == "failed (exit 3): no controller"
    assert failed.command == f"{failing} show config"


def test_parsable_output_keeps_only_whole_lines():
    text = "1|RUNNING|c1\n2|PENDING\n\n3|FAILED|a|b\n4|COMPLETED|\n"
    rows = slurm.parse_parsable(text, ("job_id", "state", "comment"))
    assert rows == [
        {"job_id": "1", "state": "RUNNING", "comment": "c1"},
        {"job_id": "4", "state": "COMPLETED", "comment": ""},
    ]
    assert slurm.beside("/opt/slurm/bin/sacct", "scontrol") == "/opt/slurm/bin/scontrol"
    assert slurm.beside("sacct", "scontrol") == "scontrol"
    assert slurm.unix_time("Unknown") is None


# --- repeats, the matrix, the command, the onerror report ---------------------------------------


def test_repeats_are_listed_with_their_cell(run, fake_slurm):
    cell = run.job("cell", CELL)
    reps = [repeat_job(cell, run.layout, n) for n in (1, 2, 3)]
    for r in reps:
        write_job_files(r)
    run.finish(reps[0])
    soon = _iso(time.time() + 2)
    slurm = fake_slurm(
        squeue=[
            f"81|RUNNING|evalwatt_submit_cell_{repeat_id(CELL, 2)}|0:05|node1|{soon}",
            f"82|PENDING|evalwatt_submit_cell_{repeat_id(CELL, 3)}|0:00||{soon}",
        ]
    )
    status = run_status(run.fresh(), slurm=slurm, running_here=set())
    by_id = {j.job_id: j for j in status.jobs}
    assert [by_id[repeat_id(CELL, n)].state for n in (1, 2, 3)] == [
        State.DONE,
        State.RUNNING,
        State.PENDING,
    ]
    assert by_id[repeat_id(CELL, 1)].repeat_of == CELL
    assert by_id[repeat_id(CELL, 3)].log.endswith("submitit/82_0_log.out")
    assert f"{CELL}: r1 done, r2 running, r3 pending" in format_status(status)


def test_the_matrix_and_the_list_of_jobs_not_done(run):
    for job in run.jobs.values():
        if job.job_id != CELL or job.kind != "cell":
            run.finish(job)
    text = format_status(run_status(run.fresh(), slurm=SlurmView(), running_here=set()))
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert "t0 c2" in header and "t0.7 c2" in header
    row = next(line for line in text.splitlines() if "humaneval" in line and "Smol" in line)
    assert "not started" in row and "done" in row
    assert f"cell {CELL}: not started" in text


def _write_config(tmp_path: Path) -> Path:
    data = read_config_file(REPO / "config" / "config.yaml")
    data["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


def test_the_command_exit_codes_and_json(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm"))  # no Slurm on PATH
    monkeypatch.chdir(tmp_path)
    config = _write_config(tmp_path)
    assert main(["status", "--configfile", str(config), "--json"]) == 1
    jobs = json.loads(capsys.readouterr().out)
    assert {(j["kind"], j["job_id"]) for j in jobs} == set(run.jobs)
    assert all(j["state"] == "not started" for j in jobs)
    for job in run.jobs.values():
        run.finish(job)
    assert main(["status", "--configfile", str(config)]) == 0
    assert "done" in capsys.readouterr().out
    assert main(["status", "--configfile", str(tmp_path / "missing.yaml")]) == 2


def test_the_onerror_report_names_the_jobs_not_done(run, capsys):
    for job in run.jobs.values():
        if job.job_id != CELL:
            run.finish(job)
    report_not_done(run.config, run.plan, run.layout)
    err = capsys.readouterr().err
    assert "the final table is written only when every cell" in err
    assert f"cell {CELL}: not started" in err and "run the same snakemake command" in err


def test_the_onerror_report_never_raises(run, capsys):
    report_not_done(run.config, None, run.layout)  # type: ignore[arg-type]
    assert "could not list the jobs" in capsys.readouterr().err


def test_error_of_log_takes_the_last_exception_line(tmp_path):
    log = tmp_path / "x.log"
    log.write_text(
        "ValueError: first\nnoise\nevalwatt.runtime.offline.NotStagedError: task x is not staged\n"
    )
    assert error_of_log(log) == "evalwatt.runtime.offline.NotStagedError: task x is not staged"
    log.write_text("all fine\n")
    assert error_of_log(log) is None


def test_finished_jobs_are_found_by_id_where_sacct_keeps_no_comments(run, fake_slurm, tmp_path):
    """Many sites store no comments: the plugin's log file names the Slurm job id."""
    logs = tmp_path / ".snakemake" / "slurm_logs" / "rule_run_job" / f"cell_{CELL}"
    logs.mkdir(parents=True)
    (logs / "901.log").write_text(
        "slurmstepd: error: *** JOB 901 CANCELLED DUE TO TIME LIMIT ***\n"
    )
    ids = {"901"}
    slurm = fake_slurm(sacct=[sacct_line("901", "TIMEOUT", "")])
    assert run.state("cell", CELL, slurm).state == State.NOT_STARTED  # no comment, no id given
    assert known_ids(tmp_path, run.layout, "cell", CELL) == ids
    view = query_jobs(time.time() - 3600, ids)
    status = run_status(run.fresh(), workdir=tmp_path, slurm=view, running_here=set())
    state = next(j for j in status.jobs if (j.kind, j.job_id) == ("cell", CELL))
    assert state.state == State.FAILED and "time limit" in state.reason
    assert state.log == str(logs / "901.log")


# --- per-model execution: model jobs, judge passes, each cell's state ---------------------------


def test_per_model_status_shows_the_model_job_and_each_cells_state(run):
    run.config = run.config.replace(execution="per-model")
    cells = [c for c in run.plan.cells]
    for cell_id in cells[:2]:
        run.finish(run.fresh().job("cell", cell_id))
    fresh = run.fresh()
    (model_id,) = [i for k, i in fresh.jobs() if k == "model"]
    for kind, job_id in fresh.jobs():
        write_job_files(fresh.job(kind, job_id))
    status = run_status(run.fresh(), slurm=SlurmView(), running_here=set())
    assert [(j.kind, j.state) for j in status.jobs] == [
        ("model", State.NOT_STARTED),
        ("judge-pass", State.NOT_STARTED),
    ]
    by_cell = {c.job_id: c for c in status.cells}
    assert {c: by_cell[c].state for c in cells[:2]} == dict.fromkeys(cells[:2], State.DONE)
    pending = fresh.packs[("model", model_id)].cells
    for cell_id in pending:
        assert by_cell[cell_id].state == State.NOT_STARTED
        assert by_cell[cell_id].reason == f"in model {model_id}"
        assert by_cell[cell_id].benchmark == run.plan.cells[cell_id].benchmark
    text = format_status(status)
    assert (
        "model jobs (execution per-model" in text and f"{model_id}  not started  (2 cells)" in text
    )
    assert "judge passes" in text
    # the model job ended without one of its cells: that cell failed, with the job's word
    result = run.template().model_copy(
        update={
            "kind": "model",
            "job_id": model_id,
            "spec": fresh.job("model", model_id).spec,
            "cells": (
                PackedOutcome(cell_id=pending[0], status="failed", result=None, error="boom"),
            ),
        }
    )
    path = run.layout.run_result("model", model_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_contract(path, result)
    failed = next(
        c
        for c in run_status(run.fresh(), slurm=SlurmView(), running_here=set()).cells
        if c.job_id == pending[0]
    )
    assert failed.state == State.FAILED and failed.reason.endswith("failed: boom")


def test_a_judgement_waits_for_its_cell_in_a_judge_pass(run):
    status = run_status(run.fresh(), slurm=SlurmView(), running_here=set())
    judged = [c.id for c in run.plan.cells.values() if c.judge]
    views = {j.job_id: j for j in status.judgements}
    assert set(views) == set(judged)
    assert all(v.state == State.NOT_STARTED for v in views.values())
    assert all(v.reason == "waits for its cell (not started)" for v in views.values())
