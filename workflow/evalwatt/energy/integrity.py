"""Integrity checks on a cell's traces, as findings the energy step records and the audit prints.

The energy terms already refuse to turn a faulty window into a number (``evalwatt.energy.trace``:
a counter reset, a sample gap over the limit or a device without samples make the window a
null with its reason). The checks here say the same things once per trace, and add what no
single trace can know: whether the devices summed are the GPUs the plan asked for and the job
was given, and whether a cell and its baseline ran on the same host and the same physical
GPUs (cold idle differs by up to ~8 W between H100s, so a baseline taken on other GPUs
subtracts the wrong idle).

Every check is a pure function returning ``Finding`` records: ``ok`` is True (passed), False
(failed: the detail says what and by how much) or None (could not be checked: the detail says
why). A check that could not run is never counted as passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalwatt.energy.sources import INFERENCE_WINDOW, JOB_WINDOW, PAD_WINDOW
from evalwatt.energy.trace import Trace
from evalwatt.sampling.probes import parse_visible_devices

WINDOWS = (INFERENCE_WINDOW, JOB_WINDOW, PAD_WINDOW)


@dataclass(frozen=True)
class Finding:
    """One check: its name, whether it passed (None: it could not be checked), and why."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class GpuSet:
    """The physical GPUs of one job: its host and the UUIDs the sampler recorded.

    ``uuids`` is None when the trace does not record them (a CSV trace); ``host`` is None
    when the job's result does not say."""

    host: str | None
    uuids: tuple[str, ...] | None
    models: tuple[str, ...] | None = None


