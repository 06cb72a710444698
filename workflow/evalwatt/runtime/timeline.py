"""A job's timeline: its phase marks (unix seconds), rewritten atomically after each mark, so
that a killed job keeps the marks it reached (contracts.timeline.TimelineFile)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.timeline import TimelineFile


@dataclass
class Timeline:
    """Phase marks of one job, rewritten atomically after each mark."""

    path: Path
    marks: dict[Mark, float] = field(default_factory=dict)
    # called after each mark stamped now: the sampler reads the energy counter at once
    on_mark: Callable[[str], None] | None = None

    def mark(self, name: Mark | str, at: float | None = None) -> float:
        mark = Mark(name)
        if mark in self.marks:
            raise ValueError(f"mark {mark.value!r} set twice")
        self.marks[mark] = time.time() if at is None else at
        if at is None and self.on_mark is not None:
            self.on_mark(mark.value)
        write_contract(self.path, TimelineFile(marks=self.marks))
        return self.marks[mark]

    def branch(self, path: Path) -> Timeline:
        """A timeline that starts with this one's marks so far and goes on in ``path``: a
        model job's cell (its marks: the job's load and reference idle, then its own)."""
        return Timeline(path, dict(self.marks), self.on_mark)
