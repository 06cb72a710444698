"""Energy traces: cumulative energy counters sampled over time, one series per device.

Two on-disk formats are read:

* CSV as recorded in ``shared/data/traces`` (``t_unix, energy_mj, power_mw, ...`` and an
  optional ``gpu`` column when several GPUs were sampled). The format carries no metadata: a
  CSV trace is taken to be NVML's measured GPU counter, the only thing recorded in it;
* the in-job sampler's Parquet (``evalwatt.sampling``), whose footer metadata
  (``evalwatt.trace``) names the source (``nvml``, ``rapl``, ``cpu-model``), the domain
  (``gpu``, ``cpu``) and whether the counter is a model estimate. An estimate's counter column
  is ``est_energy_mj``, never ``energy_mj``. A Parquet file without that footer is refused:
  nothing in it says whether its numbers are a measured GPU counter, and guessing would put a
  model's estimate or a foreign table in the measured columns.

Reading is strict. A file either reads into series in which every sample has a finite time, a
finite counter that is not negative and, where there is one, a finite power that is not
negative, or it is refused with a ``TraceError`` naming the file, the line (CSV) or row
(Parquet), the column and the bad value. Nothing is skipped silently. In particular:

* a CSV whose last line has no line end was cut while being written, and the cut can leave a
  partial number that still parses (``2214`` for ``22145182``): the file is refused, naming
  that line (delete the line to use the samples before it), never read as if complete;
* a row with fewer or more fields than the header, an empty, non-numeric, NaN or infinite
  value, or a second sample of one device at the same time is refused;
* rows are sorted by time (a CSV of several GPUs interleaves them); the counter check below
  runs on the sorted samples, so a clock that stepped back cannot hide behind the sort.

A counter that goes backwards (NVML's counter restarts when the driver reloads or the GPU is
reset) is not a fault of the file: the samples are what the device reported. No energy can be
derived across such a step, though. A window that spans one raises ``CounterWentBackwards``,
which the energy terms record as a null with that reason, never as a negative or guessed
number; windows elsewhere in the trace are unaffected.

A counter that *wraps* (a fixed-width register that restarts at zero after its range) is
repaired, and only where that is unambiguous: the trace metadata gives the counter's range
(``counter_range_mj``, for all devices or per device) and the energy implied by the wrap,
``range - before + after``, fits in the interval at no more than the device's power cap (its
``power_limit_mw`` from the metadata, else twice the highest power seen around the step). Each
repair is listed in ``Trace.repairs``. Any other backward step stays a reset (above). NVML's
counter is 64 bits of mJ and never wraps; the sampler unwraps RAPL at every read.

Every device's samples are accounted for. A device whose counter is empty in *every* row (a
counter that could not be read at all), and a device that the sampler's metadata lists
(``devices`` for NVML, ``zones`` for RAPL) but that has no row, is kept in ``Trace.missing``
with the reason; every window of that trace raises ``DeviceMissing`` (a null with the reason),
never a sum over the devices that remain. A counter empty in some rows only is a fault of the
file (refused, as above).

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
import csv
import io
import itertools
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from evalwatt.base.errors import UserError

MEASURED_COUNTER = "energy_mj"
ESTIMATED_COUNTER = "est_energy_mj"
TIME = "t_unix"
POWER = "power_mw"
CSV_DEVICE = "gpu"
PARQUET_DEVICE = "device"
FOOTER_KEY = b"evalwatt.trace"
DOMAINS = ("gpu", "cpu")
EDGE_TOLERANCE_S = 1.0
# Longest interval between two samples a window may overlap: max(MIN_GAP_LIMIT_S,
# GAP_LIMIT_INTERVALS x the sampling interval). See the module docstring and docs/methodology.md.
MIN_GAP_LIMIT_S = 1.0
GAP_LIMIT_INTERVALS = 10
# Power cap assumed for a wrap repair when the metadata gives none: this many times the highest
# power seen around the step.
WRAP_POWER_MARGIN = 2.0
# Counts a timeline may carry besides its marks (whole numbers, not times).
COUNTS = ("output_tokens",)
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
        value = self.metadata.get("interval_s")
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        ):
            return float(value), "interval_s of the trace metadata"
        spacing = [b - a for s in self.series.values() for a, b in itertools.pairwise(s.rows)]
        if not spacing:
            return math.nan, "no samples"
        return statistics.median(spacing), "median spacing of the samples (no interval_s)"

    @property
    def counter_every(self) -> int:
        """Rounds between counter reads (``counter_every_rounds`` of the metadata, else 1)."""
        value = self.metadata.get(COUNTER_EVERY, 1)
        return value if isinstance(value, int) and not isinstance(value, bool) else 1

    @property
    def max_gap_s(self) -> float:
        """Longest interval between samples (rows; power samples across an edge of a thinned
        counter) a window may overlap."""
        interval, _ = self.interval_s
        if not math.isfinite(interval):
            return MIN_GAP_LIMIT_S
        return max(MIN_GAP_LIMIT_S, GAP_LIMIT_INTERVALS * interval)

    @property
    def counter_gap_s(self) -> float:
        """Longest interval between counter reads a window may overlap: the limit with the
        counter's own interval (``max_gap_s`` where the counter is read every row)."""
        interval, _ = self.interval_s
        if not math.isfinite(interval):
            return MIN_GAP_LIMIT_S
        return max(MIN_GAP_LIMIT_S, GAP_LIMIT_INTERVALS * interval * self.counter_every)

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


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    where: str  # "path:line" (CSV) or "path: row N" (Parquet), for messages
    at: str  # "line N" or "row N"
    device: str
    t: float
    energy: float | None  # None: a row between the reads of a thinned counter
    power: float | None


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any, where: str, column: str) -> float:
    """A finite number from a CSV field or a Parquet cell, or a TraceError saying why not."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TraceError(f"{where}: {column} is empty")
    if isinstance(value, bool):
        raise TraceError(f"{where}: {column} is {value}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise TraceError(f"{where}: {column} is {_show(value)}, not a number") from None
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise TraceError(f"{where}: {column} is {_show(value)}, not a finite number")
    return number


def _sample(
    where: str,
    at: str,
    *,
    device: Any,
    t: Any,
    energy: Any,
    power: Any,
    counter: str,
    device_key: str,
    thinned: bool = False,
) -> _Sample:
    """One checked sample: a device, a finite time, a counter >= 0 (or, in a ``thinned``
    counter, none), a power >= 0 or None."""
    if device is None or not str(device).strip():
        raise TraceError(f"{where}: {device_key} (the device of the sample) is empty")
    if thinned and energy is None:
        return _Sample(where, at, str(device), _number(t, where, TIME), None, _power(power, where))
    e = _number(energy, where, counter)
    if e < 0:
        raise TraceError(
            f"{where}: {counter} is {_show(energy)}; an energy counter is never negative"
        )
    return _Sample(where, at, str(device), _number(t, where, TIME), e, _power(power, where))


def _power(power: Any, where: str) -> float | None:
    if power is None or (isinstance(power, str) and not power.strip()):
        return None
    p = _number(power, where, POWER)
    if p < 0:
        raise TraceError(f"{where}: {POWER} is {_show(power)}; a power is never negative")
    return p


def _empty_counters(rows: list[tuple[Any, Any]]) -> dict[str, int]:
    """Devices whose counter is empty in every one of their rows -> their row count.
    ``rows`` are (device, counter) as read; a device that is itself empty is left to
    ``_sample`` to refuse."""
    empty: dict[str, bool] = {}
    count: dict[str, int] = defaultdict(int)
    for device, energy in rows:
        if device is None or not str(device).strip():
            continue
        key = str(device)
        blank = energy is None or (isinstance(energy, str) and not energy.strip())
        empty[key] = empty.get(key, True) and blank
        count[key] += 1
    return {d: count[d] for d, all_blank in empty.items() if all_blank}


def _missing(
    path: Path, counter: str, empty: dict[str, int], samples: list[_Sample]
) -> dict[str, str]:
    """Why each device with an empty counter is missing; a TraceError when none is left."""
    missing = {
        d: f"its counter ({counter}) is empty in all {n} of its rows: it could not be read"
        for d, n in sorted(empty.items())
    }
    if missing and not samples:
        raise TraceError(
            f"{path}: the counter ({counter}) is empty in every row of every device "
            f"({', '.join(sorted(missing))}): nothing was measured"
        )
    return missing


def _listed_devices(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Devices the sampler's metadata says it opened (NVML ``devices``, RAPL ``zones``), by
    the name their rows carry in the ``device`` column."""
    listed: dict[str, dict[str, Any]] = {}
    devices = info.get("devices")
    if isinstance(devices, list):
        for entry in devices:
            if isinstance(entry, dict) and "nvml_index" in entry:
                listed[str(entry["nvml_index"])] = entry
    zones = info.get("zones")
    if isinstance(zones, list):
        for zone in zones:
            if isinstance(zone, str):
                listed[zone] = {}
    return listed


