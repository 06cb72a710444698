"""The one Slurm client: ``sacct``, ``squeue`` and ``scontrol`` run with a time limit, and
their parsable (``|``-separated) output read into records.

Who asks Slurm: ``evalwatt status`` and ``evalwatt submit`` (which submissions of a run's
jobs Slurm knows, by comment or by id: ``query_jobs``) and the sacct accounting source (a
job's node energy, the site's energy plugin: ``evalwatt.energy.cluster.sacct``, which keeps
every ``Reply`` as an exchange of its record). It lives in ``base`` so that every stage can
use it, and it knows nothing of evalwatt's jobs.

A command that is missing, does not answer in time or exits non-zero is a ``Reply`` that
says so, never an exception: no Slurm at all is the normal case on a laptop and in the CPU
demo, and each caller decides what that means for it (a note, a transient error, a null).
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

QUERY_TIMEOUT_S = 60.0
"""How long ``query_jobs`` waits for each command."""
CLOCK_SLACK_S = 120
"""Submissions up to this long before ``since`` still count (clock skew, NFS mtimes)."""
LOOKBACK_S = 86400
"""Without ``since``, ``query_jobs`` asks sacct for the last day."""


@dataclass(frozen=True)
class Reply:
    """What one command did: its output and exit code, or why it gave none."""

    argv: tuple[str, ...]
    at_unix: float
    """When it was started, unix seconds."""
    elapsed_s: float
    returncode: int | None = None
    """None: it did not start (``not_started`` says why) or gave no answer in time."""
    stdout: str = ""
    stderr: str = ""
    not_started: str | None = None
    """The operating system's error when the command could not be started (not on PATH)."""
    timed_out: bool = False

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def body(self) -> str | None:
        """Its standard output, or None when it did not run to the end."""
        return None if self.returncode is None else self.stdout

    @property
    def error(self) -> str | None:
        """Why it failed or what it said on stderr; None for a silent run."""
        if self.not_started is not None:
            return self.not_started
        return "timed out" if self.timed_out else (self.stderr or None)

    def why(self, timeout_s: float) -> str:
        """Why a reply is not ``ok``, to follow the command's name: not found, no answer, or
        its exit code and the start of what it said."""
        if self.not_started is not None:
            return f"not found ({self.not_started})"
        if self.timed_out:
            return f"gave no answer within {timeout_s:g} s"
        said = (self.stderr or self.stdout).strip()[:200]
        return f"failed (exit {self.returncode}): {said}"


def run(argv: Sequence[str], timeout_s: float) -> Reply:
    """Run one Slurm command, waiting at most ``timeout_s``; never raises for the command's
    own failure (see ``Reply``)."""
    args = tuple(argv)
    at, t0 = time.time(), time.monotonic()

    def elapsed() -> float:
        return round(time.monotonic() - t0, 6)

    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except OSError as exc:
        return Reply(args, at, elapsed(), not_started=exc.strerror or str(exc))
    except subprocess.TimeoutExpired:
        return Reply(args, at, elapsed(), timed_out=True)
    return Reply(args, at, elapsed(), done.returncode, done.stdout, done.stderr)


def beside(command: str, name: str) -> str:
    """Another Slurm command from the same folder as ``command`` (a configured
    ``/opt/slurm/bin/sacct`` gives ``/opt/slurm/bin/scontrol``), or from PATH."""
    return str(Path(command).with_name(name)) if "/" in command else name


def parse_parsable(text: str, fields: Sequence[str]) -> list[dict[str, str]]:
    """``-P``/``-o %a|%b`` output as one dict per line; a line with another number of fields
    than ``fields`` (a truncated line, a ``|`` inside a value) is left out."""
    rows = []
    for line in text.splitlines():
        parts = line.split("|")
        if line.strip() and len(parts) == len(fields):
            rows.append(dict(zip(fields, parts, strict=True)))
    return rows


def unix_time(text: str) -> float | None:
    """Slurm's local ISO time (``2026-11-22T03:18:39``) as unix seconds; None for
    ``Unknown``, ``None`` or an empty field."""
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


# --- a user's jobs -----------------------------------------------------------------------------


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
            and (since is None or r.submit is None or r.submit >= since - CLOCK_SLACK_S)
        ]
        return max(found, key=lambda r: r.order) if found else None


SACCT_FIELDS = ("job_id", "state", "exit_code", "comment", "elapsed", "node", "submit")
SACCT_FORMAT = "JobIDRaw,State,ExitCode,Comment,Elapsed,NodeList,Submit"
SQUEUE_FIELDS = ("job_id", "state", "comment", "elapsed", "node", "submit")
SQUEUE_FORMAT = "%i|%T|%k|%M|%N|%V"


def _record(row: Mapping[str, str]) -> SlurmRecord:
    comment = "" if row["comment"] == "(null)" else row["comment"]  # squeue's empty comment
    return SlurmRecord(
        row["job_id"],
        row["state"],
        comment,
        row.get("exit_code", ""),
        row["elapsed"],
        row["node"],
        unix_time(row["submit"]),
    )


def query_jobs(since: float | None, job_ids: Iterable[str] = ()) -> SlurmView:
    """This user's Slurm jobs that carry a comment, since ``since`` (unix seconds), and the
    jobs ``job_ids``, from sacct and squeue.

    The controller (squeue) knows every queued or running job and its comment even where the
    accounting does not store comments, and its live state wins; sacct adds finished jobs, by
    comment since ``since`` and by id. A command missing or failing is a note, not an error."""
    start = dt.datetime.fromtimestamp(since or time.time() - LOOKBACK_S)
    sacct = ["sacct", "-X", "-P", "-n", f"--format={SACCT_FORMAT}"]
    ids = sorted(set(job_ids))
    queries: list[tuple[list[str], Sequence[str]]] = [
        ([*sacct, f"--starttime={start.strftime('%Y-%m-%dT%H:%M:%S')}"], SACCT_FIELDS)
    ]
    if ids:
        queries.append(([*sacct, f"-j{','.join(ids)}"], SACCT_FIELDS))
    squeue = ["squeue", "-h", "-u", getpass.getuser(), "-o", SQUEUE_FORMAT]
    queries.append((squeue, SQUEUE_FIELDS))  # last: its live state wins
    records: dict[str, SlurmRecord] = {}
    notes = []
    available = False
    for argv, fields in queries:
        reply = run(argv, QUERY_TIMEOUT_S)
        if not reply.ok:
            notes.append(f"{argv[0]} {reply.why(QUERY_TIMEOUT_S)}")
            continue
        available = True
        for rec in map(_record, parse_parsable(reply.stdout, fields)):
            if rec.comment or rec.job_id in ids:
                records[rec.job_id] = rec
    return SlurmView(records, "; ".join(notes) or None, available)
