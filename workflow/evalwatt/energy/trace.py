"""Energy traces: cumulative energy counters sampled over time, one series per device.

Two on-disk formats are read:

* CSV as recorded in ``shared/data/traces`` (``t_unix, energy_mj, power_mw, ...`` and an
  optional ``gpu`` column when several GPUs were sampled);
* the in-job sampler's Parquet (``evalwatt.sampling``), whose schema metadata names the source
  (``nvml``, ``rapl``, ``cpu-model``), the domain (``gpu``, ``cpu``) and whether the counter is
  a model estimate. An estimate's counter column is ``est_energy_mj``, never ``energy_mj``.

Energy over a window is the counter difference, linearly interpolated at the window's edges.
A window edge up to ``EDGE_TOLERANCE_S`` outside the samples is extrapolated with the power at
the nearest sample (recorded in the result); further out, the window cannot be measured.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from evalwatt.errors import UserError

MEASURED_COUNTER = "energy_mj"
ESTIMATED_COUNTER = "est_energy_mj"
EDGE_TOLERANCE_S = 1.0


class TraceError(UserError):
    """A trace that cannot be read or does not cover what is asked of it."""


@dataclass(frozen=True)
class Series:
    """One device's samples, sorted by time. ``energy_mj`` is cumulative."""

    device: str
    t_unix: list[float]
    energy_mj: list[float]
    power_mw: list[float | None]

    def at(self, t: float) -> tuple[float, float]:
        """Counter value (mJ) at ``t`` and the seconds extrapolated beyond the samples."""
        ts = self.t_unix
        if ts[0] <= t <= ts[-1]:
            i = min(bisect.bisect_right(ts, t) - 1, len(ts) - 2)
            span = ts[i + 1] - ts[i]
            frac = (t - ts[i]) / span if span > 0 else 0.0
            return self.energy_mj[i] + frac * (self.energy_mj[i + 1] - self.energy_mj[i]), 0.0
        edge = 0 if t < ts[0] else len(ts) - 1
        gap = t - ts[edge]
        if abs(gap) > EDGE_TOLERANCE_S:
            where = "before the first" if gap < 0 else "after the last"
            raise TraceError(
                f"device {self.device}: t={t:.3f} is {abs(gap):.3f} s {where} sample "
                f"(tolerance {EDGE_TOLERANCE_S} s)"
            )
        return self.energy_mj[edge] + self._edge_power_mw(edge) * gap, abs(gap)

    def _edge_power_mw(self, edge: int) -> float:
        power = self.power_mw[edge]
        if power is not None:
            return power
        a, b = (0, 1) if edge == 0 else (len(self.t_unix) - 2, len(self.t_unix) - 1)
        return (self.energy_mj[b] - self.energy_mj[a]) / (self.t_unix[b] - self.t_unix[a])

    def power_integral_mj(self, start: float, end: float) -> float | None:
        """Trapezoidal integral of sampled power over the samples inside [start, end]
        (a cross-check of the counter; None without a power column)."""
        pts = [
            (t, p)
            for t, p in zip(self.t_unix, self.power_mw, strict=True)
            if start <= t <= end and p is not None
        ]
        if len(pts) < 2:
            return None
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(pts))


@dataclass(frozen=True)
class Trace:
    """All devices of one trace file, with where the numbers come from."""

    path: str
    source: str
    domain: str
    is_estimate: bool
    series: dict[str, Series]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def devices(self) -> list[str]:
        return sorted(self.series)

    def window(self, start: float, end: float) -> WindowEnergy:
        """Energy of every device between two unix times, summed."""
        if end < start:
            raise TraceError(f"window ends before it starts ({start} > {end})")
        per_device = {}
        extrapolated = 0.0
        for name, s in self.series.items():
            e0, x0 = s.at(start)
            e1, x1 = s.at(end)
            per_device[name] = (e1 - e0) / 1000.0
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
        )


@dataclass(frozen=True)
class WindowEnergy:
    """Counter energy over [start, end] (unix s), in joules, with its audit details."""

    start: float
    end: float
    energy_j: float
    per_device_j: dict[str, float]
    extrapolated_s: float
    power_integral_j: float | None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def _build(rows: list[dict[str, Any]], counter: str, device_key: str | None) -> dict[str, Series]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get(counter) is None:
            continue
        grouped[str(row[device_key]) if device_key else "0"].append(row)
    series = {}
    for device, items in grouped.items():
        items.sort(key=lambda r: float(r["t_unix"]))
        if len(items) < 2:
            raise TraceError(f"device {device}: fewer than two samples, no energy can be derived")
        series[device] = Series(
            device=device,
            t_unix=[float(r["t_unix"]) for r in items],
            energy_mj=[float(r[counter]) for r in items],
            power_mw=[None if r.get("power_mw") is None else float(r["power_mw"]) for r in items],
        )
    if not series:
        raise TraceError(f"no samples with a {counter} value")
    return series


def _read_csv(path: Path) -> Trace:
    with open(path, encoding="utf-8", newline="") as fh:
        raw = list(csv.DictReader(fh))
    if not raw or "t_unix" not in raw[0] or MEASURED_COUNTER not in raw[0]:
        raise TraceError(f"{path}: expected columns t_unix and {MEASURED_COUNTER}")
    rows: list[dict[str, Any]] = [
        {k: (None if v in ("", None) else v) for k, v in r.items()} for r in raw
    ]
    for row in rows:  # numbers, so that samples sort by time and not as text
        row["t_unix"] = float(row["t_unix"])
    device_key = "gpu" if "gpu" in raw[0] else None
    return Trace(
        path=str(path),
        source="nvml",
        domain="gpu",
        is_estimate=False,
        series=_build(rows, MEASURED_COUNTER, device_key),
        metadata={"format": "csv"},
    )


def _read_parquet(path: Path) -> Trace:
    table = pq.read_table(path)
    footer = pq.read_metadata(path).metadata or {}
    info = json.loads(footer.get(b"evalwatt.trace", b"{}").decode())
    is_estimate = bool(info.get("is_estimate", False))
    counter = ESTIMATED_COUNTER if is_estimate else MEASURED_COUNTER
    if counter not in table.column_names:
        raise TraceError(f"{path}: no {counter} column (is_estimate={is_estimate})")
    rows = table.to_pylist()
    return Trace(
        path=str(path),
        source=str(info.get("source", "unknown")),
        domain=str(info.get("domain", "gpu")),
        is_estimate=is_estimate,
        series=_build(rows, counter, "device" if "device" in table.column_names else None),
        metadata=info,
    )


def read_trace(path: Path | str) -> Trace:
    """Read a CSV or Parquet energy trace."""
    path = Path(path)
    if path.suffix == ".csv":
        return _read_csv(path)
    if path.suffix == ".parquet":
        return _read_parquet(path)
    raise TraceError(f"{path}: unknown trace format (expected .csv or .parquet)")


def read_timeline(path: Path | str) -> dict[str, float]:
    """Read phase marks (unix seconds) and counts such as ``output_tokens``."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    marks = data.get("marks", data)
    return {k: float(v) for k, v in marks.items() if isinstance(v, int | float)}
