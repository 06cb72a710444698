"""Energy sources of finished jobs, found from what each job wrote (its result, its traces,
and the cluster's accounting of it collected after it ended).

A job's result (result.json, read through its contract) says which traces the sampler wrote
and why the other probes could not sample; its marks cut the traces into phases. The cluster
sources (``accounting.sources``) are read from the raw files of ``evalwatt.energy.cluster.collect``
only: no network. The GPU columns take the first source of ``accounting.headline_order``
that has a figure for the cell's job (nvml, the in-job counter, by default).

A cell written by a model job (a judge result written by a judge pass) has its traces in that
job's folder (its result's ``packed_in``), in parts, and is cut by its own marks; its model
job's terms (reference idle, cooldown, shared overhead) and the steady state of every cell
are ``evalwatt.energy.packed``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import Family
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import FamilyEnergy, FamilyUnavailable
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.sampler import SamplerStatus, TraceInfo
from evalwatt.energy.cluster.figures import cluster_sources
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.packed import Packing, complete_terms, model_job, packed_reason, with_marks
from evalwatt.energy.sources import EnergySource, TraceSource, Unavailable, column_prefix
from evalwatt.energy.terms import cell_terms, judge_terms
from evalwatt.energy.trace import Trace, TraceError
from evalwatt.energy.trace_files import read_trace_parts

# Which family each of the sampler's probes fills.
FAMILY_OF_SOURCE = {"nvml": Family.GPU, "rapl": Family.CPU, "cpu-model": Family.CPU_EST}


def packed_home(result: JobResult, run_dir: Path) -> Path | None:
    """The folder of the model job (judge pass) that wrote the packed result of ``run_dir``,
    in this run where it is there (``JobFiles.packing_home``); None for a result of its own
    job."""
    if result.packed_in is None:
        return None
    return JobFiles(run_dir).packing_home(Path(result.packed_in))


def sampler_of(result: JobResult, run_dir: Path) -> tuple[JobFiles, SamplerStatus]:
    """Where a job's traces are, and the sampler's status of them: the job's own folder and
    result, or, for a cell of a model job (a judge result of a judge pass: ``packed_in``),
    that job's folder and its ``sampler.json``, which the sampler rewrites at every trace
    part. Raises TraceError naming the file it cannot read."""
    packed_in = packed_home(result, run_dir)
    if packed_in is None:
        if result.sampler is None:
            raise TraceError(f"{result.job_id}: a result without a sampler status")
        return JobFiles(run_dir), result.sampler
    home = JobFiles(packed_in)
    try:
        text = home.sampler_status.read_text(encoding="utf-8")
        return home, SamplerStatus.model_validate_json(text)
    except (OSError, ValidationError) as exc:
        raise TraceError(f"{home.sampler_status}: no sampler status: {exc}") from None


def read_parts(home: JobFiles, info: TraceInfo) -> Trace:
    """One probe's trace, all its parts in order as one trace (a model job's are cut after
    each cell); a part missing or unreadable is a TraceError naming it."""
    return read_trace_parts([home.root / name for name in info.files])


def job_sources(run_dir: Path) -> tuple[dict[Family, TraceSource], dict[Family, str]]:
    """The trace sources of one job by family, cut by its own marks, and why the other
    families have none. A packed result's traces are its model job's (``sampler_of``)."""
    result = read_contract(JobResult, JobFiles(run_dir).result)
    marks = {str(mark): t for mark, t in result.marks.items()}
    try:
        home, sampler = sampler_of(result, run_dir)
    except TraceError as exc:
        return {}, {family: str(exc) for family in Family}
    reasons = {FAMILY_OF_SOURCE[name]: why for name, why in sampler.unavailable.items()}
    sources: dict[Family, TraceSource] = {}
    for name, info in sampler.traces.items():
        try:
            trace = read_parts(home, info)
        except (OSError, TraceError) as exc:
            reasons[FAMILY_OF_SOURCE[name]] = f"trace unreadable: {exc}"
            continue
        source = TraceSource(trace, marks)
        sources[Family(column_prefix(source))] = source
    return sources, reasons


def packing(run_dir: Path) -> Packing:
    """How the cell of ``run_dir`` ran: alone, or in a model job (its overhead's inputs)."""
    result = read_contract(JobResult, JobFiles(run_dir).result)
    packed_in = packed_home(result, run_dir)
    return Packing(
        cell_id=result.job_id,
        steady=result.steady_window,
        job=model_job(packed_in) if packed_in is not None else None,
        packed_in=packed_in,
    )


def cluster_of(run_dir: Path, settings: Settings) -> dict[str, EnergySource]:
    """The cluster sources with a figure for the job of ``run_dir``. A packed result's are
    its model job's (collected for that Slurm job), cut by the result's own marks; the
    job-total sources (CEEMS API, sacct) cannot be cut into cells and are left out."""
    result = read_contract(JobResult, JobFiles(run_dir).result)
    packed_in = packed_home(result, run_dir)
    if packed_in is None:
        return cluster_sources(run_dir, settings)[0]
    if not JobFiles(packed_in).result.exists():
        return {}
    marks = {str(m): t for m, t in result.marks.items()}
    found = cluster_sources(packed_in, settings)[0]
    recut = {name: with_marks(source, marks) for name, source in found.items()}
    return {name: source for name, source in recut.items() if source is not None}


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
    packed: bool,
) -> tuple[EnergySource | None, str]:
    """The first source of ``order`` with a figure for the cell, or why none has: a job
    figure; for a packed cell, a source that can cut its windows (``cluster_of``)."""
    reasons = []
    for name in order:
        if name == "nvml":
            if nvml is not None:
                return nvml, ""
            reasons.append(f"nvml: {nvml_why}")
            continue
        source = cluster.get(name)
        if source is None:
            reasons.append(
                f"{name}: no figures" + (" that cut the cell's windows" if packed else "")
            )
            continue
        if packed:
            return source, ""
        try:
            source.job()
        except (Unavailable, TraceError) as exc:
            reasons.append(str(exc))
            continue
        return source, ""
    return None, "; ".join(reasons)