def failed(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that failed (not those that could not be checked)."""
    return [f for f in findings if f.ok is False]


# --- one trace ---------------------------------------------------------------------------------


def device_findings(trace: Trace, label: str) -> list[Finding]:
    """Every device's samples accounted for: none without samples, none the metadata does
    not list (when it lists devices)."""
    name = f"{label}: every device's samples accounted for"
    out = []
    if trace.missing:
        reason = trace.missing_reason() or ""
        out.append(Finding(name, False, f"{trace.path}: {reason}"))
    else:
        out.append(
            Finding(
                name, True, f"{len(trace.series)} device(s) sampled: {', '.join(trace.devices)}"
            )
        )
    listed = _listed(trace)
    if listed is not None:
        extra = sorted(set(trace.series) - set(listed))
        out.append(
            Finding(
                f"{label}: sampled devices are the ones the sampler opened",
                not extra,
                f"rows of device(s) {', '.join(extra)} that the trace metadata does not list"
                if extra
                else f"metadata lists {', '.join(listed)}",
            )
        )
    if trace.repairs:
        out.append(Finding(f"{label}: counter wraps repaired", True, "; ".join(trace.repairs)))
    return out


def window_findings(
    trace: Trace,
    marks: Mapping[str, float],
    label: str,
    windows: Sequence[tuple[str, str]] = WINDOWS,
) -> list[Finding]:
    """Per window: the counter never goes backwards and no interval between samples
    exceeds the trace's gap limit (``Trace.max_gap_s``)."""
    out = []
    for start_mark, end_mark in windows:
        what = f"{label} {start_mark}..{end_mark}"
        absent = [m for m in (start_mark, end_mark) if m not in marks]
        if absent:
            why = f"no mark {', '.join(absent)}"
            out.append(Finding(f"{what}: counter never goes backwards", None, why))
            out.append(Finding(f"{what}: sample gaps within the limit", None, why))
            continue
        start, end = marks[start_mark], marks[end_mark]
        steps = {d: s.backward_steps(start, end) for d, s in trace.series.items()}
        bad = {d: st for d, st in steps.items() if st}
        out.append(
            Finding(
                f"{what}: counter never goes backwards",
                not bad,
                "; ".join(
                    f"device {d}: {len(st)} backward step(s), the first of {st[0][1]:.0f} mJ "
                    f"at t={st[0][0]:.3f}"
                    for d, st in sorted(bad.items())
                )
                or f"monotonic on {len(steps)} device(s)",
            )
        )
        gaps = [trace.gap_reason(d, start, end) for d in trace.devices]
        widest = max((s.widest_gap(start, end)[0] for s in trace.series.values()), default=0.0)
        out.append(
            Finding(
                f"{what}: sample gaps within the limit",
                not any(gaps),
                "; ".join(g for g in gaps if g)
                or f"widest gap {widest:.3f} s ({trace.gap_limit_text()})",
            )
        )
    return out


def sampler_findings(status: Mapping[str, Any], trace: Trace, label: str) -> list[Finding]:
    """The sampler's own record of late rounds (``sampler.json``): a round later than the
    trace's gap limit means samples were missed, even where a window does not overlap it."""
    name = f"{label}: sampler kept its period"
    interval, late, max_late = (
        status.get("interval_s"),
        status.get("late_rounds"),
        status.get("max_late_s"),
    )
    if not all(isinstance(v, int | float) for v in (interval, late, max_late)):
        return [Finding(name, None, "the sampler status has no interval_s/late_rounds/max_late_s")]
    assert isinstance(interval, int | float) and isinstance(max_late, int | float)
    worst = interval + max_late
    rounds = status.get("rounds")
    return [
        Finding(
            name,
            worst <= trace.max_gap_s,
            f"{late} late round(s) of {rounds}; longest interval {worst:.3f} s "
            f"({trace.gap_limit_text()})",
        )
    ]


# --- the job's devices -------------------------------------------------------------------------


def _listed(trace: Trace) -> list[str] | None:
    devices = trace.metadata.get("devices")
    if isinstance(devices, list):
        return sorted(
            str(d["nvml_index"]) for d in devices if isinstance(d, dict) and "nvml_index" in d
        )
    zones = trace.metadata.get("zones")
    if isinstance(zones, list):
        return sorted(str(z) for z in zones)
    return None


def device_count_findings(
    summed: Sequence[str],
    planned_gpus: int | None,
    cuda_visible_devices: str | None,
    label: str,
) -> list[Finding]:
    """Devices summed == GPUs planned == GPUs allocated (``CUDA_VISIBLE_DEVICES`` of the
    job, as its result records it)."""
    n = len(summed)
    out = []
    if planned_gpus is None:
        out.append(Finding(f"{label}: devices summed == GPUs planned", None, "no planned count"))
    else:
        out.append(
            Finding(
                f"{label}: devices summed == GPUs planned",
                n == planned_gpus,
                f"{n} device(s) summed ({', '.join(summed)}), {planned_gpus} planned",
            )
        )
    entries = parse_visible_devices(cuda_visible_devices)
    if entries is None:
        out.append(
            Finding(
                f"{label}: devices summed == GPUs allocated",
                None,
                "CUDA_VISIBLE_DEVICES was unset: every GPU of the node was sampled, and the "
                "allocation is unknown",
            )
        )
    else:
        out.append(
            Finding(
                f"{label}: devices summed == GPUs allocated",
                n == len(entries),
                f"{n} device(s) summed, CUDA_VISIBLE_DEVICES={cuda_visible_devices!r} "
                f"({len(entries)} GPU(s))",
            )
        )
    return out


def allocation_findings(
    trace: Trace, cuda_visible_devices: str | None, label: str
) -> list[Finding]:
    """The sampler opened exactly the entries of ``CUDA_VISIBLE_DEVICES`` (its metadata's
    ``visible_as``), in order."""
    name = f"{label}: sampler opened the allocated GPUs"
    devices = trace.metadata.get("devices")
    if not isinstance(devices, list):
        return [Finding(name, None, f"{trace.path}: the trace metadata lists no GPUs")]
    opened = [str(d.get("visible_as")) for d in devices if isinstance(d, dict)]
    entries = parse_visible_devices(cuda_visible_devices)
    if entries is None:
        return [Finding(name, None, "CUDA_VISIBLE_DEVICES was unset: all GPUs were opened")]
    return [
        Finding(name, opened == entries, f"opened {opened}, CUDA_VISIBLE_DEVICES gives {entries}")
    ]


def gpu_set(trace: Trace | None, host: str | None) -> GpuSet:
    """The host and GPU UUIDs of a job, from its NVML trace's metadata."""
    devices = trace.metadata.get("devices") if trace is not None else None
    if not isinstance(devices, list):
        return GpuSet(host=host, uuids=None)
    entries = [d for d in devices if isinstance(d, dict)]
    return GpuSet(
        host=host,
        uuids=tuple(sorted(str(d.get("uuid")) for d in entries)),
        models=tuple(sorted(str(d.get("name")) for d in entries)),
    )


def same_gpus_findings(cell: GpuSet, baseline: GpuSet) -> list[Finding]:
    """A cell and its baseline on the same host and the same physical GPUs, or the
    difference flagged (the baseline's idle is then another GPU's idle)."""
    out = []
    if cell.host is None or baseline.host is None:
        out.append(Finding("cell and baseline: same host", None, "a job's host is not recorded"))
    else:
        out.append(
            Finding(
                "cell and baseline: same host",
                cell.host == baseline.host,
                f"cell on {cell.host}, baseline on {baseline.host}",
            )
        )
    name = "cell and baseline: same physical GPUs"
    if cell.uuids is None or baseline.uuids is None:
        out.append(Finding(name, None, "a trace records no GPU UUIDs (CSV or not NVML)"))
    elif cell.uuids == baseline.uuids:
        out.append(Finding(name, True, ", ".join(cell.uuids)))
    else:
        only_cell = sorted(set(cell.uuids) - set(baseline.uuids))
        only_base = sorted(set(baseline.uuids) - set(cell.uuids))
        models = (
            ""
            if cell.models == baseline.models
            else (f"; models differ: {cell.models} vs {baseline.models}")
        )
        out.append(
            Finding(
                name,
                False,
                f"only the cell's: {', '.join(only_cell) or 'none'}; only the baseline's: "
                f"{', '.join(only_base) or 'none'}{models}: idle power differs between GPUs "
                "(up to ~8 W at cold idle between H100s), so the baseline subtracts another "
                "GPU's idle",
            )
        )
    return out


def trace_findings(trace: Trace, marks: Mapping[str, float], label: str) -> list[Finding]:
    """Every check of one trace: devices accounted for, and the counter and gaps of each of
    ``WINDOWS``."""
    return [*device_findings(trace, label), *window_findings(trace, marks, label)]
