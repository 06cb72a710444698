"""The CEEMS API server: a job's unit, its energy in kWh, and what that figure contains.

Facts from CEEMS's own code (ceems-dev/ceems v0.10.2), which this client follows; real CEEMS
was not run here (tests/unit/test_ceems.py uses a local server that follows this schema):

* ``GET /api/v1/units`` (admins: ``/api/v1/units/admin``), query ``cluster_id``, ``uuid``
  (the Slurm job id; when given, the server skips the time window), ``from``, ``to``. The
  code parses ``from``/``to`` as Unix seconds, its API description says milliseconds:
  ``accounting.ceems.time_unit`` picks one, and both are tested. The user name travels in a
  header (``X-Grafana-User`` by default, configurable on the server and here).
* Reply ``{"status": "success"|"error", "data": [unit...], "errorType", "error",
  "warnings"}``. A unit has ``cluster_id``, ``uuid``, ``state``, ``started_at_ts`` and
  ``ended_at_ts`` (ms), ``elapsed``, ``total_time_seconds`` {walltime, ...},
  ``total_gpu_energy_usage_kwh`` {total}, ``total_cpu_energy_usage_kwh`` {total}; empty fields
  are omitted.
* A finished job appears only at the server's next update (``update_interval``, default
  15 min): collection waits with backoff up to ``accounting.deadline_s``. A job shorter than
  the server's ``cutoff_duration`` is never returned: the deadline then ends with an error
  that points at the padding settings (``cluster.accounting_window_s``).
* CEEMS's kWh is sampled power x the scrape interval of its per-job series, which are
  multiplied by the site's PUE: the figure is kept as reported, and divided by
  ``accounting.pue`` where that is known. It is a job total: no window of it can be cut.

Timestamps: a unit's ``*_ts`` are read as milliseconds when above 1e11 (year 1973 in ms,
year 5138 in s), as seconds otherwise, and the reading is recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from evalwatt.contracts.accounting import AccountingFile
from evalwatt.energy.cluster.collection import AccountingError, Collection, Transient
from evalwatt.energy.cluster.http import Http, decode_json
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.cluster.source import JobFacts, JobTotalSource, Reading
from evalwatt.energy.sources import Unavailable

SOURCE: Final = "ceems-api"
J_PER_KWH = 3.6e6
UNITS_PATH = "/api/v1/units"
ADMIN_PATH = "/api/v1/units/admin"
MS_THRESHOLD = 1e11
RUNNING_STATES = {"RUNNING", "PENDING", "SUSPENDED", "REQUEUED", "CONFIGURING", "COMPLETING"}


class UnitNotYet(Transient):
    """The unit is not (or not finally) there yet."""


def to_unix_s(value: Any) -> tuple[float | None, str]:
    """A CEEMS timestamp in unix seconds, and how it was read (ms or s)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None, f"not a number: {value!r}"
    if value <= 0:
        return None, f"{value!r}: not set"
    if value > MS_THRESHOLD:
        return value / 1000.0, "milliseconds"
    return float(value), "seconds"


def encode_time(t: float, unit: str) -> str:
    """A unix time as the `from`/`to` parameter in ``unit`` (s or ms)."""
    return str(math.floor(t * 1000)) if unit == "ms" else str(math.floor(t))


# --- collecting -------------------------------------------------------------------------------


def _query(run: Collection) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """The units API's path, query and user header for the collection's job."""
    settings, job, ceems = run.settings, run.job, run.settings.ceems
    margin = 3600.0  # from/to only narrow the search; with uuid CEEMS skips them altogether
    start, end = job.span
    unit = ceems.time_unit
    params = [
        ("cluster_id", str(settings.cluster_id)),
        ("uuid", str(job.scheduler_job_id)),
        ("from", encode_time(start - margin, unit)),
        ("to", encode_time(end + margin, unit)),
    ]
    user = ceems.user or run.user
    path = ADMIN_PATH if ceems.admin else UNITS_PATH
    return path, params, {ceems.user_header: user}


def _unit_of(reply: Any, cluster_id: str | None, job_id: str) -> dict[str, Any]:
    if not isinstance(reply, dict) or "status" not in reply:
        raise AccountingError(f"the reply is not a CEEMS API reply: {str(reply)[:120]!r}")
    if reply["status"] != "success":
        raise AccountingError(
            f"CEEMS answered status {reply['status']!r}: {reply.get('errorType')}: "
            f"{reply.get('error')}"
        )
    data = reply.get("data") or []
    if not isinstance(data, list):
        raise AccountingError(f"CEEMS's data is {type(data).__name__}, expected a list of units")
    units = [
        u
        for u in data
        if isinstance(u, dict)
        and str(u.get("uuid")) == job_id
        and u.get("cluster_id", cluster_id) == cluster_id
    ]
    if not units:
        raise UnitNotYet(f"no unit {job_id} of cluster {cluster_id} yet")
    if len(units) > 1:
        raise AccountingError(f"{len(units)} units have uuid {job_id}: cannot tell which")
    unit = units[0]
    state = str(unit.get("state", "")).upper()
    ended, _ = to_unix_s(unit.get("ended_at_ts"))
    if state in RUNNING_STATES or ended is None:
        raise UnitNotYet(f"unit {job_id} is {state or 'without state'}, not ended: partial totals")
    return unit


