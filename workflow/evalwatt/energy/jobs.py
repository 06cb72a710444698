"""Energy sources of finished jobs, found from what the job wrote (result.json, traces)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalwatt.energy.sources import TraceSource, column_prefix
from evalwatt.energy.terms import cell_terms
from evalwatt.energy.trace import TraceError, read_timeline, read_trace
from evalwatt.layout import RESULT, TIMELINE, TRACE_FILES

# The column families of the final table: measured GPU, measured CPU, modelled CPU.
DOMAINS = ("gpu", "cpu", "cpu_est")
_DOMAIN_OF_SOURCE = {"nvml": "gpu", "rapl": "cpu", "cpu-model": "cpu_est"}


def job_sources(run_dir: Path) -> tuple[dict[str, TraceSource], dict[str, str]]:
    """The trace sources of one job by domain, and why the other domains have none."""
    result = json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    marks = read_timeline(run_dir / TIMELINE)
    sampler = result["sampler"]
    sources: dict[str, TraceSource] = {}
    reasons = {_DOMAIN_OF_SOURCE[name]: reason for name, reason in sampler["unavailable"].items()}
    for name, info in sampler["traces"].items():
        try:
            trace = read_trace(run_dir / info.get("file", TRACE_FILES[name]))
        except (OSError, TraceError) as exc:
            reasons[_DOMAIN_OF_SOURCE[name]] = f"trace unreadable: {exc}"
            continue
        source = TraceSource(trace, marks)
        sources[column_prefix(source)] = source
    return sources, reasons


def cell_energy(
    cell_dir: Path,
    baseline_dir: Path,
    judge_dir: Path | None,
    samples_completed: int | None,
    output_tokens: int | None,
) -> dict[str, Any]:
    """Energy terms of one cell in every domain, with the reasons for the missing ones."""
    cell, cell_why = job_sources(cell_dir)
    base, base_why = job_sources(baseline_dir)
    judge, judge_why = job_sources(judge_dir) if judge_dir else ({}, {})
    out: dict[str, Any] = {}
    for domain in DOMAINS:
        if domain not in cell:
            out[domain] = {"unavailable": cell_why.get(domain, "not sampled in this job")}
            continue
        out[domain] = cell_terms(
            cell[domain], base.get(domain), judge.get(domain), samples_completed, output_tokens
        )
        if domain not in base:
            out[domain]["baseline_unavailable"] = base_why.get(domain, "not sampled")
        if judge_dir and domain not in judge:
            out[domain]["judge_unavailable"] = judge_why.get(domain, "not sampled")
    return out
