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

    @property
    def sampling_key(self) -> tuple[float, float | None]:
        """The settings a server that keeps its first request's sampling must share among the
        cells it serves (``config.model_entry.SAMPLING_AT_FIRST_REQUEST``): temperature and
        top_p, those it reads (``max_tokens`` is per request everywhere; ``transformers
        serve`` refuses ``top_k``, which the config refuses for its models)."""
        return (self.temperature, self.sampling.top_p)


class PhaseHours(Record):
    """Hours of a run by phase, the way the energy is split. Judging is the judge passes': the
    generation of the judge calls, and the rest (the judge's load, Inspect, padding)."""

    generation: float = Field(ge=0, description="the cells' generation (prefill and decode)")
    loading: float = Field(ge=0, description="server start and weight loading of every job")
    reference_idle: float = Field(ge=0, description="per-model jobs' in-job loaded-idle window")
    idle: float = Field(
        ge=0, description="loaded but not generating: Inspect's set-up and scoring, cooldowns"
    )
    padding: float = Field(ge=0, description="sleep that lifts a job past the accounting window")
    judging_generation: float = Field(ge=0, description="the judge calls' generation")
    judging_other: float = Field(ge=0, description="the judge passes' load, Inspect and padding")

    @property
    def total(self) -> float:
        return sum(self.model_dump().values())

    @property
    def outside_generation(self) -> float:
        """Hours outside the cells' and the judge calls' generation: the overhead of the mode."""
        return self.total - self.generation - self.judging_generation


class JobCounts(Record):
    """Slurm jobs of a run, by kind (``evalwatt.base.vocabulary.RUN_KINDS``)."""

    cell: int = Field(ge=0, description="per-cell mode: one job per cell")
    baseline: int = Field(ge=0, description="per-cell mode: one load-only job per server settings")
    model: int = Field(ge=0, description="per-model mode: one job per model and time chunk")
    judge_pass: int = Field(ge=0, description="both modes: one job per judge and time chunk")

    @property
    def total(self) -> int:
        return self.cell + self.baseline + self.model + self.judge_pass


class ModePreview(Record):
    """One execution mode's cost: jobs, GPU-hours and wall hours by phase."""

    execution: Literal["per-cell", "per-model"]
    jobs: JobCounts
    gpu_hours: PhaseHours = Field(description="hours x the GPUs of each job (0 for CPU jobs)")
    job_hours: PhaseHours = Field(description="wall hours of the jobs, whatever their GPUs")
    gpu_hours_total: float = Field(ge=0, description="the sum of gpu_hours, unrounded")
    overhead_share: float | None = Field(
        description="GPU-hours outside generation and judging generation / all GPU-hours; "
        "null for a run without GPU"
    )


class ModelRate(Record):
    """The throughput the estimate used for one model, and where it comes from."""

    model: str
    source: str = Field(description="the table's row and scaling, or calibrated, in words")
    decode_tokens_per_s: dict[str, float] = Field(
        description="output tokens/s by max_connections of the sweep (and the judge's)"
    )
    load_s: float = Field(ge=0, description="server start and weight loading")


class CostAssumptions(Record):
    """The planner's assumptions behind the preview (not measurements)."""

    server_start_s: float
    load_gb_per_s: float
    accounting_window_s: float
    pad_margin_s: float = Field(description="0 when there is no accounting window")
    inspect_overhead_s: float
    judge_overhead_s: float | None = Field(
        None,
        description="seconds of a judged cell's judgement outside its judge calls; null in a "
        "plan written before the term existed",
    )
    job_overhead_s: dict[str, float] | None = Field(
        None,
        description="seconds each job kind spends loaded outside loading, evaluations, "
        "cooldowns and padding; null in a plan written before the term existed",
    )
    throughput_table: str
    calibration: str | None = Field(description="the calibration file read; null: none")


class CostPreview(Record):
    """What the run will cost in both execution modes, from the throughput model
    (``evalwatt.plan.estimate``): the same estimates that set each job's time limit, not
    measurements. ``evalwatt preview-check`` compares it with a run's measured GPU-seconds."""

    execution: Literal["per-cell", "per-model"] = Field(description="the run's own mode")
    cells: int
    judged_cells: int
    modes: tuple[ModePreview, ...] = Field(description="per-cell, then per-model")
    rates: tuple[ModelRate, ...]
    assumptions: CostAssumptions

    def mode(self, execution: str) -> ModePreview:
        return next(m for m in self.modes if m.execution == execution)


class ModelCalibration(Record):
    """One model's measured rates in a run (``evalwatt preview-check --write-calibration``)."""

    load_s: float | None = Field(ge=0, description="mean seconds from load_start to ready")
    tokens_per_s: dict[str, float] = Field(
        description="effective output tokens/s of its cells' generation windows (prefill "
        "included), by max_connections"
    )
    judge_s_per_call: dict[str, float] = Field(
        description="as a judge: seconds of generation per judge call, by its max_connections"
    )
    cells: int = Field(ge=0, description="cells measured")


class Calibration(Contract):
    """A run's measured rates, read by the next preview (``planner.calibration``). Version 2
    adds ``job_overhead_s``, version 3 ``judge_overhead_s``; older files still read (the
    planner's values stand in for what they did not measure)."""

    FILE: ClassVar[str] = "calibration file (planner.calibration)"
    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = (1, 2)

    schema_version: Literal[1, 2, 3] = 3
    run: str = Field(description="the run the rates were measured in")
    inspect_overhead_s: float | None = Field(
        description="mean seconds of a cell's evaluation window outside its generation window"
    )
    judge_overhead_s: float | None = Field(
        None,
        description="mean seconds of a judged cell's judgement window outside its judge calls "
        "(version 3; absent before: the file's inspect_overhead_s stands in)",
    )
    cooldown_s: float | None = Field(description="mean seconds of a packed cell's cooldown")
    job_overhead_s: dict[str, float] = Field(
        default_factory=dict,
        description="mean seconds a job of each kind spends loaded outside its loading, "
        "evaluations, cooldowns and padding (version 2; absent from version 1: the planner's)",
    )
    models: dict[str, ModelCalibration]


class PlanFile(Contract):
    """The planned matrix of one run: GPUs per model and why, baselines, cells, the config's
    checks against the machine, and the GPU-hour preview of both execution modes
    (version 2: the preview by phase and mode, from the throughput model)."""

    FILE: ClassVar[str] = "plan (plan/plan.json)"

    schema_version: Literal[2] = 2
    run: str
    models: tuple[ModelPlan, ...]
    baselines: tuple[Baseline, ...]
    cells: tuple[Cell, ...]
    checks: tuple[Check, ...] = Field(description="passed or deferred, with the reason")
    cost: CostPreview
