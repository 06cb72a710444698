"""Energy sources behind one interface.

A source answers two questions about one job: how much energy its devices used over a window
of time, and over the whole job. The in-job trace answers both, and so do the cluster's power
series in Prometheus (``evalwatt.energy.cluster.prometheus``); both are cut by the job's timeline
(``TimelineSource``). Sources that only know job totals (Slurm's sacct, the CEEMS API:
``evalwatt.energy.cluster.sacct``, ``evalwatt.energy.cluster.ceems``) answer the second and
say why they cannot answer the first: they raise ``Unavailable`` with a reason, which the
energy terms carry as a null with a reason, never a zero.

The sources, by name (``SOURCE_NAMES``): ``nvml``, ``rapl``, ``cpu-model`` (sampled in the job),
``ceems-api``, ``prometheus``, ``sacct`` (the cluster's accounting, collected after the job;
docs/energy-sources.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from evalwatt.energy.trace import Trace, TraceError, WindowEnergy

# The windows of a job's timeline that the energy terms cut (start mark, end mark).
# The evaluation window: evalwatt's runtime stamps it around the Inspect call (task and dataset
# loading, generation, log writing); the headline is the generation window inside it.
INFERENCE_WINDOW = ("inference_start", "inference_end")
GENERATION_WINDOW = ("generation_start", "generation_end")
JOB_WINDOW = ("job_start", "job_end")
PAD_WINDOW = ("pad_start", "pad_end")
LOAD_WINDOW = ("load_start", "ready")
JUDGING_WINDOW = ("judging_start", "judging_end")
# The windows a source's figures are given for (the audit's columns), by name.
FIGURE_WINDOWS = {
    "job": JOB_WINDOW,
    "pad": PAD_WINDOW,
    "load": LOAD_WINDOW,
    "inference": INFERENCE_WINDOW,
    "generation": GENERATION_WINDOW,
    "judging": JUDGING_WINDOW,
}
SOURCE_NAMES = ("nvml", "rapl", "cpu-model", "ceems-api", "prometheus", "sacct")


def with_generation_marks(marks: Mapping[str, float]) -> dict[str, float]:
    """A timeline from a harness that stamps ``inference_start``/``inference_end`` around its
    generate calls themselves (the shared traces', ``evalwatt energy --timeline``), with
    ``generation_*`` marks at the same times: there the inference window *is* the generation
    window. Never for evalwatt's own jobs, whose inference window holds Inspect's own work
    too (``evalwatt.energy.terms.cell_terms``). A timeline that already has either
    generation mark, or no inference window, is returned as it is."""
    out = dict(marks)
    if not any(m in out for m in GENERATION_WINDOW) and all(m in out for m in INFERENCE_WINDOW):
        out[GENERATION_WINDOW[0]] = out[INFERENCE_WINDOW[0]]
        out[GENERATION_WINDOW[1]] = out[INFERENCE_WINDOW[1]]
    return out


class Unavailable(Exception):
    """A measurement that cannot be taken; the message is the reason, kept in the results."""


class EnergySource(Protocol):
    """What the energy terms need from any source of readings."""

    @property
    def name(self) -> str:
        """Short source name recorded in tables (``nvml``, ``rapl``, ``cpu-model``, ...)."""
        ...

    @property
    def domain(self) -> str:
        """What is measured: ``gpu`` or ``cpu``."""
        ...

    @property
    def is_estimate(self) -> bool:
        """True when the numbers come from a model rather than a counter."""
        ...

    def window(self, start: float, end: float) -> WindowEnergy:
        """Energy between two unix times; raises Unavailable."""
        ...

    def job(self) -> WindowEnergy:
        """Energy of the whole job; raises Unavailable."""
        ...


def column_prefix(source: EnergySource) -> str:
    """Column family of a source in the final table: measured and modelled never share one."""
    return f"{source.domain}_est" if source.is_estimate else source.domain


class TimelineSource:
    """A source that can cut any window, cut by the job's timeline (``marks``). Subclasses
    give ``window``; the named windows follow."""

    marks: Mapping[str, float]

    def window(self, start: float, end: float) -> WindowEnergy:
        raise NotImplementedError

    def mark_window(self, start_mark: str, end_mark: str) -> WindowEnergy:
        """Energy between two named marks of the job's timeline."""
        missing = [m for m in (start_mark, end_mark) if m not in self.marks]
        if missing:
            raise Unavailable(f"timeline has no mark {', '.join(missing)}")
        return self.window(self.marks[start_mark], self.marks[end_mark])

    def job(self) -> WindowEnergy:
        return self.mark_window(*JOB_WINDOW)


@dataclass(frozen=True)
class TraceSource(TimelineSource):
    """A job's own sampled trace, cut by the job's timeline."""

    trace: Trace
    marks: dict[str, float]

    @property
    def name(self) -> str:
        """The probe that wrote the trace (its metadata's ``source``; NVML for a CSV)."""
        return self.trace.source

    @property
    def domain(self) -> str:
        """``gpu`` or ``cpu``, from the trace's metadata."""
        return self.trace.domain

    @property
    def is_estimate(self) -> bool:
        """A model's estimate (``cpu-model``), never a measured counter."""
        return self.trace.is_estimate

    def window(self, start: float, end: float) -> WindowEnergy:
        try:
            return self.trace.window(start, end)
        except TraceError as exc:
            raise Unavailable(f"{self.name} trace {self.trace.path}: {exc}") from exc

    def check_marks(
        self,
        timeline: Path | str,
        required: Sequence[tuple[str, str]],
        optional: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Refuse a timeline that cannot belong to this trace, with a TraceError naming the
        timeline file, the mark and its value: a mark of a required window missing, a window
        that ends before it starts, a mark further outside the trace than the edge tolerance.
        An optional window with a missing mark is left alone: its term becomes a null with
        the reason. (A counter that went backwards is not checked here: it is a fact of the
        measurement, recorded as a null term, not an input to fix.)"""
        for window in [*required, *optional]:
            absent = [m for m in window if m not in self.marks]
            if absent:
                if window in required:
                    present = ", ".join(sorted(self.marks)) or "none"
                    raise TraceError(
                        f"{timeline}: no mark {', '.join(absent)} (needed for the window "
                        f"{window[0]}..{window[1]}; marks present: {present})"
                    )
                continue
            (start, end), (t0, t1) = window, (self.marks[window[0]], self.marks[window[1]])
            if t1 < t0:
                raise TraceError(
                    f"{timeline}: mark {end}={t1:.3f} is {t0 - t1:.3f} s before "
                    f"{start}={t0:.3f}: the window ends before it starts"
                )
            for mark in window:
                for series in self.trace.series.values():
                    why = series.outside(self.marks[mark])
                    if why is not None:
                        raise TraceError(
                            f"{timeline}: mark {mark} does not fall in trace "
                            f"{self.trace.path}: {why}"
                        )
