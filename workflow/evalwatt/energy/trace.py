"""Energy traces: cumulative energy counters sampled over time, one series per device, and
the energy of a window of them. Reading the files is ``evalwatt.energy.trace_files``; a
``Trace`` here is what a file reads into: every sample has a finite time, a finite counter
that is not negative and, where there is one, a finite power that is not negative.

A counter that goes backwards (NVML's counter restarts when the driver reloads or the GPU is
reset) is not a fault of the file: the samples are what the device reported. No energy can be
derived across such a step, though. A window that spans one raises ``CounterWentBackwards``,
which the energy terms record as a null with that reason, never as a negative or guessed
number; windows elsewhere in the trace are unaffected.

A counter that *wraps* (a fixed-width register that restarts at zero after its range) is
repaired (``unwrap``), and only where that is unambiguous: the trace metadata gives the
counter's range (``counter_range_mj``, for all devices or per device) and the energy implied by
the wrap, ``range - before + after``, fits in the interval at no more than the device's power
cap (its ``power_limit_mw`` from the metadata, else twice the highest power seen around the
step). Each repair is listed in ``Trace.repairs``. Any other backward step stays a reset
(above). NVML's counter is 64 bits of mJ and never wraps; the sampler unwraps RAPL at every
read.

Every device's samples are accounted for. A device whose counter is empty in *every* row (a
counter that could not be read at all), and a device that the sampler's metadata lists
(``devices`` for NVML, ``zones`` for RAPL) but that has no row, is kept in ``Trace.missing``
with the reason; every window of that trace raises ``DeviceMissing`` (a null with the reason),
never a sum over the devices that remain.

Samples must be close enough together. A window that overlaps an interval between two
consecutive samples of a device longer than ``Trace.max_gap_s`` raises ``SampleGap``: at a
window edge the interpolated counter can be off by up to ``gap x (P_high - P_low) / 4``, and
inside a window a reset could hide in the gap. The limit is ``max(1 s, 10 x interval)``, the
interval taken from the trace metadata (``interval_s``, written by the sampler) or, when the
metadata has none (CSV), the median spacing of the samples.

Energy over a window is the counter difference, linearly interpolated at the window's edges.
A window edge up to ``EDGE_TOLERANCE_S`` outside the samples is extrapolated with the power at
the nearest sample (recorded in the result); further out, the window cannot be measured.
Every ``WindowEnergy`` is finite and not negative.

A thinned counter. The sampler may read the counter every few rounds only and power every
round (its metadata says ``counter_every_rounds`` > 1; the rows between have a null counter and
a power). Such a series keeps the counter reads in ``t_unix``/``energy_mj`` and every row in
``row_t_unix``/``row_power_mw``. An edge t between two counter reads (t0, E0) and (t1, E1) is
placed with power: E0 + (E1 - E0) x (integral of P over t0..t) / (integral of P over t0..t1),
by trapezoids over the power samples, so the counter fixes the energy and power only says where
in the interval it was spent. Without power at both reads, or with a power integral that is
not positive, the edge falls back to the time fraction; ``WindowEnergy.edge_method`` says which
(``counter``: every row a counter read, as before; ``power``; ``time``). The gap limit applies
to the counter reads with the counter's own interval (``interval_s x counter_every_rounds``,
``Trace.counter_gap_s``) and to the power samples across an edge placed by power, with the
sampling interval (``Trace.max_gap_s``). A null counter in a trace whose metadata does not
declare ``counter_every_rounds`` > 1 (CSV included) stays a fault of the file.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

from evalwatt.base.errors import UserError

EDGE_TOLERANCE_S = 1.0
# Longest interval between two samples a window may overlap: max(MIN_GAP_LIMIT_S,
# GAP_LIMIT_INTERVALS x the sampling interval). See the module docstring and docs/methodology.md.
MIN_GAP_LIMIT_S = 1.0
GAP_LIMIT_INTERVALS = 10
# Power cap assumed for a wrap repair when the metadata gives none: this many times the highest
# power seen around the step.
WRAP_POWER_MARGIN = 2.0
# Metadata key: rounds between counter reads (power every round); absent means 1.
COUNTER_EVERY = "counter_every_rounds"
EdgeMethod = Literal["counter", "power", "time"]
_EDGE_RANK = {"counter": 0, "power": 1, "time": 2}


class TraceError(UserError):
    """A trace or timeline that cannot be read or does not cover what is asked of it."""


class CounterWentBackwards(TraceError):
    """A window spans a step where the counter decreased: its energy cannot be derived."""


class SampleGap(TraceError):
    """A window overlaps an interval between samples longer than the trace's gap limit."""


