"""The corrected whole-job method: a job-total source (CEEMS, sacct) plus the timelines of a
cell and its load-only baseline give an estimate of the cell's inference energy close to the
phase-resolved one (``evalwatt.energy.terms`` lists the three methods).

Each stretch of a job between two marks is in one GPU state (``STATE_AFTER``): *cold* (no
CUDA context: before loading, scoring after the server stopped, the pad), *load*, *loaded*
(the model in memory, idle: after ``ready``, Inspect's import, Inspect's own work before the
first request and after the last response, until the server is gone) or *work* (generation,
``generation_start..generation_end``). Two levels, each measured where it can be::

    P_cold    = cold_idle / cold_idle_s       each job's settled pad (pad_settled..pad_end),
                                              or a stated power
    P_loaded  = (baseline_job - P_cold(b) x (cold_s + load_s)(b)) / loaded_s(b)
    corrected = job - P_cold x (cold_s + load_s) - P_loaded x loaded_s

Why so, from the real H100 jobs (docs/validation.md): loading (a CPU-bound read and build of
the weights) draws about cold-idle power (71-79 W against 69-74 W), the loaded model idles at
117-131 W, and for a few seconds after the server exits the GPU decays from ~90 W to cold
idle. One "warm" level for loading and loaded idle together (the previous form) missed by
+3 to +13 %. Loading is therefore counted at cold power, and the pad's first
``PAD_SETTLE_S`` seconds (``pad_start..pad_settled``) are left out of P_cold. The decay and
whatever loading draws above cold idle are in both jobs' totals; the baseline does what the
cell does around the generation (the same load, the same Inspect import, the same stop), so
they land in the baseline's ``P_loaded`` and are taken from the cell in proportion to its
loaded seconds: exactly when the two jobs' loaded seconds match, nearly when they are close.
What remains is the difference between the two jobs' loading above cold idle (5 W x 17 s =
85 J on one H100 job whose load drew 79 W where its baseline's drew 76 W), which no job total
can see.

A server that does not warm itself gets a warm-up wave after ``ready`` (``warm_up_*``, the
same requests in a cell's job and its baseline): a state of its own, *wave*. Its ~7.6 kJ at
~600 W (an 8B model, 64 requests, on an H100) cannot be told from loaded idle in a job total,
and folded into loaded time it made P_loaded 390-445 W against ~127 W of true loaded idle,
so that each second by which a cell's loaded time differed from its baseline's cost ~300 J
(-1 to +19 % on twelve cells, docs/validation.md). The same wave draws the same energy in
both jobs (within ~1.5 %), so with a wave the method takes the difference of the two jobs,
where the wave's energy cancels, and counts the remaining difference of loaded seconds at
cold-idle power, a lower bound of loaded idle::

    corrected = job - P_cold x (cold_s + load_s)
                - (baseline_job - P_cold(b) x (cold_s + load_s)(b))
                - P_cold x (loaded_s - loaded_s(b))          loaded_s without the wave

Its error: (P_loaded - P_cold) x (loaded_s - loaded_s(b)) plus the two waves' difference:
-3.7 to +2.0 % on the same twelve cells (cold idle stated at 70 and 90 W: they had no pad).
Both jobs have the wave or neither does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from evalwatt.energy.sources import Unavailable
from evalwatt.energy.trace_files import COUNTS

COLD, LOAD, LOADED, WORK, WAVE = "cold", "load", "loaded", "work", "wave"
# The GPU state of the stretch that follows each mark, up to the next mark. ``exit`` is special:
# evalwatt's runtime stamps it once the server is gone (cold after it); the harness of the
# shared traces stamps it when it asks the worker to stop and stamps ``worker_exited`` once it
# is gone (loaded in between).
STATE_AFTER = {
    "job_start": COLD,
    "cold_idle_end": COLD,
    "load_start": LOAD,
    "ready": LOADED,
    # the warm-up wave (a server that does not warm itself): the same wave in the cell's job
    # and its baseline, its energy cancelled in their difference (module docstring)
    "warm_up_start": WAVE,
    "warm_up_end": LOADED,
    "ready_idle_end": LOADED,
    # Inspect's own work inside its window (task and dataset loading before the first request,
    # log writing after the last response) is loaded idle; only generation_* is work. A
    # timeline without generation marks never comes here: energy.terms gives a harness's
    # timeline generation marks at its inference marks (sources.with_generation_marks) and
    # nulls the term for an evalwatt job without them.
    "inference_start": LOADED,
    "generation_start": WORK,
    # ML.ENERGY's steady state (a cell with at least twice max_connections requests) lies
    # inside the generation window: still work after each of its marks
    "steady_start": WORK,
    "steady_end": WORK,
    "generation_end": LOADED,
    "inference_end": LOADED,
    "judging_start": LOADED,
    "judging_end": LOADED,
    "post_idle_end": LOADED,
    "worker_exited": COLD,
    "scoring_start": COLD,
    "scoring_end": COLD,
    "pad_start": COLD,
    "pad_settled": COLD,
    "pad_end": COLD,
}
# A settled pad shorter than this gives no cold-idle power of its own (about +-1 % on 8 s from
# the counter's ~100 ms steps); the cell then takes its baseline's.
MIN_COLD_IDLE_S = 8.0
CORRECTED_FORMULA = (
    "job - P_cold x (cold_s + load_s) - P_loaded x loaded_s; "
    "P_cold = E(pad_settled..pad_end) / its seconds; "
    "P_loaded = (baseline_job - P_cold(baseline) x (cold_s + load_s)(baseline)) / "
    "loaded_s(baseline)"
)
CORRECTED_WAVE_FORMULA = (
    "job - P_cold x (cold_s + load_s) - (baseline_job - P_cold(baseline) x "
    "(cold_s + load_s)(baseline)) - P_cold x (loaded_s - loaded_s(baseline)); the same "
    "warm-up wave in both jobs, its seconds not loaded_s; P_cold = E(pad_settled..pad_end) / "
    "its seconds"
)


def cold_idle_marks(marks: Mapping[str, float]) -> tuple[str, str]:
    """The window whose power is the job's cold idle: the settled pad, or the whole pad of a
    timeline without ``pad_settled`` (older jobs, the shared traces)."""
    return ("pad_settled" if "pad_settled" in marks else "pad_start"), "pad_end"


@dataclass(frozen=True)
class Phases:
    """Seconds a job spent in each GPU state, from its timeline (and the source's span)."""

    cold_s: float
    load_s: float
    loaded_s: float
    work_s: float
    cold_idle_s: float = 0.0
    """Seconds of the window P_cold is measured on (``cold_idle_marks``)."""
    wave_s: float = 0.0
    """Seconds of the warm-up wave (``warm_up_start..warm_up_end``), not in ``loaded_s``."""

    @property
    def cold_power_s(self) -> float:
        """Seconds counted at cold-idle power: cold and loading."""
        return self.cold_s + self.load_s


def phase_durations(marks: Mapping[str, float], span: tuple[float, float] | None = None) -> Phases:
    """Seconds in each state (``STATE_AFTER``) between ``job_start`` and ``job_end``, or over
    ``span`` (the job as the energy source counts it, e.g. Slurm's start and end): the time of
    the span outside the marks counts as cold. Raises Unavailable naming what is missing."""
    needed = ("job_start", "load_start", "ready", "pad_start", "pad_end", "job_end")
    absent = [m for m in needed if m not in marks]
    if absent:
        raise Unavailable(f"timeline has no mark {', '.join(absent)}")
    if "inference_start" in marks and "generation_start" not in marks:
        # its generation would count as loaded idle (terms.with_generation_marks adds them to
        # a harness's timeline; an evalwatt job without them has no headline either)
        raise Unavailable("timeline has inference marks but no generation_start")
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
    seconds = {COLD: 0.0, LOAD: 0.0, LOADED: 0.0, WORK: 0.0, WAVE: 0.0}
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
        cold_idle_s=marks["pad_end"] - marks[cold_idle_marks(marks)[0]],
        wave_s=seconds[WAVE],
    )


