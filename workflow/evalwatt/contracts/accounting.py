"""accounting/<source>.json: everything one cluster source said about one finished job.

Collection runs on the login node once a job has ended (``evalwatt.energy.cluster.collect``).
Every query it makes and every raw reply it gets is kept here, with timestamps, together with
the outcome. The energy step and the audit read only these files: rebuilding the table needs
no network, and an admin can recompute every figure from what the server said. No secret is
ever kept: a request's ``Authorization`` header is redacted to where the secret came from.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from evalwatt.contracts.contract import Contract, Record

SourceName = Literal["ceems-api", "prometheus", "sacct"]
Outcome = Literal["ok", "unavailable", "error"]


class Exchange(Record):
    """One request and its raw reply, as it happened. No secret is ever kept."""

    at_unix: float = Field(description="when the request was sent")
    request: str = Field(description="method and URL with its query, or the command line")
    headers: dict[str, str] = Field(description="request headers; Authorization redacted")
    status: int | None = Field(description="HTTP status or exit code; null: no reply")
    elapsed_s: float | None
    body: str | None = Field(description="the raw reply (or stdout), verbatim")
    error: str | None = Field(description="what went wrong (or stderr)")


class AccountingFile(Contract):
    """Everything one cluster source said about one job, and what evalwatt concluded."""

    FILE: ClassVar[str] = "accounting record (accounting/<source>.json)"

    schema_version: Literal[1] = 1
    source: SourceName
    job_dir: str = Field(description="the job's folder when it was collected")
    scheduler_job_id: str | None = Field(description="Slurm's job id; null outside Slurm")
    host: str = Field(description="the node the job ran on, as the job recorded it")
    marks: dict[str, float] = Field(description="the job's timeline, unix seconds")
    settings: dict[str, Any] = Field(description="the settings used; never secrets")
    started_unix: float
    finished_unix: float
    exchanges: tuple[Exchange, ...]
    status: Outcome = Field(
        description="ok: an answer; unavailable: a definitive null (reason in detail); "
        "error: no answer by the deadline or a refusal (reason in detail)"
    )
    detail: str | None
    context: dict[str, Any] = Field(
        default_factory=dict, description="facts of the job used to read the replies"
    )
