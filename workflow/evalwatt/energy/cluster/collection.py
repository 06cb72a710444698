"""One cluster source's collection for one finished job, under way, on the login node
(``evalwatt.energy.cluster.collect`` runs them): its errors, its exchanges, its waiting.

A source's collector fills a ``Collection`` (every exchange in its ``log``, what it learnt to
read the replies in its ``context``) and says how it ended by returning (an answer), by raising
``Unavailable`` (a definitive null: the reason) or ``AccountingError`` (no answer by the
deadline, or a refusal: the reason). Either way the collection ends in one raw file,
``accounting/<source>.json`` (``evalwatt.contracts.accounting.AccountingFile``).
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from evalwatt.base.errors import UserError
from evalwatt.contracts.accounting import AccountingFile, Exchange, Outcome, SourceName
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts
from evalwatt.energy.sources import Unavailable

Sleep = Callable[[float], None]
Clock = Callable[[], float]
T = TypeVar("T")


class AccountingError(UserError):
    """A source that could not answer for a job: the message says why and what to change."""


class AuthError(AccountingError):
    """The server refused who we are (401, 403): never retried."""


class Transient(AccountingError):
    """A failure worth another try (a timeout, a 5xx, a unit not there yet)."""


@dataclass
class Collection:
    """One source's collection for one finished job, under way: when it started, every
    exchange so far (``log``, shared with the HTTP client or the Slurm commands) and the facts
    learnt to read the replies (``context``)."""

    source: SourceName
    settings: Settings
    job: JobFacts
    clock: Clock = time.time
    sleep: Sleep = time.sleep
    log: list[Exchange] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def slurm_job_id(self, why: str) -> str:
        """The job's Slurm id; Unavailable (``why``) for a job that ran outside Slurm."""
        if not self.job.scheduler_job_id:
            raise Unavailable(why)
        return self.job.scheduler_job_id

    @property
    def user(self) -> str:
        """The account running the collection (from the OS, not from an environment
        variable)."""
        return pwd.getpwuid(os.getuid()).pw_name

    def wait_for(self, attempt: Callable[[], T]) -> tuple[T, int]:
        """Call ``attempt`` until it returns, retrying ``Transient`` failures with exponential
        backoff (``backoff_initial_s`` doubling up to ``backoff_max_s``) and never sleeping
        past ``deadline_s`` from the first try; the last failure is raised as it is. Returns
        the value and the number of tries. (tenacity: a well-kept retry library, already
        pinned.)"""
        import tenacity

        settings = self.settings
        retrying = tenacity.Retrying(
            stop=tenacity.stop_before_delay(settings.deadline_s),
            wait=tenacity.wait_exponential(
                multiplier=settings.backoff_initial_s,
                min=settings.backoff_initial_s,
                max=settings.backoff_max_s,
            ),
            retry=tenacity.retry_if_exception_type(Transient),
            sleep=self.sleep,
            reraise=True,
        )
        value = retrying(attempt)
        return value, int(retrying.statistics.get("attempt_number", 1))

    def record(self, status: Outcome, detail: str | None = None) -> AccountingFile:
        """The collection's end: its raw file's record, every exchange kept."""
        return self.job.record(
            self.source,
            self.settings,
            self.started,
            self.log,
            status,
            detail,
            self.context,
            self.clock,
        )


Collector = Callable[[Collection], None]
"""Asks one source about one job: returns when it answered, raises Unavailable (a definitive
null) or AccountingError (no answer, a refusal), every exchange kept in the collection."""
