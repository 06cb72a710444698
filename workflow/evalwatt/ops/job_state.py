"""Where one job stands: done, incomplete, failed (why, and which log), running, pending or
not started.

Sources of truth, in this order:

1. ``result.json``: a job is *done* only when its result loads through its contract with
   status ``ok`` (``incomplete``: it finished with problems, listed). Nothing else makes a job
   done: the Slurm executor plugin counts Slurm's UNKNOWN state as success, and Slurm says
   COMPLETED for a script that exited 0; neither is a result. A submission queued or running
   after the result was written wins over it (the job is being run again).
2. Slurm, when it answers (``evalwatt.base.slurm.query_jobs``): a job's latest submission, found
   by comment or by the Slurm job ids kept in files (``evalwatt.ops.evidence``). Only
   submissions made after the job's spec.json was written count (an older run with the same
   ids is not this one); the latest one wins.
3. The job's folder, without Slurm: a runtime process on this machine running the job's
   spec (found in /proc) is *running*; a folder or a job log without a result and without a
   process is a *failed* attempt, whose reason is the runtime's error in the job log (or the
   last phase its timeline reached). Folders set aside as ``<id>.attempt-<time>/`` count the
   earlier attempts.

No Slurm at all (no ``squeue``/``sacct`` on PATH) is not an error: the files still say
everything but which jobs are queued.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from evalwatt.base.layout import JobFiles, Layout
from evalwatt.base.slurm import SlurmRecord, SlurmView
from evalwatt.base.vocabulary import JobKind, JobStatus
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.ops.evidence import (
    error_of_log,
    known_ids,
    last_mark,
    mtime,
    slurm_comments,
    slurm_log,
)


class State(StrEnum):
    DONE = "done"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    RUNNING = "running"
    PENDING = "pending"
    NOT_STARTED = "not started"


SLURM_ACTIVE = {
    "RUNNING": State.RUNNING,
    "COMPLETING": State.RUNNING,
    "CONFIGURING": State.RUNNING,
    "SUSPENDED": State.RUNNING,
    "STOPPED": State.RUNNING,
    "SIGNALING": State.RUNNING,
    "STAGE_OUT": State.RUNNING,
    "RESIZING": State.RUNNING,
    "PENDING": State.PENDING,
    "REQUEUED": State.PENDING,
    "REQUEUE_HOLD": State.PENDING,
    "REQUEUE_FED": State.PENDING,
}
SLURM_FAILED = {
    "FAILED": "the job script exited with an error",
    "TIMEOUT": "it reached its time limit",
    "OUT_OF_MEMORY": "it ran out of memory",
    "NODE_FAIL": "its node failed",
    "PREEMPTED": "it was preempted",
    "CANCELLED": "it was cancelled",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "it reached its deadline",
    "REVOKED": "it was revoked",
}
"""Slurm end states that are failures, and what each means. Any other end state without a
result (COMPLETED, UNKNOWN) is a failure too: the job stopped without writing its result."""
KILLED_FROM_OUTSIDE = {"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
"""End states whose cause is Slurm's, not an error the job log ends with."""


@dataclass(frozen=True)
class JobState:
    """Where one job stands, and where to look."""

    kind: JobKind
    job_id: str
    state: State
    reason: str | None = None
    log: str | None = None
    """The log to read first: the job's own output, or Slurm's."""
    scheduler_job_id: str | None = None
    node: str | None = None
    attempts: int = 0
    """Earlier attempts set aside as <id>.attempt-<time>/."""
    model: str | None = None
    benchmark: str | None = None
    temperature: float | None = None
    max_connections: int | None = None
    repeat_of: str | None = None

    @property
    def done(self) -> bool:
        return self.state == State.DONE

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value
        return out


@dataclass(frozen=True)
class _Job:
    """One job's files and its latest Slurm submission: what its state is read from."""

    layout: Layout
    workdir: Path
    kind: JobKind
    job_id: str
    rec: SlurmRecord | None

    @property
    def files(self) -> JobFiles:
        return self.layout.job_files(self.kind, self.job_id)

    @property
    def job_log(self) -> Path:
        return self.layout.job_log(self.kind, self.job_id)

    def slurm_log(self, rec: SlurmRecord) -> Path:
        return slurm_log(self.workdir, self.layout, self.kind, self.job_id, rec)

    def state(self, state: State, **fields: Any) -> JobState:
        attempts = len(self.files.attempts())
        return JobState(self.kind, self.job_id, state, attempts=attempts, **fields)


