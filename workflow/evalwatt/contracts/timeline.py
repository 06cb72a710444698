"""timeline.json: a job's phase marks, rewritten after each mark (so a killed job keeps the
marks it reached); result.json repeats them once the job has finished."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from evalwatt.base.layout import TIMELINE
from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.contract import Contract


class TimelineFile(Contract):
    """Phase marks of one job, unix seconds."""

    FILE: ClassVar[str] = f"job timeline ({TIMELINE})"

    schema_version: Literal[1] = 1
    marks: dict[Mark, float] = Field(description="unix seconds of each phase mark reached")
