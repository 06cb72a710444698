"""energy/<cell>.json: a cell's record, the audit trail of its row of the final table.

Every number of the row is there with the formula that produced it, the window it covers and
the jobs whose readings it comes from. Written by the energy step, read by the final table
and the audit.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.base.vocabulary import Family, JobKind, JobStatus, Mark
from evalwatt.contracts.contract import Contract, Record
from evalwatt.contracts.result import GenerationWindow
from evalwatt.contracts.row import TableRow


class TermRecord(Record):
    """One energy quantity in joules, or null with the reason (evalwatt.energy.terms)."""

    energy_j: float | None
    formula: str
    null_reason: str | None
    window: tuple[float, float] | None = Field(description="unix seconds it covers")
    per_device_j: dict[str, float]
    extrapolated_s: float = Field(ge=0, description="window edge beyond the samples")
    power_integral_j: float | None = Field(description="cross-check from sampled power")

    @classmethod
    def missing(cls, formula: str, reason: str) -> TermRecord:
        """A term that could not be measured: null with the reason, never a zero."""
        return cls.derived(None, formula, reason)

    @classmethod
    def derived(
        cls, energy_j: float | None, formula: str, null_reason: str | None = None
    ) -> TermRecord:
        """A term without a window of its own: a combination of others, an estimate, or a
        null (``missing``). A measured window is ``evalwatt.energy.terms.of_window``."""
        return cls(
            energy_j=energy_j,
            formula=formula,
            null_reason=null_reason,
            window=None,
            per_device_j={},
            extrapolated_s=0.0,
            power_integral_j=None,
        )


class PerUnitRecord(Record):
    value_wh: float | None
    formula: str
    null_reason: str | None


class SteadyRecord(Record):
    """ML.ENERGY's steady-state energy per output token of a cell (evalwatt.energy.packed):
    the energy over the cell's steady window (from the moment ``max_connections`` requests
    are in flight until fewer remain) divided by the output tokens generated in it, pro-rated
    per request. Null with the reason when the cell has no steady state."""

    energy_per_output_token_j: float | None
    formula: str
    null_reason: str | None
    window_s: float | None = Field(description="steady_start..steady_end, seconds")
    output_tokens: float | None = Field(description="output tokens pro-rated into the window")


class FamilyEnergy(Record):
    """Every energy term of one family, from one source."""

    source: str | None
    is_estimate: bool | None
    terms: dict[str, TermRecord] = Field(
        description="inference (generation), evaluation, evaluation_overhead, job, pad, net, "
        "gap, corrected, judge, judge_evaluation, reference_idle, cooldown, steady, "
        "model_overhead, shared_overhead..."
    )
    per_unit: dict[str, PerUnitRecord]
    steady: SteadyRecord | None = Field(
        default=None, description="steady-state energy per output token; null: not computed"
    )
    gap_pct: float | None
    baseline_unavailable: str | None = Field(default=None, description="why the baseline has none")
    judge_unavailable: str | None = Field(default=None, description="why the judge job has none")


class FamilyUnavailable(Record):
    """A family the cell's job could not sample."""

    unavailable: str = Field(description="why")


class SourceFigures(Record):
    """One cluster source's figures for one job, read from its raw file only
    (``accounting/<source>.json``: every query and reply, timestamped)."""

    source: str = Field(description="ceems-api, prometheus, sacct")
    scope: Literal["gpu", "node"] = Field(description="the job's GPUs, or its whole node(s)")
    status: Literal["ok", "unavailable", "error"] = Field(description="of the collection")
    detail: str | None = Field(description="why the collection gave no answer")
    raw_file: Path
    span: tuple[float, float] | None = Field(description="the job as the source sees it, unix s")
    pue: float | None = Field(description="PUE divided out of the terms (accounting.pue)")
    includes_pue: bool = Field(description="the reported figures include the site's PUE")
    reported_j: float | None = Field(description="job total as reported (PUE included if any)")
    reported_null_reason: str | None
    terms: dict[str, TermRecord] = Field(
        description="job, pad, load, inference (the evaluation window), generation, judging; "
        "PUE removed; null with the reason"
    )
    host_j: float | None = Field(description="CEEMS: the job's modelled share of host power")
    host_null_reason: str | None
    exclusive: bool | None = Field(description="sacct: the node ran no other job meanwhile")
    exclusive_detail: str | None
    notes: tuple[str, ...]


class JobRef(Record):
    """One job a cell's numbers come from."""

    kind: JobKind
    job_id: str = Field(description="evalwatt's id of the job")
    run_dir: Path = Field(description="its raw readings")
    accounting_id: str = Field(description="Slurm job id, or local:<host>:<job_start>")
    status: JobStatus
    problems: tuple[str, ...]
    marks: dict[Mark, float]
    accounting: dict[str, SourceFigures] = Field(
        default_factory=dict, description="the cluster's figures of the job, by source"
    )
    generation_window: GenerationWindow | None = Field(
        default=None,
        description="cell and judge: the model calls behind its generation_* marks, or why "
        "there are none",
    )
    packed_in: Path | None = Field(None, description="its model job or judge pass; null: alone")


class TokenCheck(Record):
    """Inspect's token counts of the cell against the server's own counters over the same
    inference window (vLLM's /metrics, contracts.result.ServerMetrics)."""

    inspect_input_tokens: int | None
    server_prompt_tokens: int | None
    inspect_output_tokens: int | None
    server_generation_tokens: int | None
    server_requests: int | None = Field(description="requests the server finished")
    agree: bool | None = Field(description="both counts equal; null: not checked")
    problem: str | None = Field(description="the disagreement, in words")
    null_reason: str | None = Field(description="why it could not be checked")


class CellJobs(Record):
    cell: JobRef
    baseline: JobRef | None = Field(
        description="the load-only baseline job (per-cell mode); null in per-model mode, "
        "where the model job's reference idle window stands in for it"
    )
    judge: JobRef | None


class CellLogs(Record):
    generation: Path = Field(description="Inspect log of the answers")
    scored: Path | None = Field(description="Inspect log with the scores")


class CellRecord(Contract):
    """One cell: its row, its energy terms and the jobs behind them."""

    FILE: ClassVar[str] = "cell record (energy/<cell>.json)"

    schema_version: Literal[5] = 5
    cell_id: str
    row: TableRow
    energy: dict[Family, FamilyEnergy | FamilyUnavailable]
    jobs: CellJobs
    logs: CellLogs
    tokens: TokenCheck = Field(description="Inspect's token counts against the server's")
