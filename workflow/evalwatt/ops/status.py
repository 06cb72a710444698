"""Where every job of a run stands: done, incomplete, failed (why, and which log), running,
pending or not started; ``evalwatt status`` and the Snakefile's ``onerror:`` handler.

Sources of truth, in this order:

1. ``result.json``: a job is *done* only when its result loads through its contract with
   status ``ok`` (``incomplete``: it finished with problems, listed). Nothing else makes a job
   done: the Slurm executor plugin counts Slurm's UNKNOWN state as success, and Slurm says
   COMPLETED for a script that exited 0; neither is a result.
2. Slurm, when it answers: ``squeue`` for queued and running jobs (the controller keeps every
   job's comment) and ``sacct`` for finished ones (it needs ``AccountingStoreFlags=job_comment``).
   A job is recognised by its comment: the Slurm executor plugin submits ``run_job`` as
   ``rule_run_job_wildcards_<kind>_<id>``; ``evalwatt submit`` as ``evalwatt_submit_<kind>_<id>``.
   Many sites do not store comments in the accounting (``AccountingStoreFlags=job_comment``
   is not the default), so a finished job is also found by its Slurm job ids: the plugin's
   log files (``.snakemake/slurm_logs/rule_run_job/<kind>_<id>/<slurm id>.log``) and the ids
   ``evalwatt submit`` records (``Layout.submissions``), asked of ``sacct -j``.
   Only submissions made after the job's spec.json was written count (an older run with the
   same ids is not this one); the latest one wins.
3. The job's folder, without Slurm: a runtime process on this machine running the job's
   spec (found in /proc) is *running*; a folder or a job log without a result and without a
   process is a *failed* attempt, whose reason is the runtime's error in the job log (or the
   last phase its timeline reached). Folders set aside as ``<id>.attempt-<time>/`` count the
   earlier attempts.

No Slurm at all (no ``squeue``/``sacct`` on PATH) is not an error: the files still say
everything but which jobs are queued.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from evalwatt.base.layout import Layout, repeat_of
from evalwatt.base.paths import DEFAULT_CONFIG
from evalwatt.base.vocabulary import JobKind, JobStatus
from evalwatt.config.load import load_config
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.timeline import TimelineFile
from evalwatt.plan.matrix import Plan, plan_run

EXIT_ALL_DONE = 0
EXIT_NOT_ALL_DONE = 1

SNAKEMAKE_RULE = "run_job"
SNAKEMAKE_SLURM_LOGS = Path(".snakemake") / "slurm_logs"
"""Where the Slurm executor plugin writes its logs, relative to the workflow's directory:
``rule_<rule>/<wildcards joined by _>/<slurm job id>.log`` (its default ``--slurm-logdir``)."""
SUBMIT_COMMENT = "evalwatt_submit"
SPEC_CLOCK_SLACK_S = 120
"""Submissions up to this long before a spec's mtime still count (clock skew, NFS)."""


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


def slurm_comments(kind: JobKind, job_id: str) -> tuple[str, str]:
    """The comments a job is submitted with: by the Slurm executor plugin, by evalwatt submit."""
    return (
        f"rule_{SNAKEMAKE_RULE}_wildcards_{kind}_{job_id}",
        f"{SUBMIT_COMMENT}_{kind}_{job_id}",
    )


@dataclass(frozen=True)
class SlurmRecord:
    """One Slurm job as squeue or sacct shows it."""

    job_id: str
    state: str
    comment: str
    exit_code: str = ""
    elapsed: str = ""
    node: str = ""
    submit: float | None = None
    """Submission time, unix seconds (None: unknown)."""

    @property
    def base_state(self) -> str:
        """``CANCELLED by 0`` -> ``CANCELLED``."""
        return self.state.split()[0] if self.state else "UNKNOWN"

    @property
    def order(self) -> tuple[float, int]:
        digits = re.match(r"\d+", self.job_id)
        return (self.submit or 0.0, int(digits.group()) if digits else 0)