@dataclass(frozen=True)
class JobTotal:
    """What the corrected method needs of one job from a job-total source: its energy over
    the job (``span``, or job_start..job_end), its timeline, and its cold-idle power, either
    from the energy of its settled pad (``cold_idle_j`` over ``cold_idle_marks``: a source
    that can cut windows, or the trace) or stated (``cold_idle_w``: e.g. a separately
    measured sleep job on the same GPUs, as the study did)."""

    energy_j: float
    marks: Mapping[str, float]
    cold_idle_j: float | None = None
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
    loaded_w: float
    """The power the cell's loaded seconds are counted at: the baseline's loaded idle, or
    with a warm-up wave the cold idle, on the difference of loaded seconds only."""

    @property
    def formula(self) -> str:
        return CORRECTED_WAVE_FORMULA if self.cell.wave_s > 0 else CORRECTED_FORMULA

    def describe(self) -> str:
        c, b = self.cell, self.baseline
        loaded = (
            f"P_cold {self.loaded_w:.1f} W x ({c.loaded_s:.1f} - {b.loaded_s:.1f}) s loaded; "
            f"waves {c.wave_s:.1f} and {b.wave_s:.1f} s"
            if c.wave_s > 0
            else f"P_loaded {self.loaded_w:.1f} W x {c.loaded_s:.1f} s"
        )
        return (
            f"P_cold {self.cold_w:.1f} W ({self.cold_from}) x ({c.cold_s:.1f} + "
            f"{c.load_s:.1f}) s; {loaded}; "
            f"baseline: P_cold {self.baseline_cold_w:.1f} W ({self.baseline_cold_from}) x "
            f"({b.cold_s:.1f} + {b.load_s:.1f}) s, loaded {b.loaded_s:.1f} s"
        )


