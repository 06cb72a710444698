"""plan/plan.json: the planned matrix of a run, its config's checks and its cost preview.

Written by the plan rule (``evalwatt.plan.record``), read by the report's plan page
(``evalwatt.report.figures.report``). The planner (``evalwatt.plan.matrix``) builds the same
records, so what the file holds is what the workflow ran from.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.contracts.contract import Contract, Record
from evalwatt.contracts.spec import ServerSettings

CheckStatus = Literal["passed", "deferred"]


class Check(Record):
    """One check of the config against the machine (``evalwatt.config.checks``) that did not
    fail: a failed check stops the run instead of being recorded."""

    name: str = Field(description="what was checked, e.g. weights:<model>, task:<benchmark>")
    status: CheckStatus = Field(
        description="deferred: left to the job on the compute node, for the reason in detail"
    )
    detail: str = Field(description="what was found, or why the check waits for the job")


class ModelPlan(Record):
    """The resources one model asks for, and why."""

    model: str
    backend: str
    gpus: int = Field(ge=0, description="GPUs of one node; 0: a CPU job")
    cpus: int = Field(ge=1)
    vram_gb: float = Field(description="the VRAM formula's estimate, GB of 1e9 bytes")
    gpu_memory_gb: float = Field(description="memory of one GPU of the cluster, GB")
    total_params_b: float
    weight_bits: int
    attention_heads: int
    kv_heads: int
    reason: str = Field(description="why this GPU count, in words")


class Baseline(Record):
    """A load-only job: start the server, wait until ready, stop, pad."""

    id: str
    model: str
    server: ServerSettings


class Sampling(Record):
    """Sampling settings of a cell beside its temperature; null: the server's default."""

    top_p: float | None
    top_k: int | None
    max_tokens: int | None


class Cell(Record):
    """One evaluation job: a (model, benchmark, temperature, max_connections)."""

    id: str
    model: str
    benchmark: str
    temperature: float
    max_connections: int = Field(ge=1)
    baseline: str = Field(description="id of the load-only baseline of its server settings")
    judge: str | None = Field(description="name of the judge that scores it; null: in-job")
    sampling: Sampling


class GpuHours(Record):
    """GPU-hours of the run, split the way the energy is."""

    loading: float = Field(ge=0, description="cells' weight loading and server start")
    inference: float = Field(ge=0, description="cells' evaluation")
    padding: float = Field(ge=0, description="cells' sleep past the accounting window")
    baselines: float = Field(ge=0, description="the load-only baselines, whole")
    judging: float = Field(ge=0, description="the judge jobs, whole")


class CostAssumptions(Record):
    """The planner's assumptions behind the preview (not measurements)."""

    server_start_s: float
    load_gb_per_s: float
    accounting_window_s: float
    pad_margin_s: float = Field(description="0 when there is no accounting window")


class CostPreview(Record):
    """A rough GPU-hour budget from the planner's assumptions: the same estimates that set
    each job's time limit (``evalwatt.plan.estimate``), not measurements."""

    cells: int
    baselines: int
    judge_jobs: int
    gpu_hours: GpuHours
    gpu_hours_total: float = Field(ge=0, description="the sum of gpu_hours, unrounded")
    assumptions: CostAssumptions


class PlanFile(Contract):
    """The planned matrix of one run: GPUs per model and why, baselines, cells, the config's
    checks against the machine, and the GPU-hour preview."""

    FILE: ClassVar[str] = "plan (plan/plan.json)"

    schema_version: Literal[1] = 1
    run: str
    models: tuple[ModelPlan, ...]
    baselines: tuple[Baseline, ...]
    cells: tuple[Cell, ...]
    checks: tuple[Check, ...] = Field(description="passed or deferred, with the reason")
    cost: CostPreview