def collect(run: Collection) -> None:
    """Ask the API for the job's unit until it is there or the deadline passes."""
    job_id = run.slurm_job_id(
        "the job ran outside Slurm (no job id): CEEMS accounts Slurm jobs only"
    )
    settings, job = run.settings, run.job
    http = Http(settings, run.log, run.clock)
    path, params, headers = _query(run)
    base = str(settings.ceems.url)

    def attempt() -> dict[str, Any]:
        reply = http.get_json(base, path, params, headers)
        return _unit_of(reply, settings.cluster_id, job_id)

    run.context.update(path=path, time_unit=settings.ceems.time_unit, user=headers)
    try:
        _, tries = run.wait_for(attempt)
    except UnitNotYet as exc:
        raise AccountingError(
            f"job {job_id}: {exc} after {len(run.log)} queries over {settings.deadline_s:g} s "
            f"(accounting.deadline_s). The job ran {job.elapsed_s:.0f} s (job_start..job_end). "
            "CEEMS never returns a job shorter than its cutoff_duration: if the site's cutoff "
            f"is above that, raise {settings.padding_hint()}. Otherwise the server has not "
            "updated yet (update_interval, default 15 min): raise accounting.deadline_s and "
            "rerun; if the server applies from/to, check accounting.ceems.time_unit "
            f"(now {settings.ceems.time_unit})."
        ) from None
    run.context["tries"] = tries


# --- reading ----------------------------------------------------------------------------------


def unit_of_record(record: AccountingFile, cluster_id: str | None) -> dict[str, Any]:
    """The unit in the record's last reply (the one collection stopped on)."""
    if record.status != "ok":
        raise Unavailable(f"{SOURCE}: {record.detail}")
    last = record.exchanges[-1]
    reply = decode_json(last.body, f"{last.request} (kept at {last.at_unix:.3f})")
    return _unit_of(reply, cluster_id, str(record.scheduler_job_id))


def _kwh(unit: dict[str, Any], key: str) -> tuple[float | None, str | None]:
    value = unit.get(key)
    total = value.get("total") if isinstance(value, dict) else None
    if total is None:
        return None, f"the unit has no {key}.total (CEEMS omits empty fields)"
    if isinstance(total, bool) or not isinstance(total, int | float) or not math.isfinite(total):
        return None, f"{key}.total is {total!r}, not a number"
    if total < 0:
        return None, f"{key}.total is {total}, below zero"
    return float(total), None


@dataclass(frozen=True)
class CeemsUnit:
    """A job's CEEMS unit as evalwatt reads it (every number from the kept reply)."""

    job_id: str
    start: float | None
    end: float | None
    time_read_as: str
    walltime_s: float | None
    gpu_kwh: float | None
    gpu_null_reason: str | None
    cpu_kwh: float | None
    cpu_null_reason: str | None
    pue: float | None

    @classmethod
    def of(cls, record: AccountingFile, pue: float | None, cluster_id: str | None) -> CeemsUnit:
        unit = unit_of_record(record, cluster_id)
        start, how = to_unix_s(unit.get("started_at_ts"))
        end, _ = to_unix_s(unit.get("ended_at_ts"))
        times = unit.get("total_time_seconds")
        wall = times.get("walltime") if isinstance(times, dict) else None
        gpu, gpu_why = _kwh(unit, "total_gpu_energy_usage_kwh")
        cpu, cpu_why = _kwh(unit, "total_cpu_energy_usage_kwh")
        return cls(
            job_id=str(record.scheduler_job_id),
            start=start,
            end=end,
            time_read_as=how,
            walltime_s=float(wall) if isinstance(wall, int | float) else None,
            gpu_kwh=gpu,
            gpu_null_reason=gpu_why,
            cpu_kwh=cpu,
            cpu_null_reason=cpu_why,
            pue=pue,
        )

    @property
    def gpu_reported_j(self) -> float | None:
        """GPU energy as CEEMS reports it (kWh x 3.6e6), PUE included."""
        return None if self.gpu_kwh is None else self.gpu_kwh * J_PER_KWH

    @property
    def cpu_reported_j(self) -> float | None:
        return None if self.cpu_kwh is None else self.cpu_kwh * J_PER_KWH


@dataclass(frozen=True)
class CeemsSource(JobTotalSource):
    """The CEEMS API's job total of the job's GPUs, PUE removed; no windows."""

    unit: CeemsUnit
    name = SOURCE
    domain = "gpu"
    span_of = "unit"

    def total(self) -> tuple[float, float | None, float | None]:
        u = self.unit
        if u.gpu_reported_j is None:
            raise Unavailable(f"{SOURCE}: {u.gpu_null_reason}")
        if u.pue is None:
            raise Unavailable(
                f"{SOURCE}: {u.gpu_reported_j:.0f} J as reported includes the site's PUE, "
                "which accounting.pue does not give: not a GPU energy"
            )
        return u.gpu_reported_j / u.pue, u.start, u.end


def read(record: AccountingFile, settings: Settings, facts: JobFacts) -> Reading:
    """The job's unit in its raw file, as the job-total source of its GPUs."""
    unit = CeemsUnit.of(record, settings.pue, settings.cluster_id)
    return Reading(
        source=CeemsSource(unit),
        span=(unit.start, unit.end) if unit.start and unit.end else None,
        reported_j=unit.gpu_reported_j,
        reported_null_reason=unit.gpu_null_reason,
        notes=(f"unit times read as {unit.time_read_as}",),
        pue=settings.pue,
        includes_pue=True,
        host_j=unit.cpu_reported_j,
        host_null_reason=unit.cpu_null_reason,
    )
