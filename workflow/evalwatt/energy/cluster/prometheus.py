"""Prometheus: a job's power (or energy counter) series, and the energy of any window of it.

Series (``accounting.prometheus.series``):

* ``ceems``: ``uuid:ceems_gpu_power_watts:pue{uuid="<job id>"}``, one series per GPU of the
  job (W, the site's PUE multiplied in), and ``uuid:ceems_host_power_watts:pue`` (the node's
  power minus its GPUs', split among jobs by a model: 90 % by CPU time, 10 % evenly);
* ``dcgm-power``: ``DCGM_FI_DEV_POWER_USAGE`` (W) of the job's GPUs, selected by node
  (``host_label``) and GPU UUID (``gpu_label``, the UUIDs the in-job sampler recorded);
* ``dcgm-energy``: ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ since the driver loaded), the
  same GPUs, where the site exports the counter.

The query is a range-vector selector (``series[<R>s]`` at ``time = job_end + margin``): it
returns the raw samples with their own timestamps. A ``query_range`` would resample them on
its step and repeat a stale value for up to 5 minutes (Prometheus's lookback), which hides
scrape gaps; the raw samples show them.

Window energy, per series, summed over the job's GPUs:

* **power** (W): the integral of the samples joined by straight lines (trapezoids). CEEMS's
  own kWh is a left sum (``sum_over_time(power) x scrape``); the trapezoid is the better
  estimate of the same samples and equal to it on a constant power.
* **counter** (mJ): the counter interpolated at the window's edges, as for the in-job trace.
* **edges**: a window edge up to one scrape interval outside a series' samples (the first
  scrape of a job can come up to one interval after it starts) is extrapolated with the
  nearest sample (power) or the nearest slope (counter); the seconds are recorded. Further
  out, the window is null with the reason.
* **scrape gaps**: the interval is the median spacing of the series' samples. A window that
  overlaps an interval between two samples longer than ``GAP_FACTOR`` (2.5) x that interval
  (two scrapes missed in a row) is null with the gap in the reason; one missed scrape is
  interpolated over.
* **counter resets**: a counter that decreases inside a window (driver reload, GPU reset,
  exporter restart) makes it null with the reason, never a negative or guessed energy.
  Power series have no resets. A NaN sample (a failed read) is dropped, which may open a gap.
* a window with fewer series than the job's GPUs is null (a GPU left out is not a zero).
* PUE: the CEEMS series include it; their energies are divided by ``accounting.pue`` where
  it is known (null with the reason where it is not; the as-reported figure is kept).
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
import statistics
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from evalwatt.contracts.accounting import AccountingFile
from evalwatt.energy.cluster.collection import AccountingError, Collection, Transient
from evalwatt.energy.cluster.http import Http, decode_json
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts, Reading
from evalwatt.energy.sources import TimelineSource, Unavailable
from evalwatt.energy.trace import WindowEnergy

SOURCE: Final = "prometheus"
QUERY_PATH = "/api/v1/query"
GAP_FACTOR = 2.5
CEEMS_GPU = "uuid:ceems_gpu_power_watts:pue"
CEEMS_HOST = "uuid:ceems_host_power_watts:pue"
DCGM_POWER = "DCGM_FI_DEV_POWER_USAGE"
DCGM_ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
# Per series kind: (metric, what it measures, unit, includes the PUE).
KINDS = {
    "ceems": (CEEMS_GPU, "power", "W", True),
    "ceems-host": (CEEMS_HOST, "power", "W", True),
    "dcgm-power": (DCGM_POWER, "power", "W", False),
    "dcgm-energy": (DCGM_ENERGY, "counter", "mJ", False),
}
# Labels that tell one GPU's series from another's, by series kind.
DEVICE_LABELS = ("gpuuuid", "UUID", "uuid_gpu", "index", "gpu", "device")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# --- integration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    """One series' raw samples, sorted by time; ``values`` in the series' unit."""

    label: str
    times: list[float]
    values: list[float]

    @property
    def interval_s(self) -> float:
        return statistics.median(b - a for a, b in itertools.pairwise(self.times))

    def _check(self, start: float, end: float, kind: str) -> float:
        """The seconds of the window outside the samples; Unavailable when it cannot be
        measured (too few samples, an edge too far out, a scrape gap)."""
        if len(self.times) < 2:
            raise Unavailable(f"series {self.label}: {len(self.times)} sample(s), too few")
        step = self.interval_s
        t0, t1 = self.times[0], self.times[-1]
        for t, gap, where in ((start, t0 - start, "starts"), (end, end - t1, "ends")):
            if gap > step:
                raise Unavailable(
                    f"series {self.label}: the window {where} at {t:.3f}, {gap:.1f} s outside "
                    f"its samples ({t0:.3f}..{t1:.3f}; tolerance one scrape interval, "
                    f"{step:.3g} s)"
                )
        limit = GAP_FACTOR * step
        lo = max(bisect.bisect_right(self.times, start) - 1, 0)
        hi = min(bisect.bisect_left(self.times, end), len(self.times) - 1)
        for i in range(lo, hi):
            a, b = self.times[i], self.times[i + 1]
            if b - a > limit and a < end and b > start:
                raise Unavailable(
                    f"series {self.label}: no sample for {b - a:.1f} s ({a:.3f}..{b:.3f}) "
                    f"in the window {start:.3f}..{end:.3f} (limit {GAP_FACTOR:g} x the scrape "
                    f"interval {step:.3g} s = {limit:.3g} s)"
                )
        if kind == "counter":
            for i in range(lo, hi):
                if self.values[i + 1] < self.values[i]:
                    raise Unavailable(
                        f"series {self.label}: the counter went back by "
                        f"{self.values[i] - self.values[i + 1]:.0f} at {self.times[i + 1]:.3f}"
                        ": a counter reset (driver reload, GPU reset, exporter restart); no "
                        "energy can be derived across it"
                    )
        return max(t0 - start, end - t1, 0.0)

    def _at(self, t: float) -> float:
        ts, vs = self.times, self.values
        i = min(max(bisect.bisect_right(ts, t) - 1, 0), len(ts) - 2)
        return vs[i] + (vs[i + 1] - vs[i]) * (t - ts[i]) / (ts[i + 1] - ts[i])

    def power_joules(self, start: float, end: float) -> tuple[float, float]:
        """(J, seconds extrapolated) of a power series (W) over [start, end]."""
        outside = self._check(start, end, "power")
        ts, ws = self.times, self.values
        total = 0.0
        if start < ts[0]:
            total += (min(end, ts[0]) - start) * ws[0]
        if end > ts[-1]:
            total += (end - max(start, ts[-1])) * ws[-1]
        for i in range(len(ts) - 1):
            a, b = max(start, ts[i]), min(end, ts[i + 1])
            if a < b:
                total += (b - a) * (self._at(a) + self._at(b)) / 2
        return total, outside

    def counter_joules(self, start: float, end: float) -> tuple[float, float]:
        """(J, seconds extrapolated) of an energy counter (mJ) over [start, end]."""
        outside = self._check(start, end, "counter")
        ts, es = self.times, self.values

        def value(t: float) -> float:
            if t < ts[0]:
                return es[0] - (ts[0] - t) * (es[1] - es[0]) / (ts[1] - ts[0])
            if t > ts[-1]:
                return es[-1] + (t - ts[-1]) * (es[-1] - es[-2]) / (ts[-1] - ts[-2])
            return self._at(t)

        return (value(end) - value(start)) / 1000.0, outside


def series_energy(
    series: Sequence[Samples], kind: str, start: float, end: float
) -> tuple[float, dict[str, float], float]:
    """(J, J per series, seconds extrapolated) summed over the series; Unavailable when one
    cannot be measured."""
    per: dict[str, float] = {}
    outside = 0.0
    for s in series:
        joules, out = (
            s.counter_joules(start, end) if kind == "counter" else s.power_joules(start, end)
        )
        per[s.label] = joules
        outside = max(outside, out)
    return sum(per.values()), per, outside


# --- collecting -------------------------------------------------------------------------------


def queries(settings: Settings, job: JobFacts) -> dict[str, str]:
    """The PromQL selectors of the job's series, by kind (``KINDS``), without the range."""
    prom = settings.prometheus
    series = prom.series
    if series == "ceems":
        if not job.scheduler_job_id:
            raise Unavailable("the job ran outside Slurm: CEEMS's per-job series need a job id")
        uuid = _quote(job.scheduler_job_id)
        return {
            "ceems": f'{CEEMS_GPU}{{uuid="{uuid}"}}',
            "ceems-host": f'{CEEMS_HOST}{{uuid="{uuid}"}}',
        }
    if not job.gpu_uuids:
        raise Unavailable(
            "the in-job sampler recorded no GPU UUIDs: the job's DCGM series cannot be told "
            "from its neighbours'"
        )
    gpus = "|".join(re.escape(u) for u in job.gpu_uuids)
    selector = f'{{{prom.host_label}="{_quote(job.host)}",{prom.gpu_label}=~"{_quote(gpus)}"}}'
    metric = KINDS[series][0]
    return {series: metric + selector}


