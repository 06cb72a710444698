"""A row of the final table (one per cell); the table's Arrow schema is derived from it.

Units are in the names. The energy columns come in three families that never mix measured
and modelled numbers (``gpu_*``, ``cpu_*``, ``cpu_est_*``), each the fields of
``FamilyColumns`` with the family as prefix. Nulls are never zeros: each family's
``*_energy_null_reason`` says why its values are null.

Two windows of the cell's Inspect run: the **generation** window (``generation_start`` ->
``generation_end``: first request sent, last response received), the headline
(``inference_*``, ``energy_per_*``), and the wider **evaluation** window (``inference_start``
-> ``inference_end``, around the whole Inspect call: ``evaluation_*``).

Two layouts of jobs give the same columns (``execution``): *per-cell*, a job per cell and a
load-only baseline job per server setting (the whole-job columns ``job_*``, ``baseline_*``,
``net_*``), and *per-model*, one job loading the model once for all its cells (the model's
reference idle window, each cell's cooldown, and its share of the model job's overhead:
``reference_idle_*``, ``cooldown_*``, ``shared_overhead_*``). The columns of the other layout
are null with the reason. The steady-state energy per output token (``steady_*``) is in both.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.contracts.contract import Contract, Record


class FamilyColumns(Record):
    """The energy columns of one family (their table names get the family as prefix)."""

    energy_source: str | None = Field(default=None, description="source")
    inference_energy_j: float | None = Field(
        default=None,
        description="phase-resolved, the headline: counter over the generation window "
        "[generation_start, generation_end] (first request sent, last response received)",
    )
    evaluation_energy_j: float | None = Field(
        default=None,
        description="counter over the evaluation window [inference_start, inference_end]: the "
        "whole Inspect call (task and dataset loading, generation, log writing)",
    )
    evaluation_overhead_energy_j: float | None = Field(
        default=None, description="evaluation - inference: Inspect's own work around generation"
    )
    job_energy_j: float | None = Field(default=None, description="counter over the whole cell job")
    pad_energy_j: float | None = Field(
        default=None, description="counter over the cell's padding sleep"
    )
    baseline_job_energy_j: float | None = Field(
        default=None, description="counter over the whole load-only job"
    )
    baseline_pad_energy_j: float | None = Field(
        default=None, description="counter over the baseline's padding sleep"
    )
    net_energy_j: float | None = Field(
        default=None, description="whole-job method: (job - pad) - (baseline_job - baseline_pad)"
    )
    method_gap_j: float | None = Field(default=None, description="net - inference")
    method_gap_pct: float | None = Field(
        default=None, description="100 x (net - inference) / inference"
    )
    judge_energy_j: float | None = Field(
        default=None,
        description="judge job, counter over its generation window [generation_start, "
        "generation_end] (the judge's first request to its last response)",
    )
    judge_evaluation_energy_j: float | None = Field(
        default=None,
        description="judge job, counter over [judging_start, judging_end] (Inspect's scoring)",
    )
    energy_per_question_wh: float | None = Field(
        default=None, description="inference energy / 3600 / completed samples"
    )
    net_energy_per_question_wh: float | None = Field(
        default=None, description="net energy / 3600 / completed samples"
    )
    energy_per_1k_output_tokens_wh: float | None = Field(
        default=None, description="inference energy / 3600 / (output tokens / 1000)"
    )
    energy_null_reason: str | None = Field(
        default=None, description="why this family's values are null"
    )
    reference_idle_power_w: float | None = Field(
        default=None,
        description="per-model: mean power over the model job's reference idle window (the "
        "loaded model held idle, in the cells' CUDA state: the in-job baseline)",
    )
    cooldown_energy_j: float | None = Field(
        default=None,
        description="per-model: counter over the cell's cooldown [cooldown_start, "
        "cooldown_end] (waiting for power to fall back to loaded idle before its evaluation)",
    )
    shared_overhead_energy_j: float | None = Field(
        default=None,
        description="per-model: the model job's energy outside its cells' evaluation windows "
        "(load, reference idle, cooldowns, exit, pad) x this cell's share of their evaluation "
        "seconds; never added to the headline",
    )
    per_model_null_reason: str | None = Field(
        default=None,
        description="why reference_idle_power_w, cooldown_energy_j and "
        "shared_overhead_energy_j are null (per-cell mode, or a missing reading)",
    )
    steady_energy_per_output_token_j: float | None = Field(
        default=None,
        description="ML.ENERGY's steady state: counter over [steady_start, steady_end] (from "
        "max_connections requests in flight until fewer remain) / output tokens generated in "
        "it (pro-rated per request), joules per token",
    )
    steady_null_reason: str | None = Field(
        default=None, description="why steady_energy_per_output_token_j is null"
    )


class TableRow(Contract):
    """One cell: what ran, what it scored, how long each phase took, and its energy."""

    FILE: ClassVar[str] = "final table row"

    run: str = Field(description="run name")
    cell_id: str = Field(
        description="cell identifier (model__benchmark__t<temperature>__c<max_connections>)"
    )
    model: str = Field(description="model name")
    hf_id: str = Field(description="Hugging Face repository id")
    benchmark: str = Field(description="benchmark name")
    task: str = Field(description="Inspect task")
    temperature: float = Field(description="sampling temperature")
    top_p: float | None = Field(description="top-p (null: server default)")
    top_k: int | None = Field(description="top-k (null: server default)")
    max_tokens: int | None = Field(description="max generated tokens (null: unset)")
    max_connections: int = Field(description="Inspect max_connections (static, adaptive off)")
    sample_limit: int | None = Field(description="samples asked for (null: all)")
    backend: str = Field(description="inference server")
    gpus: int = Field(description="GPUs of the job (tensor-parallel size)")
    cpus: int = Field(description="CPUs of the job")
    total_params_b: float = Field(description="total parameters, billions")
    active_params_b: float = Field(description="active parameters per token, billions")
    weight_bits: int = Field(description="bits per stored weight")
    moe: bool = Field(description="mixture of experts")
    reasoning: bool = Field(description="reasoning model")
    cluster: str = Field(description="cluster name")
    gpu_model: str = Field(description="GPU model of the cluster")

    samples_total: int | None = Field(description="samples in the evaluation")
    samples_completed: int | None = Field(description="samples completed without error")
    score: float | None = Field(description="headline score (metric in score_metric)")
    score_stderr: float | None = Field(description="standard error of the score")
    score_metric: str | None = Field(description="metric of score (accuracy, mean)")
    scorer: str | None = Field(description="Inspect scorer")
    score_null_reason: str | None = Field(
        description="why score is null (not scored, or the metric was not a number)"
    )
    scored_by: Literal["in-job", "judge job"] = Field(
        description="in-job (unit tests, exact match) or judge job"
    )
    judge_model: str | None = Field(description="judge model, for judge-scored benchmarks")
    input_tokens: int | None = Field(description="input tokens of the evaluated model")
    output_tokens: int | None = Field(description="output tokens of the evaluated model")

    load_duration_s: float | None = Field(description="load_start -> ready of the cell")
    inference_duration_s: float | None = Field(
        description="generation_start -> generation_end: the generation window (the headline)"
    )
    evaluation_duration_s: float | None = Field(
        default=None,
        description="inference_start -> inference_end: the evaluation window (the Inspect call)",
    )
    generation_window_null_reason: str | None = Field(
        default=None, description="why the cell has no generation window (inference_* columns null)"
    )
    pad_duration_s: float | None = Field(description="pad_start -> pad_end of the cell")
    job_duration_s: float | None = Field(description="job_start -> job_end of the cell")
    baseline_load_duration_s: float | None = Field(
        description="load_start -> ready of the baseline"
    )
    baseline_job_duration_s: float | None = Field(
        description="job_start -> job_end of the baseline"
    )
    judge_duration_s: float | None = Field(
        description="generation_start -> generation_end of the judge job (the judge's calls)"
    )
    judge_evaluation_duration_s: float | None = Field(
        default=None,
        description="judging_start -> judging_end of the judge job (Inspect's scoring)",
    )

    execution: Literal["per-cell", "per-model"] = Field(
        default="per-cell",
        description="per-cell: the cell ran in its own job; per-model: in one job with the "
        "other cells of its model and server settings",
    )
    model_job_id: str | None = Field(
        default=None,
        description="per-model: evalwatt id of the model job that ran the cell; null: per-cell",
    )
    reference_idle_duration_s: float | None = Field(
        default=None, description="per-model: reference_idle_start -> reference_idle_end"
    )
    cooldown_duration_s: float | None = Field(
        default=None, description="per-model: cooldown_start -> cooldown_end of the cell"
    )
    cooldown_ended_by: str | None = Field(
        default=None,
        description="per-model: what ended the cooldown (power, max_s, no_power_reading, skipped)",
    )
    cooldown_null_reason: str | None = Field(
        default=None, description="why the cooldown columns are null"
    )
    temperature_at_evaluation_start_c: float | None = Field(
        default=None,
        description="temperature of the hottest job GPU at inference_start, degrees C",
    )
    temperature_at_cooldown_start_c: float | None = Field(
        default=None,
        description="per-model: temperature of the hottest job GPU at cooldown_start, degrees C",
    )
    temperature_null_reason: str | None = Field(
        default=None, description="why a temperature column is null"
    )
    steady_window_s: float | None = Field(
        default=None,
        description="steady_start -> steady_end: max_connections requests in flight",
    )
    steady_output_tokens: float | None = Field(
        default=None,
        description="output tokens generated in the steady window (each request's tokens "
        "pro-rated over its server time)",
    )
    steady_window_null_reason: str | None = Field(
        default=None,
        description="why the cell has no steady window (fewer samples than 2 x max_connections...)",
    )

    gpu: FamilyColumns = Field(description="gpu_* columns")
    cpu: FamilyColumns = Field(description="cpu_* columns")
    cpu_est: FamilyColumns = Field(description="cpu_est_* columns")

    scheduler_job_id: str = Field(
        description="Slurm job id of the cell (per-model: of its model job), or "
        "local:<host>:<job_start>"
    )
    baseline_id: str = Field(description="evalwatt id of this cell's load-only baseline")
    baseline_scheduler_job_id: str = Field(
        description="Slurm job id of the baseline, or local:<host>:<job_start>; per-model: the "
        "model job's (its reference idle window is the baseline)"
    )
    judge_scheduler_job_id: str | None = Field(
        description="Slurm job id of the judge pass, or local:<host>:<job_start>"
    )
    host: str = Field(description="node that ran the cell")
    gpus_allocated: str | None = Field(
        description="the GPUs the scheduler gave the cell (CUDA_VISIBLE_DEVICES); null: none"
    )
    gpus_measured: str | None = Field(
        description="UUIDs of the GPUs the sampler summed (NVML); null: none measured"
    )
    energy_method: str = Field(description="how the energy columns were computed")
    schema_version: Literal[5] = Field(default=5, description="version of this schema")
