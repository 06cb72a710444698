"""Energy sources of finished jobs, found from what each job wrote (its result, its traces,
and the cluster's accounting of it collected after it ended).

A job's result (result.json, read through its contract) says which traces the sampler wrote
and why the other probes could not sample; its marks cut the traces into phases. The cluster
sources (``accounting.sources``) are read from the raw files of ``evalwatt.energy.cluster.collect``
only: no network. The GPU columns take the first source of ``accounting.headline_order``
that has a figure for the cell's job (nvml, the in-job counter, by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import Family
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.energy.cluster.ceems import CeemsSource, CeemsUnit
from evalwatt.energy.cluster.common import AccountingError, JobFacts, Settings, read_accounting
from evalwatt.energy.cluster.prometheus import KINDS, PrometheusSource, read_series
from evalwatt.energy.cluster.sacct import SacctJob, SacctSource
from evalwatt.energy.sources import (
    FIGURE_WINDOWS,
    EnergySource,
    TimelineSource,
    TraceSource,
    Unavailable,
    column_prefix,
)
from evalwatt.energy.terms import Term, cell_terms, judge_terms
from evalwatt.energy.trace import TraceError, read_trace

# Which family each of the sampler's probes fills.
FAMILY_OF_SOURCE = {"nvml": Family.GPU, "rapl": Family.CPU, "cpu-model": Family.CPU_EST}


def job_sources(run_dir: Path) -> tuple[dict[Family, TraceSource], dict[Family, str]]:
    """The trace sources of one job by family, and why the other families have none."""
    files = JobFiles(run_dir)
    result = read_contract(JobResult, files.result)
    marks = {str(mark): t for mark, t in result.marks.items()}
    sampler = result.sampler
    reasons = {FAMILY_OF_SOURCE[name]: why for name, why in sampler.unavailable.items()}
    sources: dict[Family, TraceSource] = {}
    for name, info in sampler.traces.items():
        try:
            trace = read_trace(files.root / info.file)
        except (OSError, TraceError) as exc:
            reasons[FAMILY_OF_SOURCE[name]] = f"trace unreadable: {exc}"
            continue
        source = TraceSource(trace, marks)
        sources[Family(column_prefix(source))] = source
    return sources, reasons


def generation_reason(run_dir: Path) -> str:
    """Why an evalwatt job has no generation marks, as its result records it (read only
    where the marks are absent: ``energy.terms.headline_window``). Never None, so that an
    evalwatt job's evaluation window never stands in for its generation."""
    result = read_contract(JobResult, JobFiles(run_dir).result)
    window = result.generation_window
    if window is not None and window.null_reason is not None:
        return window.null_reason
    if window is None:
        return f"the {result.kind} job read no Inspect log for its model calls"
    return "the job's timeline has no generation marks"


def _judge_terms(
    source: EnergySource | None, reason: str, judge_dir: Path
) -> dict[str, dict[str, Any]]:
    """The judge job's terms (``energy.terms.judge_terms``) as plain dicts."""
    terms = judge_terms(source, reason, generation_reason(judge_dir))
    return {name: asdict(term) for name, term in terms.items()}


# --- the cluster's accounting -----------------------------------------------------------------


def _term(source: EnergySource, marks: Mapping[str, float], name: str) -> Term:
    start, end = FIGURE_WINDOWS[name]
    formula = f"E({end}) - E({start}) [{source.name}]"
    try:
        if name == "job":
            return Term.of_window(source.job(), formula)
        if not isinstance(source, TimelineSource):
            raise Unavailable(f"{source.name} gives job totals only, not {start}..{end}")
        absent = [m for m in (start, end) if m not in marks]
        if absent:
            raise Unavailable(f"timeline has no mark {', '.join(absent)}")
        return Term.of_window(source.window(marks[start], marks[end]), formula)
    except (Unavailable, TraceError, AccountingError) as exc:
        return Term.missing(formula, str(exc))


def _figures(
    name: str,
    source: EnergySource | None,
    why: str | None,
    marks: Mapping[str, float],
    **extra: Any,
) -> dict[str, Any]:
    terms = (
        {w: asdict(_term(source, marks, w)) for w in FIGURE_WINDOWS}
        if source is not None
        else {
            w: asdict(Term.missing(f"E({b}) - E({a}) [{name}]", why or "no figures"))
            for w, (a, b) in FIGURE_WINDOWS.items()
        }
    )
    out: dict[str, Any] = {
        "source": name,
        "scope": "gpu",
        "status": "ok",
        "detail": None,
        "span": None,
        "pue": None,
        "includes_pue": False,
        "reported_j": None,
        "reported_null_reason": why,
        "terms": terms,
        "host_j": None,
        "host_null_reason": None,
        "exclusive": None,
        "exclusive_detail": None,
        "notes": (),
    }
    out.update(extra)
    return out