@dataclass(frozen=True)
class SlurmView:
    """What Slurm said about this user's jobs, by Slurm job id; ``note`` when it could not."""

    records: Mapping[str, SlurmRecord] = field(default_factory=dict)
    note: str | None = None
    available: bool = False

    def latest(
        self, comments: Iterable[str], job_ids: Iterable[str], since: float | None
    ) -> SlurmRecord | None:
        """The latest submission with one of ``comments`` or ``job_ids``, made after ``since``."""
        wanted, ids = set(comments), set(job_ids)
        found = [
            r
            for r in self.records.values()
            if (r.comment in wanted or r.job_id in ids)
            and (since is None or r.submit is None or r.submit >= since - SPEC_CLOCK_SLACK_S)
        ]
        return max(found, key=lambda r: r.order) if found else None


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)


def _unix(text: str) -> float | None:
    """Slurm's local ISO time (``2026-11-22T03:18:39``) as unix seconds; None for Unknown."""
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


SACCT_FORMAT = "JobIDRaw,State,ExitCode,Comment,Elapsed,NodeList,Submit"
SQUEUE_FORMAT = "%i|%T|%k|%M|%N|%V"


def query_slurm(since: float | None, job_ids: Iterable[str] = (), run: Runner = _run) -> SlurmView:
    """This user's Slurm jobs since ``since`` (unix seconds) and the jobs ``job_ids``, from
    sacct and squeue.

    The controller (squeue) knows every queued or running job and its comment even where the
    accounting does not store comments, and its live state wins; sacct adds finished jobs, by
    comment since ``since`` and by id. A command missing or failing is a note, not an error."""
    user = getpass.getuser()
    records: dict[str, SlurmRecord] = {}
    notes = []
    available = False
    start = dt.datetime.fromtimestamp(since or time.time() - 86400).strftime("%Y-%m-%dT%H:%M:%S")
    sacct = ["sacct", "-X", "-P", "-n", f"--format={SACCT_FORMAT}", f"--starttime={start}"]
    squeue = ["squeue", "-h", "-u", user, "-o", SQUEUE_FORMAT]
    ids = sorted(set(job_ids))
    by_id = ["sacct", "-X", "-P", "-n", f"--format={SACCT_FORMAT}", f"-j{','.join(ids)}"]
    for argv in (sacct, *([by_id] if ids else []), squeue):  # squeue last: its state wins
        if shutil.which(argv[0]) is None:
            notes.append(f"{argv[0]} not found")
            continue
        try:
            out = run(argv)
        except (OSError, subprocess.TimeoutExpired) as exc:
            notes.append(f"{argv[0]} failed: {exc}")
            continue
        if out.returncode != 0:
            notes.append(f"{argv[0]} failed: {(out.stderr or out.stdout).strip()[:200]}")
            continue
        available = True
        for line in out.stdout.splitlines():
            rec = _parse_squeue(line) if argv is squeue else _parse_sacct(line)
            if rec is not None and (rec.comment or rec.job_id in ids):
                records[rec.job_id] = rec
    return SlurmView(records, "; ".join(notes) or None, available)


def _parse_sacct(line: str) -> SlurmRecord | None:
    parts = line.split("|")
    if len(parts) != 7:
        return None
    job_id, state, exit_code, comment, elapsed, node, submit = parts
    return SlurmRecord(job_id, state, comment, exit_code, elapsed, node, _unix(submit))


def _parse_squeue(line: str) -> SlurmRecord | None:
    parts = line.split("|")
    if len(parts) != 6:
        return None
    job_id, state, comment, elapsed, node, submit = parts
    comment = "" if comment == "(null)" else comment
    return SlurmRecord(job_id, state, comment, "", elapsed, node, _unix(submit))


# --- local evidence ----------------------------------------------------------------------------


