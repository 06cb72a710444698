"""The columns of a row that say how its cell ran (``execution``): in its own job, or in a
model job with the other cells of its model (``evalwatt.energy.packed``), with the cooldown,
the GPUs' temperature and the steady state of the cell. The same columns in both modes; the
ones that do not apply are null with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.record import FamilyEnergy, TermRecord
from evalwatt.contracts.result import JobResult
from evalwatt.energy.packed import PER_CELL_REASON, packing_id

# The family columns of the model job's terms (evalwatt.energy.packed), and their reason column.
PER_MODEL_TERMS = ("reference_idle", "cooldown", "shared_overhead")


def _span(marks: Mapping[Mark, float], start: Mark, end: Mark) -> float | None:
    if start in marks and end in marks:
        return marks[end] - marks[start]
    return None


def _power_w(term: TermRecord | None) -> float | None:
    """Mean power over a measured window: its energy over its seconds."""
    if term is None or term.energy_j is None or term.window is None:
        return None
    seconds = term.window[1] - term.window[0]
    return term.energy_j / seconds if seconds > 0 else None


def family_packed_columns(info: FamilyEnergy) -> dict[str, Any]:
    """One family's per-model and steady-state columns (``contracts.row.FamilyColumns``)."""
    terms = info.terms
    reasons = [
        f"{name}: {terms[name].null_reason}"
        for name in PER_MODEL_TERMS
        if name in terms and terms[name].energy_j is None and terms[name].null_reason
    ]
    missing = [name for name in PER_MODEL_TERMS if name not in terms]
    if missing:
        reasons.append(f"{', '.join(missing)}: not computed")
    steady = info.steady
    reference = terms.get("reference_idle")
    return {
        "reference_idle_power_w": _power_w(reference),
        "cooldown_energy_j": terms["cooldown"].energy_j if "cooldown" in terms else None,
        "shared_overhead_energy_j": (
            terms["shared_overhead"].energy_j if "shared_overhead" in terms else None
        ),
        "per_model_null_reason": _grouped(reasons),
        "steady_energy_per_output_token_j": steady.energy_per_output_token_j if steady else None,
        "steady_null_reason": steady.null_reason if steady else "not computed",
    }


def _grouped(reasons: list[str]) -> str | None:
    """``name: reason`` lines with the names of one reason together, in order."""
    by_reason: dict[str, list[str]] = {}
    for line in reasons:
        name, _, why = line.partition(": ")
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items()) or None


def _hottest(result: JobResult, mark: Mark) -> float | None:
    readings = result.temperatures_c.get(mark)
    return max(readings) if readings else None


def _temperature_reason(result: JobResult, packed: bool) -> str | None:
    """Why a temperature column is null, or None when both are there."""
    reasons = []
    if _hottest(result, Mark.INFERENCE_START) is None:
        reasons.append(
            "no GPU temperature at inference_start (a job without GPUs, NVML unreadable, or a "
            "result of an older runtime)"
        )
    if not packed:
        reasons.append(f"cooldown_start: {PER_CELL_REASON}")
    elif _hottest(result, Mark.COOLDOWN_START) is None:
        reasons.append("no GPU temperature at cooldown_start")
    return "; ".join(reasons) or None


def _cooldown(result: JobResult, packed: bool) -> dict[str, Any]:
    record = result.cooldown
    if record is None:
        why = PER_CELL_REASON if not packed else "the cell's result has no cooldown record"
        return {"cooldown_duration_s": None, "cooldown_ended_by": None, "cooldown_null_reason": why}
    return {
        "cooldown_duration_s": record.ended - record.started,
        "cooldown_ended_by": record.ended_by,
        "cooldown_null_reason": None,
    }


def _steady(result: JobResult) -> dict[str, Any]:
    window = result.steady_window
    if window is None:
        return {
            "steady_window_s": None,
            "steady_output_tokens": None,
            "steady_window_null_reason": "the cell's result has no steady window (an older "
            "runtime)",
        }
    seconds = (
        window.end - window.start if window.start is not None and window.end is not None else None
    )
    return {
        "steady_window_s": seconds,
        "steady_output_tokens": window.output_tokens,
        "steady_window_null_reason": window.null_reason,
    }


def row_packed_columns(cell: JobResult) -> dict[str, Any]:
    """The row's columns on how the cell ran (``contracts.row.TableRow``)."""
    packed = cell.packed_in is not None
    return {
        "execution": "per-model" if packed else "per-cell",
        "model_job_id": packing_id(cell.packed_in) if cell.packed_in is not None else None,
        "reference_idle_duration_s": _span(
            cell.marks, Mark.REFERENCE_IDLE_START, Mark.REFERENCE_IDLE_END
        ),
        **_cooldown(cell, packed),
        "temperature_at_evaluation_start_c": _hottest(cell, Mark.INFERENCE_START),
        "temperature_at_cooldown_start_c": _hottest(cell, Mark.COOLDOWN_START),
        "temperature_null_reason": _temperature_reason(cell, packed),
        **_steady(cell),
    }