def _read_one(
    name: str, job_dir: Path, settings: Settings, facts: JobFacts
) -> tuple[EnergySource | None, dict[str, Any]]:
    """One cluster source of one job, from its raw file: the source (None when it has no
    figure) and its figures (``contracts.record.SourceFigures``)."""
    path = JobFiles(job_dir).accounting(name)
    marks = facts.marks
    if not path.exists():
        why = f"not collected: no {path}"
        return None, _figures(name, None, why, marks, raw_file=path, status="error", detail=why)
    try:
        record = read_accounting(path)
    except (AccountingError, OSError) as exc:
        why = f"{path}: {exc}"
        return None, _figures(name, None, why, marks, raw_file=path, status="error", detail=why)
    base = {"raw_file": path, "status": record.status, "detail": record.detail}
    if record.status != "ok":
        return None, _figures(name, None, f"{name}: {record.detail}", marks, **base)
    try:
        if name == "ceems-api":
            unit = CeemsUnit.of(record, settings.pue, settings.cluster_id)
            ceems = CeemsSource(unit)
            span = (unit.start, unit.end) if unit.start and unit.end else None
            notes = (f"unit times read as {unit.time_read_as}",)
            return ceems, _figures(
                name, ceems, None, marks, **base, span=span, pue=settings.pue,
                includes_pue=True, reported_j=unit.gpu_reported_j,
                reported_null_reason=unit.gpu_null_reason, host_j=unit.cpu_reported_j,
                host_null_reason=unit.cpu_null_reason, notes=notes,
            )  # fmt: skip
        if name == "prometheus":
            series = read_series(record)
            kind = str(record.settings["prometheus"]["series"])
            prom = PrometheusSource(
                series.get(kind, []), kind, settings.pue, facts.gpus_allocated, marks
            )
            reported: float | None = None
            reported_why: str | None = None
            try:
                reported = prom.reported(*facts.span).energy_j
            except Unavailable as exc:
                reported_why = str(exc)
            host: float | None = None
            host_why: str | None = "not a CEEMS series"
            if kind == "ceems":
                missing = record.context.get("missing", {}).get("ceems-host")
                host_src = PrometheusSource(series.get("ceems-host", []), "ceems-host", None,
                                            None, marks)  # fmt: skip
                try:
                    host, host_why = host_src.reported(*facts.span).energy_j, None
                except Unavailable as exc:
                    host_why = missing or str(exc)
            return prom, _figures(
                name, prom, None, marks, **base, span=facts.span,
                pue=settings.pue if KINDS[kind][3] else None, includes_pue=KINDS[kind][3],
                reported_j=reported, reported_null_reason=reported_why, host_j=host,
                host_null_reason=host_why, notes=(f"series {kind}: {KINDS[kind][0]}",),
            )  # fmt: skip
        row = SacctJob.of(record)
        sacct = SacctSource(row)
        span = (row.start, row.end) if row.start and row.end else None
        return sacct, _figures(
            name, sacct, None, marks, **base, scope="node", span=span,
            reported_j=row.energy_j, reported_null_reason=row.null_reason,
            exclusive=row.exclusive, exclusive_detail=row.exclusive_detail, notes=row.notes,
        )  # fmt: skip
    except (Unavailable, AccountingError, KeyError, ValueError, StopIteration) as exc:
        why = f"{path}: cannot be read: {type(exc).__name__}: {exc}"
        return None, _figures(name, None, why, marks, **{**base, "status": "error", "detail": why})


def cluster_sources(
    job_dir: Path, settings: Settings
) -> tuple[dict[str, EnergySource], dict[str, dict[str, Any]]]:
    """The cluster sources of one job with a figure, and every source's figures."""
    facts = JobFacts.of(job_dir)
    sources: dict[str, EnergySource] = {}
    figures: dict[str, dict[str, Any]] = {}
    for name in settings.sources:
        source, figures[name] = _read_one(name, job_dir, settings, facts)
        if source is not None:
            sources[name] = source
    return sources, figures


