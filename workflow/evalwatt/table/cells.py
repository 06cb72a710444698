"""A cell's record: what its jobs wrote, its energy terms, and its row of the final table.

The record (``energy/<cell>.json``, contracts.record.CellRecord) is the audit trail of one
row: every number of the row is there with the raw readings' folders and the formula that
produced it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalwatt.base.layout import JobFiles, Layout
from evalwatt.base.vocabulary import Family, JobKind, Mark
from evalwatt.config.load import Config
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import (
    CellJobs,
    CellLogs,
    CellRecord,
    FamilyEnergy,
    FamilyUnavailable,
    JobRef,
    TokenCheck,
)
from evalwatt.contracts.result import EvalSummary, JobResult, ServerMetrics
from evalwatt.contracts.row import FamilyColumns, TableRow
from evalwatt.energy.cluster.figures import cluster_sources
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.readings import cell_energy
from evalwatt.jobs.repeats import repeat_job
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.matrix import Plan
from evalwatt.table.final import ENERGY_METHOD, flat_columns
from evalwatt.table.packed_columns import family_packed_columns, row_packed_columns

# Table columns of a family <- names of the energy terms (evalwatt.energy.terms).
_TERM_COLUMNS = {
    "inference_energy_j": "inference",
    "evaluation_energy_j": "evaluation",
    "evaluation_overhead_energy_j": "evaluation_overhead",
    "job_energy_j": "job",
    "pad_energy_j": "pad",
    "baseline_job_energy_j": "baseline_job",
    "baseline_pad_energy_j": "baseline_pad",
    "net_energy_j": "net",
    "method_gap_j": "gap",
    "judge_energy_j": "judge",
    "judge_evaluation_energy_j": "judge_evaluation",
}
# Terms whose null does not make the family's values null (another job's, or a check).
_OWN_REASON_TERMS = ("judge", "judge_evaluation")
_PER_UNIT_COLUMNS = {
    "energy_per_question_wh": "inference_per_question",
    "net_energy_per_question_wh": "net_per_question",
    "energy_per_1k_output_tokens_wh": "inference_per_1k_output_tokens",
}


# The row's columns that are the cell's evaluation settings, under the same names.
_EVALUATION_COLUMNS = {
    "benchmark", "task", "temperature", "top_p", "top_k", "max_tokens", "max_connections"
}  # fmt: skip


def _span(marks: Mapping[Mark, float], start: Mark, end: Mark) -> float | None:
    if start in marks and end in marks:
        return marks[end] - marks[start]
    return None


def _generation_null_reason(cell: JobResult) -> str | None:
    """Why the cell has no generation marks (its result's record of them), None if it has."""
    if Mark.GENERATION_START in cell.marks and Mark.GENERATION_END in cell.marks:
        return None
    window = cell.generation_window
    if window is not None and window.null_reason is not None:
        return window.null_reason
    return "the cell's timeline has no generation marks"


def family_columns(
    energy: Mapping[Family, FamilyEnergy | FamilyUnavailable],
) -> dict[Family, FamilyColumns]:
    """The table's energy columns of each family, null with the reasons where missing."""
    out = {}
    for family in Family:
        info = energy.get(family, FamilyUnavailable(unavailable="not computed"))
        if isinstance(info, FamilyUnavailable):
            out[family] = FamilyColumns(energy_null_reason=info.unavailable)
            continue
        reasons = []
        values: dict[str, Any] = {}
        for column, name in _TERM_COLUMNS.items():
            term = info.terms.get(name)
            values[column] = term.energy_j if term else None
            if (
                term
                and term.energy_j is None
                and term.null_reason
                and name not in _OWN_REASON_TERMS
            ):
                reasons.append(f"{name}: {term.null_reason}")
        for column, name in _PER_UNIT_COLUMNS.items():
            per = info.per_unit.get(name)
            values[column] = per.value_wh if per else None
        out[family] = FamilyColumns(
            energy_source=info.source,
            method_gap_pct=info.gap_pct,
            energy_null_reason="; ".join(dict.fromkeys(reasons)) or None,
            **values,
            **family_packed_columns(info),
        )
    return out


def energy_columns(
    energy: Mapping[Family, FamilyEnergy | FamilyUnavailable],
) -> dict[str, Any]:
    """The energy terms as the flat columns of the final table (``gpu_inference_energy_j``...)."""
    columns = family_columns(energy)
    return flat_columns({str(f): c.model_dump() for f, c in columns.items()})


def token_check(generation: EvalSummary, server: ServerMetrics | None) -> TokenCheck:
    """Inspect's input and output tokens against the server's prompt and generation counters
    of the same window. They count the same tokens (the OpenAI ``usage`` of each reply is the
    server's own count), so any difference is flagged: retried or failed requests, another
    client of the server, or counters read too early. A flag, never a failure."""
    counts = dict(
        inspect_input_tokens=generation.input_tokens,
        server_prompt_tokens=server.prompt_tokens if server else None,
        inspect_output_tokens=generation.output_tokens,
        server_generation_tokens=server.generation_tokens if server else None,
        server_requests=server.requests if server else None,
    )
    if server is None:
        reason = "the cell job recorded no server counters"
        return TokenCheck(agree=None, problem=None, null_reason=reason, **counts)
    pairs = [
        ("input", generation.input_tokens, "prompt", server.prompt_tokens),
        ("output", generation.output_tokens, "generation", server.generation_tokens),
    ]
    missing = [f"{ours} tokens" for ours, a, _, b in pairs if a is None or b is None]
    if missing:
        why = server.null_reason if server.null_reason else "Inspect's log has none"
        reason = f"{' and '.join(missing)} not comparable: {why}"
        return TokenCheck(agree=None, problem=None, null_reason=reason, **counts)
    differ = [
        f"Inspect counted {a} {ours} tokens, the server {b} {theirs} tokens"
        for ours, a, theirs, b in pairs
        if a != b
    ]
    problem = "; ".join(differ) or None
    return TokenCheck(agree=not differ, problem=problem, null_reason=None, **counts)


def measured_gpus(result: JobResult) -> str | None:
    """UUIDs of the GPUs the job's sampler read, comma-separated; None when NVML read none
    (a CPU job, or fake GPUs): the audit compares them with the GPUs the scheduler gave."""
    nvml = result.sampler.traces.get("nvml") if result.sampler else None
    if nvml is None or not nvml.devices:
        return None
    return ",".join(d.uuid for d in nvml.devices)


def _job_ref(
    kind: JobKind, job_id: str, run_dir: Path, result: JobResult, settings: Settings
) -> JobRef:
    """A job behind a cell's numbers. A packed one's cluster figures are its model job's
    (job totals, which the audit's row of that job gives), so it carries none here."""
    packed = result.packed_in is not None
    figures = cluster_sources(run_dir, settings)[1] if settings.sources and not packed else {}
    return JobRef(
        kind=kind,
        job_id=job_id,
        run_dir=run_dir,
        accounting_id=result.accounting_id,
        status=result.status,
        problems=result.problems,
        marks=result.marks,
        accounting=figures,
        generation_window=result.generation_window,
        packed_in=result.packed_in,
    )


def _judged(layout: Layout, cell_id: str, judged: bool) -> JobResult | None:
    """The cell's judged result (``judges/<cell>/result.json``, written by a judge pass), or
    None for a cell scored in its own job."""
    if not judged:
        return None
    return read_contract(JobResult, layout.run_result("judge", cell_id))


def _baseline(layout: Layout, cell: JobResult) -> tuple[JobFiles | None, JobResult | None]:
    """The files and result of the load-only baseline the cell's job was measured against
    (its spec's ``baseline_id``: in a run, the plan's; in a kept folder re-analysed by a
    later evalwatt, the one that ran, whatever the plan's id has become); none for a cell of
    a model job, whose reference idle window stands in for it (``energy.packed``)."""
    if cell.packed_in is not None:
        return None, None
    files = layout.job_files("baseline", cell.spec.server.baseline_id)
    return files, read_contract(JobResult, files.result)


def build_record(
    config: Config, plan: Plan, layout: Layout, cell_id: str, repeat: int | None = None
) -> CellRecord:
    """Assemble one cell's record from its job results (cell, baseline, judge); with
    ``repeat``, the record of that repeat of the cell (``evalwatt submit --repeats``: its own
    job folder, the cell's baseline, and the cell's judged score). A cell of a model job
    (its result's ``packed_in``) has no baseline job: its model job's reference idle window
    and overhead stand in (``energy.packed``)."""
    cell_job = resolve_job(config, plan, layout, "cell", cell_id)
    if repeat is not None:
        cell_job = repeat_job(cell_job, layout, repeat)
    cell = read_contract(JobResult, cell_job.files.result)
    base_files, base = _baseline(layout, cell)
    judge = _judged(layout, cell_id, cell_job.judged)
    judge_dir = layout.run_dir("judge", cell_id) if judge else None
    generation = cell.generation
    evaluation = cell_job.spec.evaluation
    if generation is None or evaluation is None:
        raise ValueError(f"{cell_job.files.result}: a cell job without a generation")
    scoring = judge.scoring if judge else cell.scoring
    settings = Settings.of(config)
    energy = cell_energy(
        cell_job.files.root,
        base_files.root if base_files else None,
        judge_dir,
        generation.samples_completed,
        generation.output_tokens,
        settings,
    )
    model = cell_job.model
    families = family_columns(energy)
    row = TableRow(
        run=config.run,
        cell_id=cell_job.job_id,  # a repeat's own id (<cell>__r<n>): repeats.py groups by it
        model=cell_job.model_name,
        hf_id=model.hf_id,
        **evaluation.model_dump(include=_EVALUATION_COLUMNS),
        sample_limit=evaluation.limit,
        backend=cell_job.spec.model.backend,
        gpus=cell_job.resources.gpus,
        cpus=cell_job.resources.cpus,
        total_params_b=model.total_params_b,
        active_params_b=model.active_params_b or model.total_params_b,
        weight_bits=model.weight_bits,
        moe=model.moe,
        reasoning=model.reasoning,
        cluster=config.cluster.name,
        gpu_model=config.cluster.gpu_model,
        samples_total=generation.samples_total,
        samples_completed=generation.samples_completed,
        score=scoring.score if scoring else None,
        score_stderr=scoring.score_stderr if scoring else None,
        score_metric=scoring.score_metric if scoring else None,
        scorer=scoring.scorer if scoring else None,
        score_null_reason=scoring.score_null_reason if scoring else "not scored",
        scored_by="judge job" if judge else "in-job",
        judge_model=judge.spec.model.name if judge else None,
        input_tokens=generation.input_tokens,
        output_tokens=generation.output_tokens,
        load_duration_s=_span(cell.marks, Mark.LOAD_START, Mark.READY),
        inference_duration_s=_span(cell.marks, Mark.GENERATION_START, Mark.GENERATION_END),
        evaluation_duration_s=_span(cell.marks, Mark.INFERENCE_START, Mark.INFERENCE_END),
        generation_window_null_reason=_generation_null_reason(cell),
        pad_duration_s=_span(cell.marks, Mark.PAD_START, Mark.PAD_END),
        job_duration_s=_span(cell.marks, Mark.JOB_START, Mark.JOB_END),
        baseline_load_duration_s=_span(base.marks, Mark.LOAD_START, Mark.READY) if base else None,
        baseline_job_duration_s=_span(base.marks, Mark.JOB_START, Mark.JOB_END) if base else None,
        judge_duration_s=_span(judge.marks, Mark.GENERATION_START, Mark.GENERATION_END)
        if judge
        else None,
        judge_evaluation_duration_s=_span(judge.marks, Mark.JUDGING_START, Mark.JUDGING_END)
        if judge
        else None,
        **row_packed_columns(cell),
        gpu=families[Family.GPU],
        cpu=families[Family.CPU],
        cpu_est=families[Family.CPU_EST],
        scheduler_job_id=cell.accounting_id,
        baseline_id=cell_job.baseline_id,
        baseline_scheduler_job_id=(base or cell).accounting_id,
        judge_scheduler_job_id=judge.accounting_id if judge else None,
        host=cell.host,
        gpus_allocated=cell.cuda_visible_devices,
        gpus_measured=measured_gpus(cell),
        energy_method=ENERGY_METHOD,
    )
    return CellRecord(
        cell_id=cell_job.job_id,
        row=row,
        energy=energy,
        jobs=CellJobs(
            cell=_job_ref("cell", cell_job.job_id, cell_job.files.root, cell, settings),
            baseline=_job_ref("baseline", base.job_id, base_files.root, base, settings)
            if base_files and base
            else None,
            judge=_job_ref("judge", cell_id, judge_dir, judge, settings)
            if judge and judge_dir
            else None,
        ),
        logs=CellLogs(generation=generation.log, scored=scoring.log if scoring else None),
        tokens=token_check(generation, cell.server_metrics),
    )
