"""result.json: what one finished job did, written last by the job runtime.

Its presence means the job finished; ``status`` says whether its numbers can be used as
they are, and ``problems`` says what to check when they cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.base.layout import RESULT
from evalwatt.base.vocabulary import JobKind, JobStatus, Mark
from evalwatt.contracts.contract import Contract, Record
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.contracts.spec import JobSpec


class ServerRun(Record):
    argv: tuple[str, ...] = Field(description="the command as run, port and path filled in")
    env: dict[str, str | None] = Field(
        default_factory=dict,
        description="variables set for the server on top of the job's; null: removed",
    )
    port: int = Field(gt=0)
    exit_code: int = Field(description="negative: stopped by that signal (-15: SIGTERM)")
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


class JobResult(Contract):
    """One finished job."""

    FILE: ClassVar[str] = f"job result ({RESULT})"

    schema_version: Literal[4] = 4
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
    sampler: SamplerStatus
    host: str
    scheduler_job_id: str | None = Field(description="Slurm's job id; null outside Slurm")
    slurm: dict[str, str] = Field(description="SLURM_* variables of the job")
    cuda_visible_devices: str | None
    versions: dict[str, str | None] = Field(description="package versions; null: absent")
    spec: JobSpec

    @property
    def accounting_id(self) -> str:
        """The id to look the job up by: Slurm's job id, or ``local:<host>:<job_start>``."""
        if self.scheduler_job_id:
            return self.scheduler_job_id
        return f"local:{self.host}:{self.marks[Mark.JOB_START]:.0f}"