class DeviceMissing(TraceError):
    """A device of the trace has no usable samples: no window can be summed over devices."""


@dataclass(frozen=True)
class Series:
    """One device's samples, sorted by time. ``energy_mj`` is cumulative; ``t_unix``,
    ``energy_mj`` and ``power_mw`` are the counter reads. A thinned counter (module docstring)
    also has every row, counter or not, in ``row_t_unix``/``row_power_mw``."""

    device: str
    t_unix: list[float]
    energy_mj: list[float]
    power_mw: list[float | None]
    row_t_unix: list[float] | None = None
    row_power_mw: list[float | None] | None = None

    @property
    def thinned(self) -> bool:
        """Rows without a counter read lie between the counter reads."""
        return self.row_t_unix is not None and len(self.row_t_unix) > len(self.t_unix)

    @property
    def rows(self) -> list[float]:
        """Times of every row (the counter reads where the counter is not thinned)."""
        return self.row_t_unix if self.row_t_unix is not None else self.t_unix

    @cached_property
    def _power(self) -> tuple[list[float], list[float], list[float]]:
        """Power samples at the full rate: (times, mW, trapezoidal integral from the first, mJ)."""
        ps = self.row_power_mw if self.row_power_mw is not None else self.power_mw
        pts = [(t, p) for t, p in zip(self.rows, ps, strict=True) if p is not None]
        cum = [0.0]
        for (t0, p0), (t1, p1) in itertools.pairwise(pts):
            cum.append(cum[-1] + (t1 - t0) * (p0 + p1) / 2)
        return [t for t, _ in pts], [p for _, p in pts], cum

    def power_samples(self) -> tuple[list[float], list[float]]:
        """(times, mW) of every power sample, counter reads and rows between alike."""
        ts, ps, _ = self._power
        return ts, ps

    def _power_at(self, i: int) -> float:
        """Integral of power (mJ) from the first power sample to power sample ``i``."""
        return self._power[2][i]

    def _energy_to(self, t: float) -> float:
        """Integral of power (mJ) from the first power sample to ``t`` (inside the samples),
        power linear between samples."""
        ts, ps, cum = self._power
        i = min(bisect.bisect_right(ts, t) - 1, len(ts) - 2)
        span = ts[i + 1] - ts[i]
        p_t = ps[i] + (t - ts[i]) / span * (ps[i + 1] - ps[i]) if span > 0 else ps[i]
        return cum[i] + (t - ts[i]) * (ps[i] + p_t) / 2

    def counter_span(self, t: float) -> int | None:
        """``i`` where t lies strictly between counter reads i and i+1 of a thinned series, or
        None (t on a read, outside the reads, or a counter read every row)."""
        ts = self.t_unix
        if not self.thinned or not ts[0] < t < ts[-1]:
            return None
        i = bisect.bisect_right(ts, t) - 1
        return None if ts[i] == t else i

    def power_edge(self, i: int) -> tuple[int, int] | str:
        """Indices of the power samples at counter reads i and i+1, or why the edge between
        them cannot be placed with power."""
        ts = self.power_samples()[0]
        t0, t1 = self.t_unix[i], self.t_unix[i + 1]
        a, b = bisect.bisect_left(ts, t0), bisect.bisect_left(ts, t1)
        if a >= len(ts) or ts[a] != t0 or b >= len(ts) or ts[b] != t1:
            return f"no power at the counter reads {t0:.3f} and {t1:.3f}"
        if self._power_at(b) - self._power_at(a) <= 0:
            return f"power integral over {t0:.3f}..{t1:.3f} is not positive"
        return a, b

    def widest_power_gap(self, i: int) -> tuple[float, float, float]:
        """(seconds, from, to) of the longest interval between power samples that lies between
        counter reads i and i+1."""
        ts = self.power_samples()[0]
        lo = bisect.bisect_left(ts, self.t_unix[i])
        hi = bisect.bisect_right(ts, self.t_unix[i + 1])
        widest = (0.0, self.t_unix[i], self.t_unix[i])
        for a in range(lo, hi - 1):
            if ts[a + 1] - ts[a] > widest[0]:
                widest = (ts[a + 1] - ts[a], ts[a], ts[a + 1])
        return widest

    def outside(self, t: float) -> str | None:
        """Why ``t`` is too far outside the samples to be measured, or None."""
        ts = self.t_unix
        gap = t - ts[0] if t < ts[0] else t - ts[-1] if t > ts[-1] else 0.0
        if abs(gap) <= EDGE_TOLERANCE_S:
            return None
        where = "before the first" if gap < 0 else "after the last"
        return (
            f"device {self.device}: t={t:.3f} is {abs(gap):.3f} s {where} sample "
            f"(tolerance {EDGE_TOLERANCE_S} s)"
        )

    def at(self, t: float) -> tuple[float, float]:
        """Counter value (mJ) at ``t`` and the seconds extrapolated beyond the samples."""
        value, extrapolated, _, _ = self.locate(t)
        return value, extrapolated

    def locate(self, t: float) -> tuple[float, float, EdgeMethod, str | None]:
        """Counter value (mJ) at ``t``, the seconds extrapolated beyond the samples, how the
        value was placed between counter reads (module docstring) and, for ``time`` in a
        thinned series, why power could not place it."""
        ts = self.t_unix
        if ts[0] <= t <= ts[-1]:
            i = min(bisect.bisect_right(ts, t) - 1, len(ts) - 2)
            e0, e1 = self.energy_mj[i], self.energy_mj[i + 1]
            span = ts[i + 1] - ts[i]
            frac = (t - ts[i]) / span if span > 0 else 0.0
            if self.counter_span(t) is None:
                return e0 + frac * (e1 - e0), 0.0, "counter", None
            placed = self.power_edge(i)
            if isinstance(placed, str):
                return e0 + frac * (e1 - e0), 0.0, "time", f"device {self.device}: {placed}"
            a, b = placed
            part = self._energy_to(t) - self._power_at(a)
            return (
                e0 + part / (self._power_at(b) - self._power_at(a)) * (e1 - e0),
                0.0,
                "power",
                None,
            )
        why = self.outside(t)
        if why is not None:
            raise TraceError(why)
        edge = 0 if t < ts[0] else len(ts) - 1
        gap = t - ts[edge]
        return self.energy_mj[edge] + self._edge_power_mw(edge) * gap, abs(gap), "counter", None

    def _edge_power_mw(self, edge: int) -> float:
        power = self.power_mw[edge]
        if power is not None:
            return power
        a, b = (0, 1) if edge == 0 else (len(self.t_unix) - 2, len(self.t_unix) - 1)
        drop = self.energy_mj[a] - self.energy_mj[b]
        if drop > 0:
            raise CounterWentBackwards(_backwards(self.device, [(self.t_unix[b], drop)]))
        return (self.energy_mj[b] - self.energy_mj[a]) / (self.t_unix[b] - self.t_unix[a])

    def backward_steps(self, start: float, end: float) -> list[tuple[float, float]]:
        """(time, drop in mJ) of each counter decrease between two samples whose interval
        overlaps [start, end]: the steps an interpolation over that window would cross."""
        ts = self.t_unix
        lo = max(bisect.bisect_right(ts, start) - 1, 0)
        hi = min(bisect.bisect_left(ts, end), len(ts) - 1)
        return [
            (ts[i + 1], self.energy_mj[i] - self.energy_mj[i + 1])
            for i in range(lo, hi)
            if self.energy_mj[i + 1] < self.energy_mj[i]
        ]

    def widest_gap(self, start: float, end: float) -> tuple[float, float, float]:
        """(seconds, from, to) of the longest interval between consecutive samples that
        overlaps [start, end]; (0, start, start) when no interval does."""
        ts = self.t_unix
        lo = max(bisect.bisect_right(ts, start) - 1, 0)
        hi = min(bisect.bisect_left(ts, end), len(ts) - 1)
        if start == end and ts[0] <= start <= ts[-1]:
            hi = max(hi, lo + 1)  # a point falls inside one interval
        widest = (0.0, start, start)
        for i in range(lo, hi):
            if ts[i + 1] - ts[i] > widest[0]:
                widest = (ts[i + 1] - ts[i], ts[i], ts[i + 1])
        return widest

    def power_integral_mj(self, start: float, end: float) -> float | None:
        """Trapezoidal integral of sampled power over the power samples inside [start, end],
        at the full rate (a cross-check of the counter; None without a power column)."""
        ts = self.power_samples()[0]
        lo, hi = bisect.bisect_left(ts, start), bisect.bisect_right(ts, end)
        if hi - lo < 2:
            return None
        return self._power_at(hi - 1) - self._power_at(lo)


