"""timeline.json: a job's phase marks, rewritten after each mark (so a killed job keeps the
marks it reached); result.json repeats them once the job has finished."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.base.layout import TIMELINE
from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.contract import Contract


class TimelineFile(Contract):
    """Phase marks of one job, unix seconds. Version 2 may hold the ``warm_up_*`` marks;
    version 1 files still read (their jobs sent no warm-up wave)."""

    FILE: ClassVar[str] = f"job timeline ({TIMELINE})"
    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = (1,)

    schema_version: Literal[1, 2] = 2
    marks: dict[Mark, float] = Field(description="unix seconds of each phase mark reached")