def job_state(
    layout: Layout,
    kind: JobKind,
    job_id: str,
    slurm: SlurmView,
    running_here: set[Path],
    workdir: Path,
) -> JobState:
    """Where one job stands (see the module's docstring for the order of the sources)."""
    since = mtime(layout.job_spec(kind, job_id))
    ids = known_ids(workdir, layout, kind, job_id)
    rec = slurm.latest(slurm_comments(kind, job_id), ids, since)
    job = _Job(layout, workdir, kind, job_id, rec)
    result_time = mtime(job.files.result)
    active = _active(job, result_time)
    if active is not None:
        return active
    if result_time is not None:
        return _from_result(job)
    error = error_of_log(job.job_log) if job.job_log.exists() else None
    if job.rec is not None:
        return _ended_in_slurm(job, job.rec, error)
    return _from_files(job, error, running_here, slurm.available)


def _active(job: _Job, result_time: float | None) -> JobState | None:
    """Queued or running in Slurm, unless the result was written after that submission."""
    rec = job.rec
    active = SLURM_ACTIVE.get(rec.base_state) if rec else None
    if rec is None or active is None:
        return None
    if result_time is not None and (rec.submit or 0) <= result_time:
        return None
    pending = active == State.PENDING
    what = "queued" if pending else f"on {rec.node}, for {rec.elapsed}"
    return job.state(
        active,
        reason=f"Slurm job {rec.job_id} {rec.base_state} {what}",
        log=str(job.slurm_log(rec) if pending else job.job_log),
        scheduler_job_id=rec.job_id,
        node=rec.node or None,
    )


def _from_result(job: _Job) -> JobState:
    """Done, incomplete (its problems), or failed when the result does not load."""
    try:
        result = read_contract(JobResult, job.files.result)
    except ContractError as exc:
        reason = f"its result does not load: {str(exc).splitlines()[0]}"
        return job.state(State.FAILED, reason=reason, log=str(job.files.result))
    where = {"scheduler_job_id": result.accounting_id, "node": result.host}
    if result.status == JobStatus.OK:
        return job.state(State.DONE, log=str(job.job_log), **where)
    reason = "; ".join(result.problems) or "status incomplete"
    return job.state(State.INCOMPLETE, reason=reason, log=str(job.files.result), **where)


def _ended_in_slurm(job: _Job, rec: SlurmRecord, error: str | None) -> JobState:
    """Slurm ended it without a result: its end state, what that means, and the log to read
    (the job's own when it ends with an error, else Slurm's)."""
    state = rec.base_state
    meaning = SLURM_FAILED.get(
        state, "Slurm ended it without evalwatt's result (the job did not finish)"
    )
    reason = f"Slurm {state} ({meaning}), exit {rec.exit_code or '?'}, after {rec.elapsed}"
    if rec.node:
        reason += f" on {rec.node}"
    if error and state not in KILLED_FROM_OUTSIDE:
        reason += f": {error}"
    log = job.job_log if error or state == "FAILED" else job.slurm_log(rec)
    return job.state(
        State.FAILED,
        reason=reason,
        log=str(log if log.exists() else job.slurm_log(rec)),
        scheduler_job_id=rec.job_id,
        node=rec.node or None,
    )


def _from_files(
    job: _Job, error: str | None, running_here: set[Path], slurm_available: bool
) -> JobState:
    """No result and no Slurm record: running here, a failed attempt, or not started."""
    files, attempts = job.files, job.files.attempts()
    started = files.root.is_dir() and any(files.root.iterdir())
    spec = job.layout.job_spec(job.kind, job.job_id).resolve()
    script = job.layout.job_script(job.kind, job.job_id).resolve()
    if started and (spec in running_here or script in running_here):
        return job.state(State.RUNNING, reason="running on this machine", log=str(job.job_log))
    if not (started or attempts or job.job_log.exists()):
        return job.state(State.NOT_STARTED)
    if error:
        reason = error
    else:
        where = files.root if started else (attempts[-1] if attempts else None)
        mark = last_mark(where) if where else None
        reason = "stopped without a result" + (f" after {mark}" if mark else "")
        if slurm_available:
            reason += " (no Slurm job found for it)"
    return job.state(State.FAILED, reason=reason, log=str(job.job_log))