def _backwards(device: str, steps: list[tuple[float, float]]) -> str:
    t, drop = steps[0]
    more = f" ({len(steps)} such steps in the window)" if len(steps) > 1 else ""
    return (
        f"counter of device {device} went backwards by {drop:.0f} mJ at t={t:.3f}{more}: "
        "a counter reset (driver reload or GPU reset?); no energy can be derived across it"
    )


@dataclass(frozen=True)
class Trace:
    """All devices of one trace file, with where the numbers come from."""

    path: str
    source: str
    domain: str
    is_estimate: bool
    series: dict[str, Series]
    metadata: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    """Devices without usable samples -> why (see the module docstring)."""
    repairs: list[str] = field(default_factory=list)
    """Counter wraps repaired while reading, one line each."""

    @property
    def devices(self) -> list[str]:
        return sorted(self.series)

    @cached_property
    def interval_s(self) -> tuple[float, str]:
        """The sampling interval (s) and where it comes from."""
        value = positive(self.metadata.get("interval_s"))
        if value is not None:
            return value, "interval_s of the trace metadata"
        spacing = [b - a for s in self.series.values() for a, b in itertools.pairwise(s.rows)]
        if not spacing:
            return math.nan, "no samples"
        return statistics.median(spacing), "median spacing of the samples (no interval_s)"

    @property
    def counter_every(self) -> int:
        """Rounds between counter reads (``counter_every_rounds`` of the metadata, else 1)."""
        value = self.metadata.get(COUNTER_EVERY, 1)
        return value if isinstance(value, int) and not isinstance(value, bool) else 1

    def _gap_limit_s(self, rounds: int) -> float:
        """max(MIN_GAP_LIMIT_S, GAP_LIMIT_INTERVALS x the interval of ``rounds`` rounds)."""
        interval, _ = self.interval_s
        if not math.isfinite(interval):
            return MIN_GAP_LIMIT_S
        return max(MIN_GAP_LIMIT_S, GAP_LIMIT_INTERVALS * interval * rounds)

    @property
    def max_gap_s(self) -> float:
        """Longest interval between samples (rows; power samples across an edge of a thinned
        counter) a window may overlap."""
        return self._gap_limit_s(1)

    @property
    def counter_gap_s(self) -> float:
        """Longest interval between counter reads a window may overlap: the limit with the
        counter's own interval (``max_gap_s`` where the counter is read every row)."""
        return self._gap_limit_s(self.counter_every)

    def gap_limit_text(self) -> str:
        interval, basis = self.interval_s
        if self.counter_every == 1:
            return (
                f"limit {self.max_gap_s:g} s = max({MIN_GAP_LIMIT_S:g} s, {GAP_LIMIT_INTERVALS} "
                f"x the sampling interval {interval:.3g} s, from the {basis})"
            )
        return (
            f"counter limit {self.counter_gap_s:g} s = max({MIN_GAP_LIMIT_S:g} s, "
            f"{GAP_LIMIT_INTERVALS} x the counter's interval, {self.counter_every} x the "
            f"sampling interval {interval:.3g} s from the {basis}); power limit "
            f"{self.max_gap_s:g} s with the sampling interval"
        )

    def missing_reason(self) -> str | None:
        """Why no window of this trace can be summed over its devices, or None."""
        if not self.missing:
            return None
        listed = "; ".join(f"device {d}: {why}" for d, why in sorted(self.missing.items()))
        return (
            f"{listed}; a sum over the {len(self.series)} device(s) left would leave "
            f"{'it' if len(self.missing) == 1 else 'them'} out"
        )

    def gap_reason(self, name: str, start: float, end: float) -> str | None:
        """Why a gap between samples of device ``name`` spoils [start, end], or None."""
        series = self.series[name]
        gap, t0, t1 = series.widest_gap(start, end)
        what = "sample"
        if gap <= self.counter_gap_s:
            gap, t0, t1 = 0.0, start, start
            for edge in (start, end):  # power that places an edge between counter reads
                i = series.counter_span(edge)
                if i is not None and not isinstance(series.power_edge(i), str):
                    widest = series.widest_power_gap(i)
                    if widest[0] > gap:
                        gap, t0, t1 = widest
            if gap <= self.max_gap_s:
                return None
            what = "power sample"
        where = (
            "across the window's start"
            if t0 < start < t1
            else "across the window's end"
            if t0 < end < t1
            else "inside the window"
            if start <= t0 and t1 <= end
            else "between the counter reads around an edge of the window"
        )
        return (
            f"device {name}: no {what} for {gap:.3f} s ({t0:.3f}..{t1:.3f}) {where} "
            f"{start:.3f}..{end:.3f} ({self.gap_limit_text()}): the interpolated counter at "
            "an edge can be off by up to gap x power swing / 4, and a reset can hide in a gap"
        )

    def window(self, start: float, end: float) -> WindowEnergy:
        """Energy of every device between two unix times, summed. Raises TraceError (and
        CounterWentBackwards) rather than return a negative or non-finite energy."""
        if not (math.isfinite(start) and math.isfinite(end)):
            raise TraceError(f"window {start}..{end} is not made of finite times")
        if end < start:
            raise TraceError(f"window ends before it starts ({start} > {end})")
        missing = self.missing_reason()
        if missing is not None:
            raise DeviceMissing(missing)
        per_device = {}
        extrapolated = 0.0
        method: EdgeMethod = "counter"
        notes: list[str] = []
        for name in self.devices:
            s = self.series[name]
            steps = s.backward_steps(start, end)
            if steps:
                raise CounterWentBackwards(_backwards(name, steps))
            gap = self.gap_reason(name, start, end)
            if gap is not None:
                raise SampleGap(gap)
            e0, x0, m0, n0 = s.locate(start)
            e1, x1, m1, n1 = s.locate(end)
            for m in (m0, m1):
                method = m if _EDGE_RANK[m] > _EDGE_RANK[method] else method
            notes += [n for n in (n0, n1) if n is not None]
            joules = (e1 - e0) / 1000.0
            if not math.isfinite(joules) or joules < 0:
                raise TraceError(
                    f"device {name}: the counter gives {joules} J over {start:.3f}..{end:.3f}, "
                    "not a finite energy of zero or more"
                )
            per_device[name] = joules
            extrapolated = max(extrapolated, x0, x1)
        integrals = [s.power_integral_mj(start, end) for s in self.series.values()]
        power_j = None if None in integrals else sum(i for i in integrals if i) / 1000.0
        return WindowEnergy(
            start=start,
            end=end,
            energy_j=sum(per_device.values()),
            per_device_j=per_device,
            extrapolated_s=extrapolated,
            power_integral_j=power_j,
            edge_method=method,
            edge_note="; ".join(notes) or None,
        )

    def inner_counter_j(self, start: float, end: float) -> float | None:
        """Counter difference between the first and last samples inside [start, end], summed
        over devices (no interpolation); None when a device has fewer than two samples there
        or its counter went backwards there, or a device has no samples at all."""
        if self.missing:
            return None
        total = 0.0
        for s in self.series.values():
            lo, hi = bisect.bisect_left(s.t_unix, start), bisect.bisect_right(s.t_unix, end)
            inside = s.energy_mj[lo:hi]
            if len(inside) < 2 or any(b < a for a, b in itertools.pairwise(inside)):
                return None
            total += (inside[-1] - inside[0]) / 1000.0
        return total


