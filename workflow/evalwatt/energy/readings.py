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
from pathlib import Path

from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import Family
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import FamilyEnergy, FamilyUnavailable
from evalwatt.contracts.result import JobResult
from evalwatt.energy.cluster.figures import cluster_sources
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts
from evalwatt.energy.sources import EnergySource, TraceSource, Unavailable, column_prefix
from evalwatt.energy.terms import cell_terms, judge_terms
from evalwatt.energy.trace import TraceError
from evalwatt.energy.trace_files import read_trace

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


def _completed(
    family: FamilyEnergy,
    baseline: tuple[EnergySource | None, str],
    judge: tuple[EnergySource | None, str],
    judge_dir: Path | None,
) -> FamilyEnergy:
    """The family's terms with why its baseline has none (``baseline``: the source, or why
    there is none), and with its judge job's terms (``energy.terms.judge_terms``) in place of
    "no judge job" when the cell has a judge job."""
    update: dict[str, object] = {}
    if baseline[0] is None:
        update["baseline_unavailable"] = baseline[1]
    if judge_dir:
        source, why = judge
        update["terms"] = {**family.terms, **judge_terms(source, why, generation_reason(judge_dir))}
        if source is None:
            update["judge_unavailable"] = why
    return family.model_copy(update=update)


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
) -> dict[Family, FamilyEnergy | FamilyUnavailable]:
    """Energy terms of one cell in every family, with the reasons for the missing ones.

    With ``settings`` whose ``sources`` are set, the GPU family comes from the first source
    of ``settings.headline_order`` that has a figure for the cell's job."""
    cell, cell_why = job_sources(cell_dir)
    base, base_why = job_sources(baseline_dir)
    judge, judge_why = job_sources(judge_dir) if judge_dir else ({}, {})
    out: dict[Family, FamilyEnergy | FamilyUnavailable] = {}
    for family in Family:
        if family == Family.GPU and settings is not None and settings.sources:
            out[family] = _gpu_family(
                settings, (cell_dir, baseline_dir, judge_dir), (cell, base, judge),
                (cell_why, base_why, judge_why), samples_completed, output_tokens,
            )  # fmt: skip
            continue
        if family not in cell:
            why = cell_why.get(family, "not sampled in this job")
            out[family] = FamilyUnavailable(unavailable=why)
            continue
        terms = cell_terms(
            cell[family], base.get(family), None, samples_completed, output_tokens,
            generation_null_reason=generation_reason(cell_dir),
        )  # fmt: skip
        out[family] = _completed(
            terms,
            (base.get(family), base_why.get(family, "not sampled")),
            (judge.get(family), judge_why.get(family, "not sampled")),
            judge_dir,
        )
    return out


def _gpu_family(
    settings: Settings,
    dirs: tuple[Path, Path, Path | None],
    traces: tuple[dict[Family, TraceSource], ...],
    whys: tuple[dict[Family, str], ...],
    samples_completed: int | None,
    output_tokens: int | None,
) -> FamilyEnergy | FamilyUnavailable:
    """The GPU family from the headline source: the in-job trace or a cluster source (a
    job-total source gives the job and the job-total methods; its phase-resolved terms are
    null with "gives job totals only")."""
    gpu = Family.GPU
    cluster = [cluster_sources(d, settings)[0] if d else {} for d in dirs]
    chosen, why = _headline(
        settings.headline_order,
        traces[0].get(gpu),
        whys[0].get(gpu, "not sampled in this job"),
        cluster[0],
    )
    if chosen is None:
        why = f"no source of accounting.headline_order has a figure: {why}"
        return FamilyUnavailable(unavailable=why)

    def same(i: int) -> tuple[EnergySource | None, str]:
        """The chosen source's readings of job ``i`` (cell, baseline, judge), or why none."""
        if chosen.name == "nvml":
            return traces[i].get(gpu), whys[i].get(gpu, "not sampled")
        return cluster[i].get(chosen.name), f"no {chosen.name} figures"

    marks = [JobFacts.of(d).marks if d else None for d in dirs]
    terms = cell_terms(
        chosen, same(1)[0], None, samples_completed, output_tokens,
        cell_marks=marks[0], baseline_marks=marks[1],
        generation_null_reason=generation_reason(dirs[0]),
    )  # fmt: skip
    return _completed(terms, same(1), same(2), dirs[2])