def local_job_processes() -> set[Path]:
    """Spec and script paths (resolved) that a process on this machine is running."""
    found: set[Path] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(pid_dir / "cwd"))
        except OSError:
            continue
        for raw in argv:
            arg = raw.decode(errors="replace")
            if arg.endswith(("spec.json", "job.sbatch")):
                found.add((cwd / arg).resolve())
    return found


_ERROR_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|NotFound\w*))"
    r"(?::\s*(.*))?$"
)


def error_of_log(path: Path, tail_bytes: int = 64_000) -> str | None:
    """The error a job log ends with: the last ``SomeError: message`` line (the runtime's
    traceback ends with it), or None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - tail_bytes))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        match = _ERROR_LINE.match(line.strip())
        if match:
            return " ".join(line.strip().split())[:300]
    return None


def last_mark(run_dir: Path) -> str | None:
    """The last phase a (killed or failed) job reached, from its timeline."""
    try:
        marks = read_contract(TimelineFile, run_dir / "timeline.json").marks
    except ContractError:
        return None
    return max(marks, key=lambda m: marks[m]).value if marks else None


# --- one job -----------------------------------------------------------------------------------


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


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def snakemake_log_dir(workdir: Path, kind: JobKind, job_id: str) -> Path:
    return workdir / SNAKEMAKE_SLURM_LOGS / f"rule_{SNAKEMAKE_RULE}" / f"{kind}_{job_id}"


def submitted_ids(layout: Layout, kind: JobKind, job_id: str) -> set[str]:
    """Slurm job ids that ``evalwatt submit`` recorded for a job."""
    try:
        text = layout.submissions(kind, job_id).read_text(encoding="utf-8")
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def known_ids(workdir: Path, layout: Layout, kind: JobKind, job_id: str) -> set[str]:
    """Slurm job ids of a job's submissions known from files: the executor plugin's log
    names and evalwatt submit's record."""
    logs = snakemake_log_dir(workdir, kind, job_id)
    ids = {p.stem for p in logs.glob("*.log") if p.stem.isdigit()} if logs.is_dir() else set()
    return ids | submitted_ids(layout, kind, job_id)


def slurm_log(workdir: Path, layout: Layout, kind: JobKind, job_id: str, rec: SlurmRecord) -> Path:
    """Slurm's output file of one submission."""
    if rec.comment.startswith(SUBMIT_COMMENT) or rec.job_id in submitted_ids(layout, kind, job_id):
        return layout.submit_dir() / f"{rec.job_id}_0_log.out"
    return snakemake_log_dir(workdir, kind, job_id) / f"{rec.job_id}.log"