@dataclass(frozen=True)
class WindowEnergy:
    """Counter energy over [start, end] (unix s), in joules, with its audit details."""

    start: float
    end: float
    energy_j: float
    per_device_j: dict[str, float]
    extrapolated_s: float
    power_integral_j: float | None
    edge_method: EdgeMethod = "counter"
    """How the edges were placed between counter reads: ``counter`` (every row a counter read,
    linear in time between reads), ``power`` (a thinned counter, by the power integral) or
    ``time`` (a thinned counter, by the time fraction: ``edge_note`` says why)."""
    edge_note: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def positive(value: Any) -> float | None:
    """``value`` as a float when it is a finite number above zero (a metadata entry), else None."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value > 0 else None


def unwrap(
    series: Series, range_mj: float | None, cap_mw: float | None
) -> tuple[Series, list[str]]:
    """Repair the counter's wraps where unambiguous (module docstring); other backward steps
    are left as they are (a reset: windows across it are nulls)."""
    if range_mj is None:
        return series, []
    ts, es, ps = series.t_unix, series.energy_mj, series.power_mw
    out = [es[0]]
    offset = 0.0
    repairs = []
    for i in range(1, len(es)):
        if es[i] < es[i - 1]:
            dt = ts[i] - ts[i - 1]
            implied = range_mj - es[i - 1] + es[i]
            cap = cap_mw
            if cap is None:
                seen = [p for p in (ps[i - 1], ps[i]) if p is not None]
                for a in (i - 2, i):  # slopes of the neighbouring intervals
                    if a >= 0 and a + 1 < len(es) and es[a + 1] >= es[a] and ts[a + 1] > ts[a]:
                        seen.append((es[a + 1] - es[a]) / (ts[a + 1] - ts[a]))  # mJ/s = mW
                cap = WRAP_POWER_MARGIN * max(seen) if seen else None
            if cap is not None and 0 <= implied <= cap * dt:  # mW x s = mJ
                offset += range_mj
                repairs.append(
                    f"device {series.device}: counter wrapped at t={ts[i]:.3f} (range "
                    f"{range_mj:.0f} mJ, {es[i - 1]:.0f} -> {es[i]:.0f} mJ; {implied:.0f} mJ "
                    f"in {dt:.3f} s, at most {cap / 1000:.0f} W): unwrapped"
                )
        out.append(es[i] + offset)
    return replace(series, energy_mj=out), repairs