def _parse_matrix(reply: Any, what: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    if not isinstance(reply, dict) or reply.get("status") != "success":
        error = reply.get("error") if isinstance(reply, dict) else reply
        raise AccountingError(f"{what}: Prometheus answered {str(error)[:160]!r}")
    data = reply.get("data") or {}
    if data.get("resultType") != "matrix":
        raise AccountingError(f"{what}: result type {data.get('resultType')!r}, expected matrix")
    out = []
    for item in data.get("result") or []:
        points = []
        for t, v in item.get("values") or []:
            value = float(v)
            if math.isfinite(value):  # NaN: a failed read; dropping it may open a gap
                points.append((float(t), value))
        out.append((dict(item.get("metric") or {}), points))
    return out


def collect(run: Collection) -> None:
    """Query the job's series (raw samples over the job +- margin) until they cover its end
    or the deadline passes."""
    settings, job = run.settings, run.job
    selectors = queries(settings, job)
    http = Http(settings, run.log, run.clock)
    margin = settings.prometheus.margin_s
    start, end = job.span
    at = end + margin
    window = math.ceil(at - (start - margin))
    base = str(settings.prometheus.url)
    run.context.update(queries={}, time=at, range_s=window)
    for kind, selector in selectors.items():
        query = f"{selector}[{window}s]"
        run.context["queries"][kind] = query

        def attempt(query: str = query) -> None:
            reply = http.get_json(base, QUERY_PATH, [("query", query), ("time", f"{at:.3f}")], {})
            result = _parse_matrix(reply, f"query {query}")
            if not result:
                raise Transient(f"no series for {query}")
            last = min(points[-1][0] for _, points in result if points) if result else 0.0
            if last < end and run.clock() < at:
                raise Transient(f"{query}: samples end {end - last:.1f} s before job_end")

        try:
            run.wait_for(attempt)
        except AccountingError as exc:
            if kind == "ceems-host":  # the host split is a cross-check: its absence is a fact
                run.context.setdefault("missing", {})[kind] = str(exc)
                continue
            raise AccountingError(
                f"{exc} (after {settings.deadline_s:g} s, accounting.deadline_s)"
            ) from None


# --- reading ----------------------------------------------------------------------------------


def _device(metric: Mapping[str, str], index: int) -> str:
    for label in DEVICE_LABELS:
        if label in metric:
            host = metric.get("hostname") or metric.get("Hostname") or ""
            return f"{host}/{metric[label]}" if host else str(metric[label])
    return f"series{index}"


def read_series(record: AccountingFile) -> dict[str, list[Samples]]:
    """Each kind's series, from the last reply of its query (the one collection stopped on)."""
    if record.status != "ok":
        raise Unavailable(f"{SOURCE}: {record.detail}")
    out: dict[str, list[Samples]] = {}
    for kind, query in record.context.get("queries", {}).items():
        key = f"query={_urlquote(query)}&"
        replies = [x for x in record.exchanges if key in x.request]
        if not replies or replies[-1].status != 200:
            continue
        last = replies[-1]
        matrix = _parse_matrix(decode_json(last.body, last.request), f"query {query}")
        out[kind] = [
            Samples(_device(metric, i), [t for t, _ in pts], [v for _, v in pts])
            for i, (metric, pts) in enumerate(matrix)
        ]
    return out


def _urlquote(query: str) -> str:
    return urllib.parse.urlencode([("query", query)])[len("query=") :]


@dataclass(frozen=True)
class PrometheusSource(TimelineSource):
    """Window energies of the job's GPUs from its power or counter series."""

    series: Sequence[Samples]
    kind: str
    """A key of ``KINDS``."""
    pue: float | None
    gpus_expected: int | None
    marks: Mapping[str, float]
    name = SOURCE
    domain = "gpu"
    is_estimate = False

    @property
    def includes_pue(self) -> bool:
        return KINDS[self.kind][3]

    def reported(self, start: float, end: float) -> WindowEnergy:
        """The window's energy as the series give it (PUE included for CEEMS series)."""
        metric = KINDS[self.kind][0]
        if not self.series:
            raise Unavailable(f"{SOURCE}: no {metric} series for the job")
        if self.gpus_expected is not None and len(self.series) < self.gpus_expected:
            raise Unavailable(
                f"{SOURCE}: {len(self.series)} {metric} series for {self.gpus_expected} GPUs "
                "of the job: a GPU left out is not a zero"
            )
        joules, per, outside = series_energy(self.series, KINDS[self.kind][1], start, end)
        return WindowEnergy(start, end, joules, per, outside, None)

    def window(self, start: float, end: float) -> WindowEnergy:
        got = self.reported(start, end)
        if not self.includes_pue:
            return got
        if self.pue is None:
            raise Unavailable(
                f"{SOURCE}: {got.energy_j:.0f} J as reported includes the site's PUE, which "
                "accounting.pue does not give: not a GPU energy"
            )
        return WindowEnergy(
            start,
            end,
            got.energy_j / self.pue,
            {k: v / self.pue for k, v in got.per_device_j.items()},
            got.extrapolated_s,
            None,
        )


def _reported(
    source: PrometheusSource, span: tuple[float, float]
) -> tuple[float | None, str | None]:
    """The series' energy over ``span`` as reported, or None with the reason."""
    try:
        return source.reported(*span).energy_j, None
    except Unavailable as exc:
        return None, str(exc)


def read(record: AccountingFile, settings: Settings, facts: JobFacts) -> Reading:
    """The job's series in its raw file, as a source that cuts any window of the job; with
    CEEMS's series, the job's modelled share of host power besides."""
    series = read_series(record)
    kind = str(record.settings["prometheus"]["series"])
    marks = facts.marks
    source = PrometheusSource(series.get(kind, []), kind, settings.pue, facts.gpus_allocated, marks)
    reported, reported_why = _reported(source, facts.span)
    host: float | None = None
    host_why: str | None = "not a CEEMS series"
    if kind == "ceems":
        host_series = PrometheusSource(
            series.get("ceems-host", []), "ceems-host", None, None, marks
        )
        host, host_why = _reported(host_series, facts.span)
        if host is None:
            host_why = record.context.get("missing", {}).get("ceems-host") or host_why
    return Reading(
        source=source,
        span=facts.span,
        reported_j=reported,
        reported_null_reason=reported_why,
        notes=(f"series {kind}: {KINDS[kind][0]}",),
        pue=settings.pue if KINDS[kind][3] else None,
        includes_pue=KINDS[kind][3],
        host_j=host,
        host_null_reason=host_why,
    )
