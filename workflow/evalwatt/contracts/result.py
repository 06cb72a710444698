"""result.json: what one finished job did, written last by the job runtime.

Its presence means the job finished; ``status`` says whether its numbers can be used as
they are, and ``problems`` says what to check when they cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from evalwatt.base.layout import RESULT
from evalwatt.base.vocabulary import JobKind, JobStatus, Mark
from evalwatt.contracts.contract import Contract, ContractError, Record, read_contract
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.contracts.spec import JobSpec


class ServerRun(Record):
    argv: tuple[str, ...] = Field(description="the command as run, port and path filled in")
    env: dict[str, str | None] = Field(
        default_factory=dict,
        description="variables set for the server on top of the job's; null: removed",
    )
    port: int = Field(gt=0)
    exit_code: int | None = Field(
        description="negative: stopped by that signal (-15: SIGTERM); null: the server still "
        "ran when the result was written (a model job's cell)"
    )
    log_file: str = Field(description="server output, in the job's folder")


class ServerMetrics(Record):
    """The server's own counters over the inference window: vLLM's Prometheus ``/metrics``,
    read just before ``inference_start`` and just after ``inference_end`` (raw text kept in
    ``files``). Null with the reason where the server publishes none (llama-cpp) or a reading
    failed."""

    source: str | None = Field(description="what was read (vllm /metrics); null: nothing")
    files: tuple[str, ...] = Field(description="raw readings, file names in the job's folder")
    server_version: str | None = Field(description="the server's /version")
    requests: int | None = Field(description="requests finished in the window, any reason")
    prompt_tokens: int | None = Field(description="prompt tokens the server processed")
    generation_tokens: int | None = Field(description="tokens the server generated")
    e2e_latency_s_sum: float | None = Field(description="sum of the requests' latencies, s")
    ttft_s_sum: float | None = Field(description="sum of the requests' times to first token, s")
    null_reason: str | None = Field(description="why some or all counts are null")


class EvalSummary(Record):
    """What the results need from an Inspect log."""

    log: Path
    status: str = Field(description="Inspect's status of the log")
    task: str
    samples_total: int | None
    samples_completed: int | None
    score: float | None = Field(description="headline score, metric in score_metric")
    score_stderr: float | None
    score_metric: str | None
    scorer: str | None
    score_null_reason: str | None = Field(description="why score is null (never NaN)")
    started_at: str | None = Field(description="ISO time, UTC")
    completed_at: str | None = Field(description="ISO time, UTC")
    input_tokens: int | None
    output_tokens: int | None


class GenerationWindow(Record):
    """The model's own work inside a job's Inspect window, from the model events of its
    Inspect log: the first request sent and the last response received, stamped in the
    timeline as ``generation_start`` and ``generation_end`` (unix seconds, the job's clock:
    Inspect runs in the job's process). Null with the reason where the log gives none."""

    log: Path = Field(description="the Inspect log read")
    within: tuple[Mark, Mark] = Field(description="the window whose model calls are counted")
    start: float | None = Field(description="first request sent, unix s")
    end: float | None = Field(description="last response received, unix s")
    model_calls: int = Field(ge=0, description="model calls counted (cache reads excluded)")
    samples: int = Field(ge=0, description="samples with at least one model call counted")
    ended_by_sample: int = Field(
        ge=0,
        description="calls without a completion time (failed), ended at their sample's end",
    )
    null_reason: str | None = Field(description="why there are no generation marks")


class CooldownRecord(Record):
    """How a packed cell's cooldown went: the wait before its evaluation for the GPUs' power
    to come back near the model job's reference idle (``cooldown_*`` marks)."""

    started: float = Field(description="unix s")
    ended: float = Field(description="unix s")
    ended_by: Literal["power", "max_s", "no_power_reading", "skipped"] = Field(
        description="power: every GPU at most its reference + margin_w; max_s: waited the "
        "longest allowed; no_power_reading: no GPU power could be read, ended at once; "
        "skipped: no wait asked (max_s 0)"
    )
    reference_power_w: tuple[float, ...] | None = Field(
        description="per job GPU, the reference idle window's mean power; null: none read"
    )
    power_w_at_end: tuple[float, ...] | None = Field(
        description="per job GPU, the last power read; null: none read"
    )
    max_s: float = Field(ge=0)
    margin_w: float = Field(ge=0)


class SteadyWindow(Record):
    """ML.ENERGY's steady state of a cell (ml-energy/benchmark): from the moment its
    ``max_connections`` (B) requests are in flight until fewer remain, read from the model
    events of its Inspect log. It opens at the B-th request's server-side start (``completed
    - working_time``) and closes at the (N - B - 1)-th completion (N requests); the output
    tokens in it are each request's, pro-rated over its server-side interval (a uniform
    token rate per request). Null with the reason when N < 2 B or the window is empty."""

    start: float | None = Field(description="unix s")
    end: float | None = Field(description="unix s")
    in_flight: int = Field(ge=1, description="B: the cell's max_connections")
    requests: int = Field(ge=0, description="N: model calls counted")
    output_tokens: float | None = Field(description="pro-rated output tokens in the window")
    null_reason: str | None


class PackedOutcome(Record):
    """One cell of a model job or a judge pass: how it went, and where its result is."""

    cell_id: str
    status: Literal["ok", "incomplete", "failed", "skipped_done"] = Field(
        description="its result's status; failed: no result written; skipped_done: a valid "
        "result with the same spec was already there, left untouched"
    )
    result: Path | None = Field(description="its result.json; null: failed")
    error: str | None = Field(description="why it failed")


class JobResult(Contract):
    """One finished job. Version 6: its spec may be of version 5 (``warm_up``) and its marks
    hold ``warm_up_*``; version 5 results still read."""

    FILE: ClassVar[str] = f"job result ({RESULT})"
    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = (5,)

    schema_version: Literal[5, 6] = 6
    kind: JobKind
    job_id: str = Field(description="evalwatt's id of the job")
    run: str
    status: JobStatus
    problems: tuple[str, ...] = Field(description="what made the status incomplete")
    marks: dict[Mark, float] = Field(description="the timeline, unix seconds")
    pad_requested_s: float = Field(ge=0, description="padding sleep asked for")
    server: ServerRun
    generation: EvalSummary | None = Field(description="cells: the answers")
    scoring: EvalSummary | None = Field(description="scored log: in-job or by the judge")
    server_metrics: ServerMetrics | None = Field(
        default=None,
        description="cells: the server's own counters over the inference window; "
        "null: no inference window (baseline, judge job)",
    )
    generation_window: GenerationWindow | None = Field(
        default=None,
        description="cells and judge jobs: the model's calls inside the Inspect window "
        "(generation_* marks); null: a baseline",
    )
    steady_window: SteadyWindow | None = Field(
        default=None, description="cells: ML.ENERGY's steady state; null: not a cell"
    )
    cooldown: CooldownRecord | None = Field(
        default=None, description="a model job's cell: its wait before evaluating"
    )
    temperatures_c: dict[Mark, tuple[float, ...]] = Field(
        default_factory=dict,
        description="each job GPU's temperature at the start of a window (reference_idle_start, "
        "cooldown_start, inference_start, judging_start); empty without GPUs",
    )
    cells: tuple[PackedOutcome, ...] = Field(
        default=(), description="model jobs and judge passes: each cell's outcome"
    )
    packed_in: Path | None = Field(
        default=None,
        description="a cell written by a model job, a judge result by a judge pass: the "
        "folder of that job's files (traces, server log, sampler status); a model job's or "
        "judge pass's own result: set only when a rerun wrote them in rerun-<time>/ (finished "
        "cells point at the earlier attempt's); null: the job's files are in its folder",
    )
    sampler: SamplerStatus | None = Field(
        description="null only in a packed cell's result: sampler.json in packed_in has it"
    )
    host: str
    scheduler_job_id: str | None = Field(description="Slurm's job id; null outside Slurm")
    slurm: dict[str, str] = Field(description="SLURM_* variables of the job")
    cuda_visible_devices: str | None
    versions: dict[str, str | None] = Field(description="package versions; null: absent")
    spec: JobSpec

    @model_validator(mode="after")
    def _sampler_or_packed(self) -> JobResult:
        if self.sampler is None and self.packed_in is None:
            raise ValueError("sampler is null only in a packed cell's result (packed_in set)")
        return self

    @property
    def accounting_id(self) -> str:
        """The id to look the job up by: Slurm's job id, or ``local:<host>:<job_start>``."""
        if self.scheduler_job_id:
            return self.scheduler_job_id
        return f"local:{self.host}:{self.marks[Mark.JOB_START]:.0f}"


def finished_result(path: Path) -> JobResult | None:
    """The result at ``path`` if it reads and its status is ok or incomplete: a finished job
    (or cell) whose numbers stand; None for anything else (absent, unreadable, written by
    another schema version), which is run again."""
    if not path.is_file():
        return None
    try:
        result = read_contract(JobResult, path)
    except ContractError:
        return None
    return result if result.status in (JobStatus.OK, JobStatus.INCOMPLETE) else None