def job_state(
    layout: Layout,
    kind: JobKind,
    job_id: str,
    slurm: SlurmView,
    running_here: set[Path],
    workdir: Path,
) -> JobState:
    """Where one job stands (see the module's docstring for the order of the sources)."""
    files = layout.job_files(kind, job_id)
    job_log = layout.job_log(kind, job_id)
    attempts = len(files.attempts())
    spec_time = _mtime(layout.job_spec(kind, job_id))
    rec = slurm.latest(
        slurm_comments(kind, job_id), known_ids(workdir, layout, kind, job_id), spec_time
    )

    def make(**fields: Any) -> JobState:
        return JobState(kind=kind, job_id=job_id, attempts=attempts, **fields)

    active = SLURM_ACTIVE.get(rec.base_state) if rec else None
    result_time = _mtime(files.result)

    if rec and active and (result_time is None or (rec.submit or 0) > result_time):
        what = "queued" if active == State.PENDING else f"on {rec.node}, for {rec.elapsed}"
        log = slurm_log(workdir, layout, kind, job_id, rec) if active == State.PENDING else job_log
        return make(
            state=active,
            reason=f"Slurm job {rec.job_id} {rec.base_state} {what}",
            log=str(log),
            scheduler_job_id=rec.job_id,
            node=rec.node or None,
        )
    if result_time is not None:
        try:
            result = read_contract(JobResult, files.result)
        except ContractError as exc:
            return make(
                state=State.FAILED,
                reason=f"its result does not load: {str(exc).splitlines()[0]}",
                log=str(files.result),
            )
        if result.status == JobStatus.OK:
            return make(
                state=State.DONE,
                log=str(job_log),
                scheduler_job_id=result.accounting_id,
                node=result.host,
            )
        return make(
            state=State.INCOMPLETE,
            reason="; ".join(result.problems) or "status incomplete",
            log=str(files.result),
            scheduler_job_id=result.accounting_id,
            node=result.host,
        )
    error = error_of_log(job_log) if job_log.exists() else None
    if rec is not None:  # ended in Slurm without a result
        state = rec.base_state
        meaning = SLURM_FAILED.get(
            state, "Slurm ended it without evalwatt's result (the job did not finish)"
        )
        reason = f"Slurm {state} ({meaning}), exit {rec.exit_code or '?'}, after {rec.elapsed}"
        if rec.node:
            reason += f" on {rec.node}"
        if error and state not in {"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}:
            reason += f": {error}"
        log = (
            job_log if error or state == "FAILED" else slurm_log(workdir, layout, kind, job_id, rec)
        )
        return make(
            state=State.FAILED,
            reason=reason,
            log=str(log if Path(log).exists() else slurm_log(workdir, layout, kind, job_id, rec)),
            scheduler_job_id=rec.job_id,
            node=rec.node or None,
        )
    started = files.root.is_dir() and any(files.root.iterdir())
    spec = layout.job_spec(kind, job_id).resolve()
    script = layout.job_script(kind, job_id).resolve()
    if started and (spec in running_here or script in running_here):
        return make(state=State.RUNNING, reason="running on this machine", log=str(job_log))
    if started or attempts or job_log.exists():
        if error:
            reason = error
        else:
            where = files.root if started else (files.attempts()[-1] if attempts else None)
            mark = last_mark(where) if where else None
            reason = "stopped without a result" + (f" after {mark}" if mark else "")
            if slurm.available:
                reason += " (no Slurm job found for it)"
        return make(state=State.FAILED, reason=reason, log=str(job_log))
    return make(state=State.NOT_STARTED)


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStatus:
    run: str
    jobs: tuple[JobState, ...]
    slurm_note: str | None
    missing_records: tuple[str, ...] = ()
    """Cells whose jobs are done but whose energy record is not written."""

    @property
    def not_done(self) -> list[JobState]:
        return [j for j in self.jobs if not j.done]

    @property
    def exit_code(self) -> int:
        return EXIT_ALL_DONE if not self.not_done else EXIT_NOT_ALL_DONE

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j.state.value] = out.get(j.state.value, 0) + 1
        return out


def _earliest_spec(layout: Layout, jobs: Iterable[tuple[JobKind, str]]) -> float | None:
    times = [t for k, i in jobs if (t := _mtime(layout.job_spec(k, i))) is not None]
    return min(times) if times else None


def all_jobs(plan: Plan, layout: Layout) -> list[tuple[JobKind, str]]:
    """Every job of the plan (baselines, each cell, its judge job), then each cell's repeats."""
    jobs: list[tuple[JobKind, str]] = [("baseline", b) for b in plan.baselines]
    for cell in plan.cells.values():
        jobs.append(("cell", cell.id))
        if cell.judge:
            jobs.append(("judge", cell.id))
    for cell in plan.cells.values():
        jobs.extend(("cell", r) for r in layout.repeat_ids(cell.id))
    return jobs


