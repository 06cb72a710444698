"""The cluster sources' figures of one finished job, read from their raw files only
(``accounting/<source>.json``, written by ``evalwatt.energy.cluster.collect``): no network.

Each source's module reads its own raw file (``read``: the source its terms are cut from, and
what it reports besides); here every source gets the same windows (``FIGURE_WINDOWS``), and a
source without a figure (not collected, a collection without an answer, a file that cannot be
read) gets nulls with the reason, never zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path

from evalwatt.base.layout import JobFiles
from evalwatt.contracts.accounting import AccountingFile, Outcome
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import SourceFigures, TermRecord
from evalwatt.energy.cluster import ceems, prometheus, sacct
from evalwatt.energy.cluster.collection import AccountingError
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts, Reading
from evalwatt.energy.sources import FIGURE_WINDOWS, EnergySource, TimelineSource, Unavailable
from evalwatt.energy.terms import of_window
from evalwatt.energy.trace import TraceError

Reader = Callable[[AccountingFile, Settings, JobFacts], Reading]
READERS: dict[str, Reader] = {
    "ceems-api": ceems.read,
    "prometheus": prometheus.read,
    "sacct": sacct.read,
}


def _term(source: EnergySource, marks: Mapping[str, float], name: str) -> TermRecord:
    """One of ``FIGURE_WINDOWS`` from a source, or null with the reason."""
    start, end = FIGURE_WINDOWS[name]
    formula = f"E({end}) - E({start}) [{source.name}]"
    try:
        if name == "job":
            return of_window(source.job(), formula)
        if not isinstance(source, TimelineSource):
            raise Unavailable(f"{source.name} gives job totals only, not {start}..{end}")
        absent = [m for m in (start, end) if m not in marks]
        if absent:
            raise Unavailable(f"timeline has no mark {', '.join(absent)}")
        return of_window(source.window(marks[start], marks[end]), formula)
    except (Unavailable, TraceError, AccountingError) as exc:
        return TermRecord.missing(formula, str(exc))


def _figures(
    name: str, raw_file: Path, record: AccountingFile, reading: Reading, marks: Mapping[str, float]
) -> SourceFigures:
    """A source's figures from its raw file (``JobFiles.accounting``): its terms over every
    window, and what it reports besides."""
    reported = {f.name: getattr(reading, f.name) for f in fields(reading) if f.name != "source"}
    return SourceFigures(
        source=name,
        status=record.status,
        detail=record.detail,
        raw_file=raw_file,
        terms={w: _term(reading.source, marks, w) for w in FIGURE_WINDOWS},
        **reported,
    )


def _no_figures(
    name: str, raw_file: Path, status: Outcome, detail: str | None, why: str
) -> SourceFigures:
    """A source without a figure for the job: every term null with ``why``."""
    terms = {
        w: TermRecord.missing(f"E({b}) - E({a}) [{name}]", why)
        for w, (a, b) in FIGURE_WINDOWS.items()
    }
    return SourceFigures(
        source=name,
        scope="gpu",
        status=status,
        detail=detail,
        raw_file=raw_file,
        span=None,
        pue=None,
        includes_pue=False,
        reported_j=None,
        reported_null_reason=why,
        terms=terms,
        host_j=None,
        host_null_reason=None,
        exclusive=None,
        exclusive_detail=None,
        notes=(),
    )


def read_source(
    name: str, job_dir: Path, settings: Settings, facts: JobFacts
) -> tuple[EnergySource | None, SourceFigures]:
    """One cluster source of one job, from its raw file: the source (None when it has no
    figure) and its figures."""
    path = JobFiles(job_dir).accounting(name)
    if not path.exists():
        why = f"not collected: no {path}"
        return None, _no_figures(name, path, "error", why, why)
    try:
        record = read_contract(AccountingFile, path)
    except (AccountingError, OSError) as exc:
        why = f"{path}: {exc}"
        return None, _no_figures(name, path, "error", why, why)
    if record.status != "ok":
        return None, _no_figures(
            name, path, record.status, record.detail, f"{name}: {record.detail}"
        )
    try:
        reading = READERS[name](record, settings, facts)
        return reading.source, _figures(name, path, record, reading, facts.marks)
    except (Unavailable, AccountingError, KeyError, ValueError, StopIteration) as exc:
        why = f"{path}: cannot be read: {type(exc).__name__}: {exc}"
        return None, _no_figures(name, path, "error", why, why)


def cluster_sources(
    job_dir: Path, settings: Settings
) -> tuple[dict[str, EnergySource], dict[str, SourceFigures]]:
    """The cluster sources of one job with a figure, and every source's figures."""
    facts = JobFacts.of(job_dir)
    sources: dict[str, EnergySource] = {}
    figures: dict[str, SourceFigures] = {}
    for name in settings.sources:
        source, figures[name] = read_source(name, job_dir, settings, facts)
        if source is not None:
            sources[name] = source
    return sources, figures