def _cold_power(job: JobTotal, phases: Phases, who: str) -> tuple[float | None, str]:
    window = "settled pad" if "pad_settled" in job.marks else "pad"
    if job.cold_idle_j is not None and phases.cold_idle_s >= MIN_COLD_IDLE_S:
        return job.cold_idle_j / phases.cold_idle_s, f"{who} {window}, {phases.cold_idle_s:.1f} s"
    if job.cold_idle_w is not None:
        return job.cold_idle_w, "stated"
    if job.cold_idle_j is None:
        return None, f"{who}: no {window} energy and no stated cold-idle power"
    return (
        None,
        f"{who}: {window} of {phases.cold_idle_s:.1f} s < {MIN_COLD_IDLE_S:g} s, no stated power",
    )


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
    if (cp.wave_s > 0) != (bp.wave_s > 0):
        raise Unavailable(
            "one of the cell's job and its baseline sent its server a warm-up wave and the "
            "other did not: their loaded times do not compare"
        )
    if cp.wave_s > 0:
        return _with_wave(cell, baseline, (cp, bp), (cold, cold_from), (base_cold, base_from))
    if not bp.loaded_s > 0:
        raise Unavailable("the baseline's timeline has no loaded seconds")
    loaded = (baseline.energy_j - base_cold * bp.cold_power_s) / bp.loaded_s
    if not (math.isfinite(loaded) and loaded >= 0):
        raise Unavailable(
            f"the baseline's loaded-idle power is {loaded:.1f} W: its job total "
            f"{baseline.energy_j:.1f} J is below its cold idle ({base_cold:.1f} W x "
            f"{bp.cold_power_s:.1f} s)"
        )
    value = cell.energy_j - cold * cp.cold_power_s - loaded * cp.loaded_s
    if not math.isfinite(value):
        raise Unavailable(f"the estimate is {value}, not a finite number")
    return Corrected(value, cp, bp, cold, cold_from, base_cold, base_from, loaded)


def _with_wave(
    cell: JobTotal,
    baseline: JobTotal,
    phases: tuple[Phases, Phases],
    cold: tuple[float, str],
    base_cold: tuple[float, str],
) -> Corrected:
    """The difference form for jobs with the same warm-up wave (module docstring)."""
    (cp, bp), (cold_w, cold_from), (base_w, base_from) = phases, cold, base_cold
    beyond_cold = baseline.energy_j - base_w * bp.cold_power_s
    if not (math.isfinite(beyond_cold) and beyond_cold >= 0):
        raise Unavailable(
            f"the baseline's job total {baseline.energy_j:.1f} J is below its cold idle "
            f"({base_w:.1f} W x {bp.cold_power_s:.1f} s)"
        )
    value = (
        cell.energy_j
        - cold_w * cp.cold_power_s
        - beyond_cold
        - cold_w * (cp.loaded_s - bp.loaded_s)
    )
    if not math.isfinite(value):
        raise Unavailable(f"the estimate is {value}, not a finite number")
    return Corrected(value, cp, bp, cold_w, cold_from, base_w, base_from, cold_w)