def _baseline_why(cell: Packing) -> str:
    """Why a cell without a baseline job has none: it ran in a model job."""
    if cell.packed_in is None:
        return "no baseline job"
    cells = cell.job.cells if cell.job else None
    return f"{packed_reason(cell.packed_in, cells)}; its reference idle window stands in"


def cell_energy(
    cell_dir: Path,
    baseline_dir: Path | None,
    judge_dir: Path | None,
    samples_completed: int | None,
    output_tokens: int | None,
    settings: Settings | None = None,
) -> dict[Family, FamilyEnergy | FamilyUnavailable]:
    """Energy terms of one cell in every family, with the reasons for the missing ones.

    ``baseline_dir`` is the cell's load-only baseline job (per-cell mode), None for a cell of
    a model job (per-model mode: its reference idle window stands in, ``energy.packed``).
    With ``settings`` whose ``sources`` are set, the GPU family comes from the first source
    of ``settings.headline_order`` that has a figure for the cell's job."""
    how = packing(cell_dir)
    cell, cell_why = job_sources(cell_dir)
    base, base_why = job_sources(baseline_dir) if baseline_dir else ({}, {})
    judge, judge_why = job_sources(judge_dir) if judge_dir else ({}, {})
    no_base = _baseline_why(how)
    out: dict[Family, FamilyEnergy | FamilyUnavailable] = {}
    for family in Family:
        if family == Family.GPU and settings is not None and settings.sources:
            out[family] = _gpu_family(
                settings, (cell_dir, baseline_dir, judge_dir), (cell, base, judge),
                (cell_why, base_why, judge_why), samples_completed, output_tokens, how,
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
            complete_terms(terms, cell[family], how),
            (base.get(family), base_why.get(family, "not sampled") if baseline_dir else no_base),
            (judge.get(family), judge_why.get(family, "not sampled")),
            judge_dir,
        )
    return out


def _gpu_family(
    settings: Settings,
    dirs: tuple[Path, Path | None, Path | None],
    traces: tuple[dict[Family, TraceSource], ...],
    whys: tuple[dict[Family, str], ...],
    samples_completed: int | None,
    output_tokens: int | None,
    how: Packing,
) -> FamilyEnergy | FamilyUnavailable:
    """The GPU family from the headline source: the in-job trace or a cluster source (a
    job-total source gives the job and the job-total methods; its phase-resolved terms are
    null with "gives job totals only"). A packed cell's cluster sources are the ones that can
    cut its windows (``cluster_of``)."""
    gpu = Family.GPU
    cluster = [cluster_of(d, settings) if d else {} for d in dirs]
    chosen, why = _headline(
        settings.headline_order,
        traces[0].get(gpu),
        whys[0].get(gpu, "not sampled in this job"),
        cluster[0],
        how.packed_in is not None,
    )
    if chosen is None:
        why = f"no source of accounting.headline_order has a figure: {why}"
        return FamilyUnavailable(unavailable=why)

    def same(i: int) -> tuple[EnergySource | None, str]:
        """The chosen source's readings of job ``i`` (cell, baseline, judge), or why none."""
        if i == 1 and dirs[1] is None:
            return None, _baseline_why(how)
        if chosen.name == "nvml":
            return traces[i].get(gpu), whys[i].get(gpu, "not sampled")
        return cluster[i].get(chosen.name), f"no {chosen.name} figures"

    marks = [_marks(d) if d else None for d in dirs]
    terms = cell_terms(
        chosen, same(1)[0], None, samples_completed, output_tokens,
        cell_marks=marks[0], baseline_marks=marks[1],
        generation_null_reason=generation_reason(dirs[0]),
    )  # fmt: skip
    return _completed(complete_terms(terms, chosen, how), same(1), same(2), dirs[2])


def _marks(run_dir: Path) -> dict[str, float]:
    """A job's marks, from its result."""
    result = read_contract(JobResult, JobFiles(run_dir).result)
    return {str(m): t for m, t in result.marks.items()}
