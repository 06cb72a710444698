"""The energy terms of a cell, each with its formula, its inputs and, if null, the reason.

Two methods, reported side by side when a trace exists:

* **phase-resolved**: ``inference = E(inference_end) - E(inference_start)``, the counter
  interpolated at the marks, summed over the job's devices;
* **whole-job** (the study's method, for sources that only give job totals):
  ``net = (E_job - E_pad) - (E_baseline - E_pad(baseline))``.

``gap = net - inference`` is what the whole-job method counts beyond generation (idle time
around it, start-up and shutdown differences between the cell and its baseline).
Per question divides by the completed samples; per 1,000 output tokens by the output tokens.

What a term can be:

* a window term (``inference``, ``job``, ``pad``, ``baseline_*``, ``judge``) is a physical
  energy: a finite number of joules of zero or more, or None with its ``null_reason``. A window
  that cannot be measured (a missing mark, a window outside the trace, a counter that went
  backwards inside it, a source that gives job totals only) is a null with the reason, never
  a zero, a negative or a guess;
* ``net`` and ``gap`` are differences of measurements. A negative value is a real outcome,
  not a fault (the baseline job used more energy than the cell outside its pad, e.g. a GPU left
  in another power state, or noise larger than the inference itself) and is kept as it is,
  never clipped to zero; it is null when any of its inputs is;
* nothing is ever NaN or infinite: a value that would be is a null with the reason.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evalwatt.energy.sources import EnergySource, TraceSource, Unavailable
from evalwatt.energy.trace import WindowEnergy
from evalwatt.errors import UserError

J_PER_WH = 3600.0


@dataclass(frozen=True)
class Term:
    """One energy quantity in joules, or None with the reason it could not be measured."""

    energy_j: float | None
    formula: str
    null_reason: str | None = None
    window: tuple[float, float] | None = None
    per_device_j: dict[str, float] = field(default_factory=dict)
    extrapolated_s: float = 0.0
    power_integral_j: float | None = None

    @classmethod
    def of_window(cls, measure: WindowEnergy, formula: str) -> Term:
        """The term of a measured window; a null if the source returned no physical energy."""
        values = [measure.energy_j, *measure.per_device_j.values()]
        if not all(math.isfinite(v) and v >= 0 for v in values):
            return cls.missing(
                formula, f"the source gave {measure.energy_j} J, not a finite energy >= 0"
            )
        return cls(
            energy_j=measure.energy_j,
            formula=formula,
            window=(measure.start, measure.end),
            per_device_j=measure.per_device_j,
            extrapolated_s=measure.extrapolated_s,
            power_integral_j=measure.power_integral_j,
        )

    @classmethod
    def missing(cls, formula: str, reason: str) -> Term:
        return cls(energy_j=None, formula=formula, null_reason=reason)


def _window_term(source: EnergySource | None, start: str, end: str, what: str) -> Term:
    formula = f"E({end}) - E({start}) [{what}]"
    if source is None:
        return Term.missing(formula, f"no {what} readings")
    try:
        if isinstance(source, TraceSource):
            return Term.of_window(source.mark_window(start, end), formula)
        if start == "job_start" and end == "job_end":
            return Term.of_window(source.job(), formula)
        raise Unavailable(f"source {source.name} gives job totals only, not {start}..{end}")
    except Unavailable as exc:
        return Term.missing(formula, str(exc))


def combine(formula: str, terms: dict[str, Term], signs: dict[str, int]) -> Term:
    """A signed sum of other terms; null (with every reason) if any input is null."""
    reasons = [
        f"{name}: {terms[name].null_reason}" for name in signs if terms[name].energy_j is None
    ]
    if reasons:
        return Term.missing(formula, "; ".join(reasons))
    value = sum(sign * float(terms[name].energy_j or 0.0) for name, sign in signs.items())
    if not math.isfinite(value):
        return Term.missing(formula, f"the sum is {value}, not a finite number")
    return Term(energy_j=value, formula=formula)


def per_unit(term: Term, count: float | None, unit: str, scale: float = 1.0) -> dict[str, Any]:
    """``term`` in Wh divided by ``count / scale`` (e.g. per question, per 1k tokens)."""
    formula = f"{term.formula.split(' [')[0]} / 3600 / ({unit})"
    if term.energy_j is None:
        return {"value_wh": None, "formula": formula, "null_reason": term.null_reason}
    if count is None or not count > 0:
        return {"value_wh": None, "formula": formula, "null_reason": f"{unit} is {count}"}
    value = term.energy_j / J_PER_WH / (count / scale)
    if not math.isfinite(value):
        return {"value_wh": None, "formula": formula, "null_reason": f"{value} is not finite"}
    return {"value_wh": value, "formula": formula, "null_reason": None}


def parse_count(text: str | None, option: str) -> int | None:
    """A count given on the command line (``--questions``, ``--output-tokens``): a whole
    number of one or more, or None when the option was not given. Raises UserError."""
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise UserError(f"{option} is {text!r}, expected a whole number >= 1") from None
    if value < 1:
        raise UserError(f"{option} is {value}, expected a whole number >= 1")
    return value


def cell_terms(
    cell: EnergySource | None,
    baseline: EnergySource | None,
    judge: EnergySource | None,
    samples_completed: int | None,
    output_tokens: int | None,
) -> dict[str, Any]:
    """Every energy term of one cell for one source (one domain)."""
    terms = {
        "inference": _window_term(cell, "inference_start", "inference_end", "cell"),
        "job": _window_term(cell, "job_start", "job_end", "cell"),
        "pad": _window_term(cell, "pad_start", "pad_end", "cell"),
        "baseline_job": _window_term(baseline, "job_start", "job_end", "baseline"),
        "baseline_pad": _window_term(baseline, "pad_start", "pad_end", "baseline"),
    }
    terms["net"] = combine(
        "(job - pad) - (baseline_job - baseline_pad)",
        terms,
        {"job": 1, "pad": -1, "baseline_job": -1, "baseline_pad": 1},
    )
    terms["gap"] = combine("net - inference", terms, {"net": 1, "inference": -1})
    if judge is not None:
        terms["judge"] = _window_term(judge, "inference_start", "inference_end", "judge")
    else:
        terms["judge"] = Term.missing(
            "E(inference_end) - E(inference_start) [judge]", "no judge job for this cell"
        )
    per = {
        "inference_per_question": per_unit(
            terms["inference"], samples_completed, "completed samples"
        ),
        "net_per_question": per_unit(terms["net"], samples_completed, "completed samples"),
        "inference_per_1k_output_tokens": per_unit(
            terms["inference"], output_tokens, "output tokens / 1000", scale=1000.0
        ),
    }
    inference, net = terms["inference"].energy_j, terms["net"].energy_j
    gap_pct = None if not inference or net is None else 100.0 * (net - inference) / inference
    if gap_pct is not None and not math.isfinite(gap_pct):
        gap_pct = None
    first = cell or baseline
    return {
        "source": first.name if first else None,
        "is_estimate": first.is_estimate if first else None,
        "terms": {name: asdict(term) for name, term in terms.items()},
        "per_unit": per,
        "gap_pct": gap_pct,
    }