def _headline(
    order: tuple[str, ...],
    nvml: TraceSource | None,
    nvml_why: str,
    cluster: Mapping[str, EnergySource],
) -> tuple[EnergySource | None, str]:
    """The first source of ``order`` with a job figure for the cell, or why none has."""
    reasons = []
    for name in order:
        if name == "nvml":
            if nvml is not None:
                return nvml, ""
            reasons.append(f"nvml: {nvml_why}")
            continue
        source = cluster.get(name)
        if source is None:
            reasons.append(f"{name}: no figures")
            continue
        try:
            source.job()
        except (Unavailable, TraceError) as exc:
            reasons.append(str(exc))
            continue
        return source, ""
    return None, "; ".join(reasons)


def cell_energy(
    cell_dir: Path,
    baseline_dir: Path,
    judge_dir: Path | None,
    samples_completed: int | None,
    output_tokens: int | None,
    settings: Settings | None = None,
) -> dict[Family, dict[str, Any]]:
    """Energy terms of one cell in every family, with the reasons for the missing ones.

    With ``settings`` whose ``sources`` are set, the GPU family comes from the first source
    of ``settings.headline_order`` that has a figure for the cell's job."""
    cell, cell_why = job_sources(cell_dir)
    base, base_why = job_sources(baseline_dir)
    judge, judge_why = job_sources(judge_dir) if judge_dir else ({}, {})
    out: dict[Family, dict[str, Any]] = {}
    for family in Family:
        if family == Family.GPU and settings is not None and settings.sources:
            out[family] = _gpu_family(
                settings, (cell_dir, baseline_dir, judge_dir), (cell, base, judge),
                (cell_why, base_why, judge_why), samples_completed, output_tokens,
            )  # fmt: skip
            continue
        if family not in cell:
            out[family] = {"unavailable": cell_why.get(family, "not sampled in this job")}
            continue
        out[family] = cell_terms(
            cell[family], base.get(family), None, samples_completed, output_tokens,
            generation_null_reason=generation_reason(cell_dir),
        )  # fmt: skip
        if family not in base:
            out[family]["baseline_unavailable"] = base_why.get(family, "not sampled")
        if judge_dir:
            why = judge_why.get(family, "not sampled")
            out[family]["terms"].update(_judge_terms(judge.get(family), why, judge_dir))
            if family not in judge:
                out[family]["judge_unavailable"] = why
    return out


def _gpu_family(
    settings: Settings,
    dirs: tuple[Path, Path, Path | None],
    traces: tuple[dict[Family, TraceSource], ...],
    whys: tuple[dict[Family, str], ...],
    samples_completed: int | None,
    output_tokens: int | None,
) -> dict[str, Any]:
    """The GPU family from the headline source: the in-job trace or a cluster source.

    Note: ``evalwatt.energy.terms`` cuts windows for ``TraceSource`` only (its
    ``_window_term`` and ``_marks_of`` test ``isinstance(source, TraceSource)``); until they
    test ``TimelineSource``, a prometheus headline gives the job total and the
    job-total methods, and its phase-resolved terms are null with "gives job totals only"."""
    judge_dir = dirs[2]
    gpu = Family.GPU
    cluster = [cluster_sources(d, settings)[0] if d else {} for d in dirs]
    chosen, why = _headline(
        settings.headline_order,
        traces[0].get(gpu),
        whys[0].get(gpu, "not sampled in this job"),
        cluster[0],
    )
    if chosen is None:
        return {"unavailable": f"no source of accounting.headline_order has a figure: {why}"}

    def same(i: int) -> EnergySource | None:
        if chosen.name == "nvml":
            return traces[i].get(gpu)
        return cluster[i].get(chosen.name)

    def why_not(i: int) -> str:
        if chosen.name == "nvml":
            return whys[i].get(gpu, "not sampled")
        return f"no {chosen.name} figures"

    marks = [JobFacts.of(d).marks if d else None for d in dirs]
    base, judge = same(1), same(2)
    out = cell_terms(
        chosen, base, None, samples_completed, output_tokens,
        cell_marks=marks[0], baseline_marks=marks[1],
        generation_null_reason=generation_reason(dirs[0]),
    )  # fmt: skip
    if base is None:
        out["baseline_unavailable"] = why_not(1)
    if judge_dir:
        out["terms"].update(_judge_terms(judge, why_not(2), judge_dir))
        if judge is None:
            out["judge_unavailable"] = why_not(2)
    return out