def _positive(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value > 0 else None


def _unwrap(
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


def _build(path: Path, samples: list[_Sample], counter_every: int = 1) -> dict[str, Series]:
    if not samples:
        raise TraceError(f"{path}: no samples, only a header")
    grouped: dict[str, list[_Sample]] = defaultdict(list)
    for sample in samples:
        grouped[sample.device].append(sample)
    series = {}
    for device, items in sorted(grouped.items()):
        items.sort(key=lambda s: s.t)  # stable: equal times keep their order in the file
        for a, b in itertools.pairwise(items):
            if a.t == b.t:
                raise TraceError(
                    f"{b.where}: {TIME} {b.t!r} repeats the time of {a.at} for device {device}"
                )
        reads = [s for s in items if s.energy is not None]
        if len(reads) < 2:
            what = "samples" if len(reads) == len(items) else "counter reads"
            raise TraceError(
                f"{path}: device {device}: fewer than two {what}, no energy can be derived"
            )
        series[device] = Series(
            device=device,
            t_unix=[s.t for s in reads],
            energy_mj=[s.energy for s in reads if s.energy is not None],
            power_mw=[s.power for s in reads],
            row_t_unix=[s.t for s in items] if counter_every > 1 else None,
            row_power_mw=[s.power for s in items] if counter_every > 1 else None,
        )
    return series


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise TraceError(f"{path}: no such {what} file")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, not a {what} file")


def _read_text(path: Path, what: str) -> str:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:  # a BOM is not data
            return fh.read()
    except UnicodeDecodeError as exc:
        raise TraceError(
            f"{path}: not a UTF-8 text {what} (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start})"
        ) from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def _read_csv(path: Path) -> Trace:
    text = _read_text(path, "CSV trace")
    if not text.strip():
        raise TraceError(
            f"{path}: empty file, expected a header with {TIME} and {MEASURED_COUNTER}"
        )
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        header = next(reader)
        records = [(reader.line_num, record) for record in reader]
    except csv.Error as exc:
        raise TraceError(f"{path}:{reader.line_num}: not CSV ({exc})") from None
    doubled = sorted({c for c in header if header.count(c) > 1})
    if doubled:
        raise TraceError(f"{path}:1: column {doubled[0]} appears twice in the header")
    for column in (TIME, MEASURED_COUNTER):
        if column not in header:
            raise TraceError(
                f"{path}:1: no {column} column (header: {_show(','.join(header), 80)})"
            )
    records = [(line, record) for line, record in records if record]  # blank lines
    if records and not text.endswith(("\n", "\r")):
        line, record = records[-1]
        raise TraceError(
            f"{path}:{line}: the last line has no line end, so the file was cut while being "
            f"written ({_show(','.join(record))}); delete that line to use the samples before it"
        )
    col = {
        name: header.index(name)
        for name in (TIME, MEASURED_COUNTER, POWER, CSV_DEVICE)
        if name in header
    }
    for line, record in records:
        if len(record) != len(header):
            raise TraceError(
                f"{path}:{line}: {len(record)} fields where the header has {len(header)} "
                f"({_show(','.join(record))})"
            )
    empty = _empty_counters(
        [
            (record[col[CSV_DEVICE]] if CSV_DEVICE in col else "0", record[col[MEASURED_COUNTER]])
            for _, record in records
        ]
    )
    samples = []
    for line, record in records:
        where = f"{path}:{line}"
        if (record[col[CSV_DEVICE]] if CSV_DEVICE in col else "0") in empty:
            continue
        samples.append(
            _sample(
                where,
                f"line {line}",
                device=record[col[CSV_DEVICE]] if CSV_DEVICE in col else "0",
                t=record[col[TIME]],
                energy=record[col[MEASURED_COUNTER]],
                power=record[col[POWER]] if POWER in col else None,
                counter=MEASURED_COUNTER,
                device_key=CSV_DEVICE,
            )
        )
    missing = _missing(path, MEASURED_COUNTER, empty, samples)
    return Trace(
        path=str(path),
        source="nvml",
        domain="gpu",
        is_estimate=False,
        series=_build(path, samples),
        metadata={"format": "csv"},
        missing=missing,
    )


def _footer(path: Path, footer: dict[bytes, bytes]) -> dict[str, Any]:
    """The sampler's metadata from a Parquet footer, checked."""
    name = FOOTER_KEY.decode()
    raw = footer.get(FOOTER_KEY)
    if raw is None:
        raise TraceError(
            f"{path}: no {name} metadata in the Parquet footer, so nothing says what its numbers "
            "measure (source, domain, is_estimate); only traces written by evalwatt's sampler "
            "are read"
        )
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TraceError(f"{path}: footer metadata {name} is not JSON ({exc})") from None
    if not isinstance(info, dict):
        raise TraceError(f"{path}: footer metadata {name} is {_show(info)}, not a JSON object")
    source, domain, is_estimate = info.get("source"), info.get("domain"), info.get("is_estimate")
    if not isinstance(source, str) or not source.strip():
        raise TraceError(
            f"{path}: footer metadata {name}: source is {_show(source)}, expected a name"
        )
    if domain not in DOMAINS:
        raise TraceError(
            f"{path}: footer metadata {name}: domain is {_show(domain)}, expected one of "
            f"{', '.join(DOMAINS)}"
        )
    if not isinstance(is_estimate, bool):
        raise TraceError(
            f"{path}: footer metadata {name}: is_estimate is {_show(is_estimate)}, expected "
            "true or false"
        )
    return info


def _read_parquet(path: Path) -> Trace:
    try:
        pf = pq.ParquetFile(path)
        footer = pf.metadata.metadata or {}
        table = pf.read()
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TraceError(f"{path}: not a readable Parquet file ({reason})") from None
    info = _footer(path, footer)
    counter_every = info.get(COUNTER_EVERY, 1)
    if isinstance(counter_every, bool) or not isinstance(counter_every, int) or counter_every < 1:
        raise TraceError(
            f"{path}: footer metadata {FOOTER_KEY.decode()}: {COUNTER_EVERY} is "
            f"{_show(counter_every)}, expected a whole number >= 1"
        )
    if table.num_rows == 0:
        raise TraceError(f"{path}: no rows, so no samples")
    is_estimate = bool(info["is_estimate"])
    counter = ESTIMATED_COUNTER if is_estimate else MEASURED_COUNTER
    for column in (TIME, counter):
        if column not in table.column_names:
            raise TraceError(f"{path}: no {column} column (is_estimate={is_estimate})")
    for column in (TIME, counter, POWER):
        if column in table.column_names:
            kind = table.schema.field(column).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                raise TraceError(f"{path}: column {column} holds {kind}, expected numbers")
    wanted = [c for c in (TIME, counter, POWER, PARQUET_DEVICE) if c in table.column_names]
    rows = table.select(wanted).to_pylist()
    empty = _empty_counters([(row.get(PARQUET_DEVICE, "0"), row[counter]) for row in rows])
    samples = [
        _sample(
            f"{path}: row {i}",
            f"row {i}",
            device=row.get(PARQUET_DEVICE, "0"),
            t=row[TIME],
            energy=row[counter],
            power=row.get(POWER),
            counter=counter,
            device_key=PARQUET_DEVICE,
            thinned=counter_every > 1,
        )
        for i, row in enumerate(rows, start=1)
        if str(row.get(PARQUET_DEVICE, "0")) not in empty
    ]
    missing = _missing(path, counter, empty, samples)
    series = _build(path, samples, counter_every)
    listed = _listed_devices(info)
    for device, entry in listed.items():
        if device not in series and device not in missing:
            uuid = f" ({entry['uuid']})" if entry.get("uuid") else ""
            missing[device] = f"listed in the trace metadata{uuid} but no row has it"
    repairs: list[str] = []
    for device in list(series):
        entry = listed.get(device, {})
        range_mj = _positive(entry.get("counter_range_mj", info.get("counter_range_mj")))
        series[device], fixed = _unwrap(
            series[device], range_mj, _positive(entry.get("power_limit_mw"))
        )
        repairs += fixed
    return Trace(
        path=str(path),
        source=str(info["source"]),
        domain=str(info["domain"]),
        is_estimate=is_estimate,
        series=series,
        metadata=info,
        missing=missing,
        repairs=repairs,
    )


def read_trace(path: Path | str) -> Trace:
    """Read a CSV or Parquet energy trace; any fault is a TraceError naming the file."""
    path = Path(path)
    _check_file(path, "trace")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise TraceError(f"{path}: unknown trace format (expected .csv or .parquet)")


def _no_repeats(path: Path) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise TraceError(f"{path}: mark {repeated[0]} appears twice")
        return dict(items)

    return pairs


def read_timeline(path: Path | str) -> dict[str, float]:
    """Read phase marks (unix seconds) and counts such as ``output_tokens``.

    The file is a JSON object of marks, flat or under a ``marks`` key (as the job runtime writes
    it). Every value must be a finite number, and a count (``COUNTS``) a whole number of zero
    or more; anything else is a TraceError naming the file, the mark and the value, never
    skipped (a mark written as a string would otherwise just vanish)."""
    path = Path(path)
    _check_file(path, "timeline")
    text = _read_text(path, "timeline")
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats(path))
    except json.JSONDecodeError as exc:
        raise TraceError(
            f"{path}:{exc.lineno}: not JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise TraceError(
            f"{path}: expected a JSON object of marks, got {type(data).__name__} {_show(data)}"
        )
    marks = data.get("marks", data)
    if not isinstance(marks, dict):
        raise TraceError(f"{path}: marks is {_show(marks)}, expected a JSON object of marks")
    out = {}
    for key, value in marks.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TraceError(
                f"{path}: mark {key} is {_show(value)}, expected a number (unix seconds)"
            )
        number = _number(value, str(path), f"mark {key}")
        if key in COUNTS and (number < 0 or not number.is_integer()):
            raise TraceError(f"{path}: {key} is {_show(value)}, expected a whole number >= 0")
        out[key] = number
    return out