def run_status(
    plan: Plan,
    layout: Layout,
    run: str,
    *,
    workdir: Path | None = None,
    slurm: SlurmView | None = None,
    running_here: set[Path] | None = None,
) -> RunStatus:
    """The state of every job of a run. ``slurm`` and ``running_here`` default to asking
    Slurm (when there is one) and this machine's processes."""
    jobs = all_jobs(plan, layout)
    workdir = workdir or Path.cwd()
    if slurm is None:
        since = _earliest_spec(layout, jobs)
        ids = {i for k, j in jobs for i in known_ids(workdir, layout, k, j)}
        slurm = (
            query_slurm(since, ids) if since is not None else SlurmView(note="nothing submitted")
        )
    running = local_job_processes() if running_here is None else running_here
    states: list[JobState] = []
    for kind, job_id in jobs:
        state = job_state(layout, kind, job_id, slurm, running, workdir)
        cell_id = job_id
        rep = repeat_of(job_id) if kind == "cell" else None
        if rep:
            cell_id = rep[0]
        cell = plan.cells.get(cell_id) if kind != "baseline" else None
        if cell is not None:
            state = replace(
                state,
                model=cell.model,
                benchmark=cell.benchmark,
                temperature=cell.temperature,
                max_connections=cell.max_connections,
                repeat_of=rep[0] if rep else None,
            )
        elif kind == "baseline":
            state = replace(state, model=plan.baselines[job_id].model)
        if kind == "judge" and state.state == State.NOT_STARTED:
            cell_state = next(s for s in states if (s.kind, s.job_id) == ("cell", job_id))
            if not cell_state.done:
                state = replace(state, reason=f"waits for its cell ({cell_state.state.value})")
        states.append(state)
    done = {(s.kind, s.job_id) for s in states if s.done}
    missing = tuple(
        c.id
        for c in plan.cells.values()
        if ("cell", c.id) in done
        and (not c.judge or ("judge", c.id) in done)
        and not layout.cell_energy(c.id).exists()
    )
    return RunStatus(run, tuple(states), slurm.note, missing)


# --- output ------------------------------------------------------------------------------------


def _setting(temperature: float | None, max_connections: int | None) -> str:
    return f"t{temperature:g} c{max_connections}"


def _short(state: JobState) -> str:
    if state.state == State.FAILED:
        return "FAILED"
    return state.state.value


def format_matrix(status: RunStatus) -> str:
    """The cells as a matrix: one line per (model, benchmark), one column per setting; a
    judged cell shows its judge job when that is not done; then baselines and repeats."""
    cells = [j for j in status.jobs if j.kind == "cell" and j.repeat_of is None]
    judges = {j.job_id: j for j in status.jobs if j.kind == "judge"}
    settings = sorted({(j.temperature or 0.0, j.max_connections or 0) for j in cells})
    rows: dict[tuple[str, str], dict[tuple[float, int], str]] = {}
    for j in cells:
        text = _short(j)
        judge = judges.get(j.job_id)
        if judge is not None and not judge.done:
            text += f", judge {_short(judge)}"
        key = (j.model or "?", j.benchmark or "?")
        rows.setdefault(key, {})[(j.temperature or 0.0, j.max_connections or 0)] = text
    heads = [_setting(t, c) for t, c in settings]
    model_w = max([len("model"), *(len(m) for m, _ in rows)])
    bench_w = max([len("benchmark"), *(len(b) for _, b in rows)])
    col_w = [
        max([len(h), *(len(r.get(s, "-")) for r in rows.values())])
        for h, s in zip(heads, settings, strict=True)
    ]
    lines = [
        "  ".join(
            [f"{'model':{model_w}}", f"{'benchmark':{bench_w}}"]
            + [f"{h:{w}}" for h, w in zip(heads, col_w, strict=True)]
        ).rstrip()
    ]
    for (model, bench), by_setting in sorted(rows.items()):
        cols = [f"{by_setting.get(s, '-'):{w}}" for s, w in zip(settings, col_w, strict=True)]
        lines.append("  ".join([f"{model:{model_w}}", f"{bench:{bench_w}}", *cols]).rstrip())
    baselines = [j for j in status.jobs if j.kind == "baseline"]
    if baselines:
        lines.append("")
        lines.append("load-only baselines:")
        lines += [f"  {b.job_id}  {_short(b)}" for b in baselines]
    repeats = [j for j in status.jobs if j.repeat_of is not None]
    if repeats:
        lines.append("")
        lines.append("repeats (evalwatt submit --repeats):")
        by_cell: dict[str, list[JobState]] = {}
        for r in repeats:
            by_cell.setdefault(r.repeat_of or "?", []).append(r)
        for cell_id, reps in by_cell.items():
            parts = [f"r{repeat_of(r.job_id)[1]} {_short(r)}" for r in reps]  # type: ignore[index]
            lines.append(f"  {cell_id}: {', '.join(parts)}")
    return "\n".join(lines)


