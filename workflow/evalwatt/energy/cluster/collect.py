"""Collection on the login node, once a job has ended: each cluster source's account of it.

For every source of ``accounting.sources`` the job's raw record is written to
``<job>/accounting/<source>.json`` (``evalwatt.base.layout.JobFiles.accounting``): every query and
command, every raw reply, with timestamps, and the outcome (``ok``; ``unavailable``: a
definitive null, e.g. a job outside Slurm; ``error``: no answer by the deadline, or a
refusal). A failed collection is written too, so that the energy step and the audit carry
the reason as a null; collect again with ``snakemake --forcerun collect_accounting`` (or
delete the file).

The CEEMS API is waited for with backoff up to ``accounting.deadline_s``: a finished job
appears at the server's next update, and a job shorter than the server's cutoff never does
(the error then points at ``cluster.accounting_window_s``).
"""

from __future__ import annotations

import time
from pathlib import Path

from evalwatt.base.layout import JobFiles
from evalwatt.contracts.accounting import AccountingFile, SourceName
from evalwatt.contracts.contract import write_contract
from evalwatt.energy.cluster import ceems, prometheus, sacct
from evalwatt.energy.cluster.collection import (
    AccountingError,
    Clock,
    Collection,
    Collector,
    Sleep,
)
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts
from evalwatt.energy.sources import Unavailable

COLLECTORS: dict[SourceName, Collector] = {
    "ceems-api": ceems.collect,
    "prometheus": prometheus.collect,
    "sacct": sacct.collect,
}


def collect_source(
    name: SourceName,
    settings: Settings,
    job: JobFacts,
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.time,
) -> AccountingFile:
    """One source's record of one finished job: its collector's exchanges, and how it ended
    (an answer, a definitive null, or an error), each with its reason."""
    run = Collection(name, settings, job, clock, sleep)
    try:
        COLLECTORS[name](run)
    except Unavailable as exc:
        return run.record("unavailable", str(exc))
    except AccountingError as exc:  # no answer by the deadline, or a refusal (credentials)
        return run.record("error", str(exc))
    return run.record("ok")


def collect_job(
    settings: Settings,
    job_dir: Path,
    *,
    sleep: Sleep = time.sleep,
    clock: Clock = time.time,
) -> list[AccountingFile]:
    """Collect and write every configured source's record of one finished job."""
    job = JobFacts.of(job_dir)
    files = JobFiles(job_dir)
    records = []
    for name in settings.sources:
        record = collect_source(name, settings, job, sleep=sleep, clock=clock)  # type: ignore[arg-type]
        write_contract(files.accounting(name), record)
        records.append(record)
    return records


def summary(records: list[AccountingFile]) -> list[str]:
    """One line per source, for the rule's log; an error line starts with ERROR."""
    lines = []
    for r in records:
        took = r.finished_unix - r.started_unix
        head = "ERROR " if r.status == "error" else ""
        lines.append(
            f"{head}{r.source}: {r.status} after {len(r.exchanges)} exchange(s) in {took:.1f} s"
            + (f": {r.detail}" if r.detail else "")
        )
    return lines
