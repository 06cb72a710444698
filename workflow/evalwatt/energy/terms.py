"""The energy terms of a cell, each with its formula, its inputs and, if null, the reason.

Three methods, reported side by side when a trace exists:

* **phase-resolved**: ``inference = E(inference_end) - E(inference_start)``, the counter
  interpolated at the marks, summed over the job's devices;
* **whole-job** (the study's method, for sources that only give job totals):
  ``net = (E_job - E_pad) - (E_baseline - E_pad(baseline))``;
* **corrected whole-job** (``corrected``): job totals plus the two timelines. Each stretch of
  a job between two marks is in one GPU state (``STATE_AFTER``): *cold* (no CUDA context:
  before loading, scoring after the server stopped, the pad), *load*, *loaded* (the model in
  memory, idle: after ``ready``, the ``import inspect_ai`` before ``inference_start``, after
  ``inference_end`` until the server is gone) or *work* (inference). The cell's total minus
  its cold seconds at its cold-idle power and its load + loaded seconds at the baseline's
  warm power leaves the work::

      P_cold    = pad / pad_s                    (each job its own pad; or a stated power)
      P_warm    = (baseline_job - P_cold(baseline) x cold_s(baseline))
                  / (load_s + loaded_s)(baseline)
      corrected = job - P_cold x cold_s - P_warm x (load_s + loaded_s)

  It subtracts like with like where the study's method subtracts the baseline's whole
  non-pad energy: a longer load, the loaded idle after inference that only the cell has, a
  longer wait before loading or in-job scoring no longer count as inference. It assumes
  loading draws about the loaded-idle power (transformers on an H100: 115 W vs 119 W).

``gap = net - inference`` and ``corrected_gap = corrected - inference`` are what each
whole-job method counts beyond generation. Per question divides by the completed samples; per
1,000 output tokens by the output tokens.

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from evalwatt.energy.corrected import (
    CORRECTED_FORMULA,
    JobTotal,
    corrected_whole_job,
)
from evalwatt.energy.sources import EnergySource, TimelineSource, Unavailable
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
        if isinstance(source, TimelineSource):
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


def _marks_of(source: EnergySource | None, given: Mapping[str, float] | None) -> Any:
    if given is not None:
        return given
    return source.marks if isinstance(source, TimelineSource) else None


def corrected_term(
    terms: Mapping[str, Term],
    cell_marks: Mapping[str, float] | None,
    baseline_marks: Mapping[str, float] | None,
    cold_idle_w: float | None = None,
) -> Term:
    """The corrected whole-job term from the job and pad terms and the two timelines; the
    levels and durations behind it are in its formula's brackets. ``cold_idle_w`` (the
    job's GPUs at cold idle, stated) stands in for a pad the source cannot cut."""
    names = ("job", "pad", "baseline_job", "baseline_pad")
    reasons = [f"{n}: {terms[n].null_reason}" for n in names[::2] if terms[n].energy_j is None]
    if cell_marks is None or baseline_marks is None:
        reasons.append("no timeline of the cell and its baseline")
    if reasons:
        return Term.missing(CORRECTED_FORMULA, "; ".join(reasons))
    assert cell_marks is not None and baseline_marks is not None
    try:
        estimate = corrected_whole_job(
            JobTotal(
                float(terms["job"].energy_j or 0.0), cell_marks, terms["pad"].energy_j, cold_idle_w
            ),
            JobTotal(
                float(terms["baseline_job"].energy_j or 0.0),
                baseline_marks,
                terms["baseline_pad"].energy_j,
                cold_idle_w,
            ),
        )
    except Unavailable as exc:
        return Term.missing(CORRECTED_FORMULA, str(exc))
    return Term(energy_j=estimate.energy_j, formula=f"{CORRECTED_FORMULA} [{estimate.describe()}]")


METHODS = (
    ("phase_resolved", "inference", None),
    ("whole_job", "net", "gap"),
    ("corrected_whole_job", "corrected", "corrected_gap"),
)


def method_comparison(out: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The three methods of one family's terms (``cell_terms``' output) side by side: each
    one's energy, its gap to phase-resolved in J and %, its formula or why it is null."""
    terms = out["terms"]
    reference = terms["inference"]["energy_j"]
    table = {}
    for method, name, gap in METHODS:
        term = terms[name]
        gap_j = terms[gap]["energy_j"] if gap else 0.0 if reference is not None else None
        pct = None
        if gap_j is not None and reference:
            pct = 100.0 * gap_j / reference
            pct = pct if math.isfinite(pct) else None
        table[method] = {
            "energy_j": term["energy_j"],
            "gap_j": gap_j,
            "gap_pct": pct,
            "formula": term["formula"],
            "null_reason": term["null_reason"],
        }
    return table


def cell_terms(
    cell: EnergySource | None,
    baseline: EnergySource | None,
    judge: EnergySource | None,
    samples_completed: int | None,
    output_tokens: int | None,
    *,
    cell_marks: Mapping[str, float] | None = None,
    baseline_marks: Mapping[str, float] | None = None,
    cold_idle_w: float | None = None,
) -> dict[str, Any]:
    """Every energy term of one cell for one source (one domain). The timelines default to
    the sources' own marks (a trace source); a job-total source passes them, and
    ``cold_idle_w`` when it cannot give the pads' energy."""
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
    terms["corrected"] = corrected_term(
        terms, _marks_of(cell, cell_marks), _marks_of(baseline, baseline_marks), cold_idle_w
    )
    terms["corrected_gap"] = combine(
        "corrected - inference", terms, {"corrected": 1, "inference": -1}
    )
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
        "corrected_per_question": per_unit(
            terms["corrected"], samples_completed, "completed samples"
        ),
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