def format_not_done(jobs: Sequence[JobState]) -> str:
    lines = []
    for j in jobs:
        head = f"{j.kind} {j.job_id}: {j.state.value}"
        if j.attempts:
            head += f" ({j.attempts} earlier attempt{'s' if j.attempts > 1 else ''} set aside)"
        lines.append(head)
        if j.reason:
            lines.append(f"    why: {j.reason}")
        if j.log:
            lines.append(f"    log: {j.log}")
    return "\n".join(lines)


def format_status(status: RunStatus) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts().items()))
    parts = [f"run {status.run}: {len(status.jobs)} jobs: {counts}", "", format_matrix(status)]
    if status.slurm_note:
        parts += ["", f"note: Slurm not asked or not fully: {status.slurm_note}"]
    if status.not_done:
        parts += ["", "not done:", format_not_done(status.not_done)]
    if status.missing_records:
        parts += [
            "",
            "jobs done but no energy record (see logs/cell_energy/<cell>.log): "
            + ", ".join(status.missing_records),
        ]
    return "\n".join(parts) + "\n"


def report_not_done(config: Any, plan: Plan, layout: Layout, out: Any = None) -> None:
    """The Snakefile's ``onerror:`` handler: which jobs are not done and why, so that a run
    that ends with failed jobs names them instead of only not writing the final table.

    Never raises: a broken report must not hide Snakemake's own error message."""
    out = out or sys.stderr
    try:
        status = run_status(plan, layout, config.run)
        lines = [
            "",
            f"evalwatt: run {config.run} is not finished: the final table is written only "
            "when every cell has its energy record, so it is not written now.",
        ]
        if status.not_done:
            lines += [
                f"{len(status.not_done)} of {len(status.jobs)} jobs are not done:",
                format_not_done(status.not_done),
            ]
        if status.missing_records:
            lines.append(
                "jobs done but no energy record: "
                + ", ".join(status.missing_records)
                + " (logs/cell_energy/<cell>.log)"
            )
        if not status.not_done and not status.missing_records:
            lines.append("every job is done: the error is in a later step (see above).")
        lines.append(
            "Fix what the logs say, then run the same snakemake command again: only the "
            "missing jobs run. `evalwatt status --configfile <config>` shows the whole matrix."
        )
        print("\n".join(lines), file=out, flush=True)
    except Exception as exc:  # a report, never a second failure
        print(f"evalwatt: could not list the jobs that are not done: {exc!r}", file=out)


# --- the command -------------------------------------------------------------------------------


def _command(args: Any) -> int:
    config = load_config(args.configfile, check_environment=False)
    plan = plan_run(config)
    layout = Layout.of(config.results_dir, config.run)
    status = run_status(plan, layout, config.run)
    if args.json:
        print(json.dumps([j.to_json() for j in status.jobs], indent=2))
    else:
        sys.stdout.write(format_status(status))
    return status.exit_code


def register(subparsers: Any) -> None:
    """``evalwatt status``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "status",
        help="each job of the run: done, failed (why, log), running, pending, not started",
        description=(
            "Where each cell, baseline, judge job and repeat of a run stands, from its results "
            "folder and (when there is one) Slurm. Exit 0 when every job is done, 1 when some "
            "are not, 2 for bad input."
        ),
    )
    p.add_argument("--configfile", type=Path, default=DEFAULT_CONFIG)
    p.add_argument("--json", action="store_true", help="one object per job, as a JSON list")
    p.set_defaults(func=_command)
