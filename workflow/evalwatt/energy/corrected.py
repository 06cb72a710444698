"""The corrected whole-job method: a job-total source (CEEMS, sacct) plus the timelines of a
cell and its load-only baseline give an estimate of the cell's inference energy close to the
phase-resolved one (``evalwatt.energy.terms`` explains the three methods).

Each stretch of a job between two marks is in one GPU state (``STATE_AFTER``); the cell's
total minus what its non-work seconds drew at levels measured on like stretches leaves the
work.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from evalwatt.energy.sources import Unavailable
from evalwatt.energy.trace import COUNTS

COLD, LOAD, LOADED, WORK = "cold", "load", "loaded", "work"
# The GPU state of the stretch that follows each mark, up to the next mark. ``exit`` is special:
# evalwatt's runtime stamps it once the server is gone (cold after it); the harness of the
# shared traces stamps it when it asks the worker to stop and stamps ``worker_exited`` once it
# is gone (loaded in between).
STATE_AFTER = {
    "job_start": COLD,
    "cold_idle_end": COLD,
    "load_start": LOAD,
    "ready": LOADED,
    "ready_idle_end": LOADED,
    "inference_start": WORK,
    "inference_end": LOADED,
    "judging_start": WORK,
    "judging_end": LOADED,
    "post_idle_end": LOADED,
    "worker_exited": COLD,
    "scoring_start": COLD,
    "scoring_end": COLD,
    "pad_start": COLD,
    "pad_end": COLD,
}
# A pad shorter than this gives no cold-idle power of its own (the NVML counter steps every
# ~100 ms: about +-1 % on 10 s); the cell then takes its baseline's.
MIN_PAD_S = 10.0
CORRECTED_FORMULA = (
    "job - P_cold x cold_s - P_warm x (load_s + loaded_s); P_cold = pad / pad_s; "
    "P_warm = (baseline_job - P_cold(baseline) x cold_s(baseline)) / "
    "(load_s + loaded_s)(baseline)"
)


@dataclass(frozen=True)
class Phases:
    """Seconds a job spent in each GPU state, from its timeline (and the source's span)."""

    cold_s: float
    load_s: float
    loaded_s: float
    work_s: float
    pad_s: float

    @property
    def warm_s(self) -> float:
        return self.load_s + self.loaded_s


def phase_durations(marks: Mapping[str, float], span: tuple[float, float] | None = None) -> Phases:
    """Seconds in each state (``STATE_AFTER``) between ``job_start`` and ``job_end``, or over
    ``span`` (the job as the energy source counts it, e.g. Slurm's start and end): the time of
    the span outside the marks counts as cold. Raises Unavailable naming what is missing."""
    needed = ("job_start", "load_start", "ready", "pad_start", "pad_end", "job_end")
    absent = [m for m in needed if m not in marks]
    if absent:
        raise Unavailable(f"timeline has no mark {', '.join(absent)}")
    times = sorted(
        ((t, m) for m, t in marks.items() if m not in COUNTS),
        key=lambda item: item[0],
    )
    first, last = marks["job_start"], marks["job_end"]
    outside = [m for t, m in times if not first <= t <= last]
    if outside:
        raise Unavailable(f"mark {', '.join(outside)} outside job_start..job_end")
    unknown = [m for _, m in times if m not in STATE_AFTER and m not in ("exit", "job_end")]
    if unknown:
        raise Unavailable(f"mark {', '.join(unknown)}: no known GPU state after it")
    seconds = {COLD: 0.0, LOAD: 0.0, LOADED: 0.0, WORK: 0.0}
    for (t0, mark), (t1, _) in itertools.pairwise(times):
        if mark == "job_end":
            continue
        state = STATE_AFTER.get(mark, LOADED if "worker_exited" in marks else COLD)
        seconds[state] += t1 - t0
    if span is not None:
        t0, t1 = span
        if not (math.isfinite(t0) and math.isfinite(t1)) or t0 > first or t1 < last:
            raise Unavailable(
                f"the source's span {t0}..{t1} does not hold job_start..job_end {first}..{last}"
            )
        seconds[COLD] += (first - t0) + (t1 - last)
    return Phases(
        cold_s=seconds[COLD],
        load_s=seconds[LOAD],
        loaded_s=seconds[LOADED],
        work_s=seconds[WORK],
        pad_s=marks["pad_end"] - marks["pad_start"],
    )


@dataclass(frozen=True)
class JobTotal:
    """What the corrected method needs of one job from a job-total source: its energy over
    the job (``span``, or job_start..job_end), its timeline, and its cold-idle power, either
    from its pad's energy (``pad_j``: a source that can cut the pad, or the trace) or stated
    (``cold_idle_w``: e.g. a separately measured sleep job on the same GPUs, as the study did)."""

    energy_j: float
    marks: Mapping[str, float]
    pad_j: float | None = None
    cold_idle_w: float | None = None
    span: tuple[float, float] | None = None


@dataclass(frozen=True)
class Corrected:
    """The corrected whole-job estimate, with the levels and durations behind it."""

    energy_j: float
    cell: Phases
    baseline: Phases
    cold_w: float
    cold_from: str
    baseline_cold_w: float
    baseline_cold_from: str
    warm_w: float

    def describe(self) -> str:
        c, b = self.cell, self.baseline
        return (
            f"P_cold {self.cold_w:.1f} W ({self.cold_from}) x {c.cold_s:.1f} s; "
            f"P_warm {self.warm_w:.1f} W x ({c.load_s:.1f} + {c.loaded_s:.1f}) s; "
            f"baseline: P_cold {self.baseline_cold_w:.1f} W ({self.baseline_cold_from}) x "
            f"{b.cold_s:.1f} s, warm ({b.load_s:.1f} + {b.loaded_s:.1f}) s"
        )


def _cold_power(job: JobTotal, phases: Phases, who: str) -> tuple[float | None, str]:
    if job.pad_j is not None and phases.pad_s >= MIN_PAD_S:
        return job.pad_j / phases.pad_s, f"{who} pad, {phases.pad_s:.1f} s"
    if job.cold_idle_w is not None:
        return job.cold_idle_w, "stated"
    if job.pad_j is None:
        return None, f"{who}: no pad energy and no stated cold-idle power"
    return None, f"{who}: pad of {phases.pad_s:.1f} s < {MIN_PAD_S:g} s, no stated power"


def corrected_whole_job(cell: JobTotal, baseline: JobTotal) -> Corrected:
    """The corrected whole-job estimate of the cell's inference energy (module docstring).
    Raises Unavailable with the reason when an input is missing or not physical."""
    cp = phase_durations(cell.marks, cell.span)
    bp = phase_durations(baseline.marks, baseline.span)
    base_cold, base_from = _cold_power(baseline, bp, "baseline's")
    if base_cold is None:
        raise Unavailable(f"no cold-idle power: {base_from}")
    cold, cold_from = _cold_power(cell, cp, "cell's")
    if cold is None:
        cold, cold_from = base_cold, f"baseline's, as the {cold_from}"
    if not bp.warm_s > 0:
        raise Unavailable("the baseline's timeline has no load or loaded seconds")
    warm = (baseline.energy_j - base_cold * bp.cold_s) / bp.warm_s
    if not (math.isfinite(warm) and warm >= 0):
        raise Unavailable(
            f"the baseline's warm power is {warm:.1f} W: its job total "
            f"{baseline.energy_j:.1f} J is below its cold idle ({base_cold:.1f} W x "
            f"{bp.cold_s:.1f} s)"
        )
    value = cell.energy_j - cold * cp.cold_s - warm * cp.warm_s
    if not math.isfinite(value):
        raise Unavailable(f"the estimate is {value}, not a finite number")
    return Corrected(value, cp, bp, cold, cold_from, base_cold, base_from, warm)
