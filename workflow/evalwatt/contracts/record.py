"""energy/<cell>.json: a cell's record, the audit trail of its row of the final table.

Every number of the row is there with the formula that produced it, the window it covers and
the jobs whose readings it comes from. Written by the energy step, read by the final table
and the audit.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.contracts.base import Contract, Record
from evalwatt.contracts.row import TableRow
from evalwatt.contracts.vocabulary import Family, JobKind, JobStatus, Mark


class TermRecord(Record):
    """One energy quantity in joules, or null with the reason (evalwatt.energy.terms.Term)."""

    energy_j: float | None
    formula: str
    null_reason: str | None
    window: tuple[float, float] | None = Field(description="unix seconds it covers")
    per_device_j: dict[str, float]
    extrapolated_s: float = Field(ge=0, description="window edge beyond the samples")
    power_integral_j: float | None = Field(description="cross-check from sampled power")


class PerUnitRecord(Record):
    value_wh: float | None
    formula: str
    null_reason: str | None


class FamilyEnergy(Record):
    """Every energy term of one family, from one source."""

    source: str | None
    is_estimate: bool | None
    terms: dict[str, TermRecord] = Field(description="inference, job, pad, net, gap, judge...")
    per_unit: dict[str, PerUnitRecord]
    gap_pct: float | None
    baseline_unavailable: str | None = Field(default=None, description="why the baseline has none")
    judge_unavailable: str | None = Field(default=None, description="why the judge job has none")


class FamilyUnavailable(Record):
    """A family the cell's job could not sample."""

    unavailable: str = Field(description="why")


class JobRef(Record):
    """One job a cell's numbers come from."""

    kind: JobKind
    job_id: str = Field(description="evalwatt's id of the job")
    run_dir: Path = Field(description="its raw readings")
    accounting_id: str = Field(description="Slurm job id, or local:<host>:<job_start>")
    status: JobStatus
    problems: tuple[str, ...]
    marks: dict[Mark, float]


class CellJobs(Record):
    cell: JobRef
    baseline: JobRef
    judge: JobRef | None


class CellLogs(Record):
    generation: Path = Field(description="Inspect log of the answers")
    scored: Path | None = Field(description="Inspect log with the scores")


class CellRecord(Contract):
    """One cell: its row, its energy terms and the jobs behind them."""

    FILE: ClassVar[str] = "cell record (energy/<cell>.json)"

    schema_version: Literal[2] = 2
    cell_id: str
    row: TableRow
    energy: dict[Family, FamilyEnergy | FamilyUnavailable]
    jobs: CellJobs
    logs: CellLogs
