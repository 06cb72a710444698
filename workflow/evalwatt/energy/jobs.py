"""Energy sources of finished jobs, found from what each job wrote (its result, its traces).

A job's result (result.json, read through its contract) says which traces the sampler wrote
and why the other probes could not sample; its marks cut the traces into phases.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from evalwatt.contracts.base import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.vocabulary import Family, Mark
from evalwatt.energy.sources import TraceSource, Unavailable, column_prefix
from evalwatt.energy.terms import Term, cell_terms
from evalwatt.energy.trace import TraceError, read_trace
from evalwatt.layout import JobFiles

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


def _judging_term(source: TraceSource | None, reason: str) -> dict[str, Any]:
    """The judge job's energy over its judging window.

    energy.terms.cell_terms reads a judge over inference_* marks; a judge job stamps
    judging_* marks (its work is judging, not inference), so the term is taken here.
    """
    formula = f"E({Mark.JUDGING_END}) - E({Mark.JUDGING_START}) [judge]"
    if source is None:
        return asdict(Term.missing(formula, reason))
    try:
        window = source.mark_window(Mark.JUDGING_START, Mark.JUDGING_END)
    except Unavailable as exc:
        return asdict(Term.missing(formula, str(exc)))
    return asdict(Term.of_window(window, formula))


def cell_energy(
    cell_dir: Path,
    baseline_dir: Path,
    judge_dir: Path | None,
    samples_completed: int | None,
    output_tokens: int | None,
) -> dict[Family, dict[str, Any]]:
    """Energy terms of one cell in every family, with the reasons for the missing ones."""
    cell, cell_why = job_sources(cell_dir)
    base, base_why = job_sources(baseline_dir)
    judge, judge_why = job_sources(judge_dir) if judge_dir else ({}, {})
    out: dict[Family, dict[str, Any]] = {}
    for family in Family:
        if family not in cell:
            out[family] = {"unavailable": cell_why.get(family, "not sampled in this job")}
            continue
        out[family] = cell_terms(
            cell[family], base.get(family), None, samples_completed, output_tokens
        )
        if family not in base:
            out[family]["baseline_unavailable"] = base_why.get(family, "not sampled")
        if judge_dir:
            why = judge_why.get(family, "not sampled")
            out[family]["terms"]["judge"] = _judging_term(judge.get(family), why)
            if family not in judge:
                out[family]["judge_unavailable"] = why
    return out
