"""Where a job leaves traces besides its result: the names Slurm knows it by, the Slurm job
ids kept in files, Slurm's log files, the processes running it here, and its own job log.

A job is recognised in Slurm by its comment: the Slurm executor plugin submits ``run_job`` as
``rule_run_job_wildcards_<kind>_<id>`` (a judge pass: ``run_judge_pass``, ``RUN_RULES``);
``evalwatt submit`` as ``evalwatt_submit_<kind>_<id>``.
Many sites do not store comments in the accounting (``AccountingStoreFlags=job_comment`` is not
the default), so a finished job is also found by its Slurm job ids: the plugin's log files
(``.snakemake/slurm_logs/rule_run_job/<kind>_<id>/<slurm id>.log``) and the ids ``evalwatt
submit`` records (``Layout.submissions``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from evalwatt.base.layout import JOB_SCRIPT, JOB_SPEC, TIMELINE, Layout
from evalwatt.base.slurm import SlurmRecord
from evalwatt.base.vocabulary import JobKind
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.timeline import TimelineFile

RUN_RULES: dict[str, tuple[JobKind, ...]] = {
    "run_job": ("cell", "baseline", "model"),
    "run_judge_pass": ("judge-pass",),
}
"""The Snakemake rules that run jobs, and the kinds each runs: one rule per folder pattern
(``cells``, ``baselines``, ``models`` are the kind and ``s``; ``judge-passes`` is not)."""
SNAKEMAKE_SLURM_LOGS = Path(".snakemake") / "slurm_logs"
"""Where the Slurm executor plugin writes its logs, relative to the workflow's directory:
``rule_<rule>/<wildcards joined by _>/<slurm job id>.log`` (its default ``--slurm-logdir``)."""
SUBMIT_COMMENT = "evalwatt_submit"


def run_rule(kind: JobKind) -> str:
    """The Snakemake rule that runs jobs of ``kind``."""
    return next((rule for rule, kinds in RUN_RULES.items() if kind in kinds), "run_job")


def slurm_comments(kind: JobKind, job_id: str) -> tuple[str, str]:
    """The comments a job is submitted with: by the Slurm executor plugin, by evalwatt submit."""
    return (
        f"rule_{run_rule(kind)}_wildcards_{kind}_{job_id}",
        f"{SUBMIT_COMMENT}_{kind}_{job_id}",
    )


def snakemake_log_dir(workdir: Path, kind: JobKind, job_id: str) -> Path:
    return workdir / SNAKEMAKE_SLURM_LOGS / f"rule_{run_rule(kind)}" / f"{kind}_{job_id}"


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
            if arg.endswith((JOB_SPEC, JOB_SCRIPT)):
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
        marks = read_contract(TimelineFile, run_dir / TIMELINE).marks
    except ContractError:
        return None
    return max(marks, key=lambda m: marks[m]).value if marks else None


def mtime(path: Path) -> float | None:
    """When a file was last written, unix seconds; None when it is not there."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None
