"""The energy terms of a cell, each with its formula, its inputs and, if null, the reason.

Three methods, reported side by side when a trace exists:

* **phase-resolved**: ``inference = E(generation_end) - E(generation_start)``, the counter
  interpolated at the marks, summed over the job's devices: the first request sent to the
  last response received (Inspect's model calls, ``evalwatt.runtime.inspect_steps``). The
  wider ``evaluation = E(inference_end) - E(inference_start)`` is the whole Inspect call
  (task and dataset loading, generation, log writing), and ``evaluation_overhead =
  evaluation - inference`` Inspect's own cost around the generation, at loaded idle;
* **whole-job** (the study's method, for sources that only give job totals):
  ``net = (E_job - E_pad) - (E_baseline - E_pad(baseline))``;
* **corrected whole-job** (``corrected``): job totals plus the two timelines. Each stretch of
  a job between two marks is in one GPU state (``STATE_AFTER``): *cold* (no CUDA context:
  before loading, scoring after the server stopped, the pad), *load*, *loaded* (the model in
  memory, idle: after ``ready``, the ``import inspect_ai`` before ``inference_start``,
  Inspect's task loading and log writing around the generation, after ``inference_end``
  until the server is gone) or *work* (generation). The cell's total minus its cold and
  load seconds at its cold-idle power and its loaded seconds at the baseline's loaded-idle
  power leaves the work (``evalwatt.energy.corrected``)::

      P_cold    = E(pad_settled..pad_end) / its seconds   (each job; or a stated power)
      P_loaded  = (baseline_job - P_cold(b) x (cold_s + load_s)(b)) / loaded_s(b)
      corrected = job - P_cold x (cold_s + load_s) - P_loaded x loaded_s

  With a warm-up wave in both jobs (``hf``), their difference instead, in which the wave
  cancels, and the difference of loaded seconds at cold-idle power (the module's docstring).
  It subtracts like with like where the study's method subtracts the baseline's whole
  non-pad energy: a longer load, the loaded idle after inference that only the cell has, a
  longer wait before loading or in-job scoring no longer count as inference.

``gap = net - inference`` and ``corrected_gap = corrected - inference`` are what each
whole-job method counts beyond generation. Per question divides by the completed samples; per
1,000 output tokens by the output tokens.

What a term can be:

* a window term (``inference``, ``evaluation``, ``job``, ``pad``, ``baseline_*``, ``judge``,
  ``judge_evaluation``) is a physical energy: a finite number of joules of zero or more, or
  None with its ``null_reason``. A window that cannot be measured (a missing mark, a window
  outside the trace, a counter that went backwards inside it, a source that gives job totals
  only) is a null with the reason, never a zero, a negative or a guess;
* ``net``, ``gap`` and ``evaluation_overhead`` are differences of measurements. A negative
  value is a real outcome, not a fault (the baseline job used more energy than the cell
  outside its pad, e.g. a GPU left in another power state, or noise larger than the inference
  itself) and is kept as it is, never clipped to zero; it is null when any of its inputs is;
* nothing is ever NaN or infinite: a value that would be is a null with the reason.

The terms are the cell record's own models (``evalwatt.contracts.record``): each term a
``TermRecord``, one family's terms a ``FamilyEnergy`` (``cell_terms``), written to
energy/<cell>.json as they are; ``method_comparison`` sets the three methods side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from evalwatt.base.errors import UserError
from evalwatt.contracts.record import FamilyEnergy, PerUnitRecord, TermRecord
from evalwatt.energy.corrected import (
    CORRECTED_FORMULA,
    JobTotal,
    cold_idle_marks,
    corrected_whole_job,
)
from evalwatt.energy.sources import (
    GENERATION_WINDOW,
    INFERENCE_WINDOW,
    JUDGING_WINDOW,
    EnergySource,
    TimelineSource,
    Unavailable,
    with_generation_marks,
)
from evalwatt.energy.trace import WindowEnergy

J_PER_WH = 3600.0


def of_window(measure: WindowEnergy, formula: str) -> TermRecord:
    """The term of a measured window; a null if the source returned no physical energy."""
    values = [measure.energy_j, *measure.per_device_j.values()]
    if not all(math.isfinite(v) and v >= 0 for v in values):
        return TermRecord.missing(
            formula, f"the source gave {measure.energy_j} J, not a finite energy >= 0"
        )
    return TermRecord(
        energy_j=measure.energy_j,
        formula=formula,
        null_reason=None,
        window=(measure.start, measure.end),
        per_device_j=measure.per_device_j,
        extrapolated_s=measure.extrapolated_s,
        power_integral_j=measure.power_integral_j,
    )


def window_term(source: EnergySource | None, start: str, end: str, what: str) -> TermRecord:
    """The term of the window between two marks of ``source``'s timeline (``what``: whose
    readings, in the formula), or null with the reason: no source, a missing mark, a source
    that gives job totals only."""
    formula = f"E({end}) - E({start}) [{what}]"
    if source is None:
        return TermRecord.missing(formula, f"no {what} readings")
    try:
        if isinstance(source, TimelineSource):
            return of_window(source.mark_window(start, end), formula)
        if start == "job_start" and end == "job_end":
            return of_window(source.job(), formula)
        raise Unavailable(f"source {source.name} gives job totals only, not {start}..{end}")
    except Unavailable as exc:
        return TermRecord.missing(formula, str(exc))


def combine(formula: str, terms: dict[str, TermRecord], signs: dict[str, int]) -> TermRecord:
    """A signed sum of other terms; null (with every reason) if any input is null."""
    reasons = [
        f"{name}: {terms[name].null_reason}" for name in signs if terms[name].energy_j is None
    ]
    if reasons:
        return TermRecord.missing(formula, "; ".join(reasons))
    value = sum(sign * float(terms[name].energy_j or 0.0) for name, sign in signs.items())
    if not math.isfinite(value):
        return TermRecord.missing(formula, f"the sum is {value}, not a finite number")
    return TermRecord.derived(value, formula)


def per_unit(term: TermRecord, count: float | None, unit: str, scale: float = 1.0) -> PerUnitRecord:
    """``term`` in Wh divided by ``count / scale`` (e.g. per question, per 1k tokens)."""
    formula = f"{term.formula.split(' [')[0]} / 3600 / ({unit})"
    if term.energy_j is None:
        return PerUnitRecord(value_wh=None, formula=formula, null_reason=term.null_reason)
    if count is None or not count > 0:
        return PerUnitRecord(value_wh=None, formula=formula, null_reason=f"{unit} is {count}")
    value = term.energy_j / J_PER_WH / (count / scale)
    if not math.isfinite(value):
        return PerUnitRecord(value_wh=None, formula=formula, null_reason=f"{value} is not finite")
    return PerUnitRecord(value_wh=value, formula=formula, null_reason=None)


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


def _marks_of(
    source: EnergySource | None, given: Mapping[str, float] | None
) -> Mapping[str, float] | None:
    if given is not None:
        return given
    return source.marks if isinstance(source, TimelineSource) else None


# The headline of a timeline without generation marks that does not say why (a harness's, whose
# inference marks bracket the generate calls themselves: ``with_generation_marks``).
HARNESS_WINDOW_NOTE = "no generation marks: the timeline's inference window is its generation"


def headline_window(
    marks: Mapping[str, float] | None, null_reason: str | None
) -> tuple[tuple[str, str], str | None, str | None]:
    """The window of the headline ``inference`` term in a timeline: (its two marks, why it
    is null, a note on where it comes from).

    * ``generation_start``..``generation_end`` where the timeline has both;
    * null with ``null_reason`` where evalwatt's job recorded why it could not stamp them
      (its result's ``generation_window``), or with the name of the one missing;
    * ``inference_start``..``inference_end`` with ``HARNESS_WINDOW_NOTE`` for a timeline
      without generation marks and without a reason: a harness that stamps its inference
      marks around the generate calls (the shared traces, ``evalwatt energy --timeline``).
      evalwatt's own jobs always pass the reason, so their evaluation window never stands
      in for generation."""
    if marks is None:
        return GENERATION_WINDOW, None, None
    present = [m for m in GENERATION_WINDOW if m in marks]
    if len(present) == 2:
        return GENERATION_WINDOW, None, None
    if present:
        (other,) = set(GENERATION_WINDOW) - set(present)
        return GENERATION_WINDOW, f"timeline has {present[0]} but no {other}", None
    if null_reason is not None:
        return GENERATION_WINDOW, null_reason, None
    if all(m in marks for m in INFERENCE_WINDOW):
        return INFERENCE_WINDOW, None, HARNESS_WINDOW_NOTE
    return GENERATION_WINDOW, None, None


def judge_terms(
    judge: EnergySource | None, reason: str, null_reason: str | None = None
) -> dict[str, TermRecord]:
    """The judge job's terms: ``judge`` over its generation window (the judge model's first
    request to its last response) and ``judge_evaluation`` over ``judging_start``..
    ``judging_end`` (Inspect's scoring around them). ``reason``: why there is no judge
    source; ``null_reason``: why the judge job has no generation marks."""
    gen = "E(generation_end) - E(generation_start) [judge]"
    if judge is None:
        return {
            "judge": TermRecord.missing(gen, reason),
            "judge_evaluation": TermRecord.missing(
                "E(judging_end) - E(judging_start) [judge]", reason
            ),
        }
    marks = judge.marks if isinstance(judge, TimelineSource) else None
    has_marks = marks is not None and all(m in marks for m in GENERATION_WINDOW)
    return {
        "judge": window_term(judge, *GENERATION_WINDOW, "judge")
        if has_marks or null_reason is None
        else TermRecord.missing(gen, null_reason),
        "judge_evaluation": window_term(judge, *JUDGING_WINDOW, "judge"),
    }


def corrected_term(
    terms: Mapping[str, TermRecord],
    cell: EnergySource | None,
    baseline: EnergySource | None,
    cell_marks: Mapping[str, float] | None,
    baseline_marks: Mapping[str, float] | None,
    cold_idle_w: float | None = None,
) -> TermRecord:
    """The corrected whole-job term (evalwatt.energy.corrected) from the job terms, the two
    timelines and each job's settled pad where the source can cut it; the levels and
    durations behind it are in its formula's brackets. ``cold_idle_w`` (the job's GPUs at
    cold idle, stated) stands in for a pad the source cannot cut."""
    reasons = [
        f"{n}: {terms[n].null_reason}" for n in ("job", "baseline_job") if terms[n].energy_j is None
    ]
    if cell_marks is None or baseline_marks is None:
        reasons.append("no timeline of the cell and its baseline")
    if reasons:
        return TermRecord.missing(CORRECTED_FORMULA, "; ".join(reasons))
    assert cell_marks is not None and baseline_marks is not None
    cold_cell = window_term(cell, *cold_idle_marks(cell_marks), "cell")
    cold_base = window_term(baseline, *cold_idle_marks(baseline_marks), "baseline")
    try:
        estimate = corrected_whole_job(
            JobTotal(
                float(terms["job"].energy_j or 0.0), cell_marks, cold_cell.energy_j, cold_idle_w
            ),
            JobTotal(
                float(terms["baseline_job"].energy_j or 0.0),
                baseline_marks,
                cold_base.energy_j,
                cold_idle_w,
            ),
        )
    except Unavailable as exc:
        return TermRecord.missing(CORRECTED_FORMULA, str(exc))
    return TermRecord.derived(estimate.energy_j, f"{estimate.formula} [{estimate.describe()}]")


METHODS = (
    ("phase_resolved", "inference", None),
    ("whole_job", "net", "gap"),
    ("corrected_whole_job", "corrected", "corrected_gap"),
)


def _percent(part: float | None, whole: float | None) -> float | None:
    """100 x part / whole; None when either is missing, the whole is zero or the ratio is not
    finite."""
    if part is None or not whole:
        return None
    pct = 100.0 * part / whole
    return pct if math.isfinite(pct) else None


@dataclass(frozen=True)
class MethodFigures:
    """One method's energy of a cell's generation, beside the phase-resolved one."""

    energy_j: float | None
    gap_j: float | None
    """This method's gap term (what it counts beyond generation), J; 0 for phase-resolved."""
    gap_pct: float | None
    """``gap_j`` in percent of the phase-resolved energy."""
    formula: str
    null_reason: str | None


def method_comparison(family: FamilyEnergy) -> dict[str, MethodFigures]:
    """The three methods of one family's terms (``cell_terms``' output) side by side: each
    one's energy, its gap to phase-resolved in J and %, its formula or why it is null."""
    terms = family.terms
    reference = terms["inference"].energy_j
    table = {}
    for method, name, gap in METHODS:
        term = terms[name]
        gap_j = terms[gap].energy_j if gap else 0.0 if reference is not None else None
        table[method] = MethodFigures(
            energy_j=term.energy_j,
            gap_j=gap_j,
            gap_pct=_percent(gap_j, reference),
            formula=term.formula,
            null_reason=term.null_reason,
        )
    return table


def _per_unit_terms(
    terms: Mapping[str, TermRecord], samples_completed: int | None, output_tokens: int | None
) -> dict[str, PerUnitRecord]:
    """The headline, net and corrected terms per question; the headline per 1k tokens."""
    questions = "completed samples"
    return {
        "inference_per_question": per_unit(terms["inference"], samples_completed, questions),
        "net_per_question": per_unit(terms["net"], samples_completed, questions),
        "corrected_per_question": per_unit(terms["corrected"], samples_completed, questions),
        "inference_per_1k_output_tokens": per_unit(
            terms["inference"], output_tokens, "output tokens / 1000", scale=1000.0
        ),
    }


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
    generation_null_reason: str | None = None,
) -> FamilyEnergy:
    """Every energy term of one cell for one source (one domain). The timelines default to
    the sources' own marks (a trace source); a job-total source passes them, and
    ``cold_idle_w`` when it cannot give the pads' energy. ``generation_null_reason``: why
    evalwatt's cell job has no generation marks (``headline_window``: without it, a
    timeline without them is a harness's, its inference window taken as generation)."""
    marks = _marks_of(cell, cell_marks)
    window, why, note = headline_window(marks, generation_null_reason)
    if why is not None:
        inference = TermRecord.missing(f"E({window[1]}) - E({window[0]}) [cell]", why)
    else:
        inference = window_term(cell, *window, f"cell; {note}" if note else "cell")
    terms = {
        "inference": inference,
        "evaluation": window_term(cell, *INFERENCE_WINDOW, "cell"),
        "job": window_term(cell, "job_start", "job_end", "cell"),
        "pad": window_term(cell, "pad_start", "pad_end", "cell"),
        "baseline_job": window_term(baseline, "job_start", "job_end", "baseline"),
        "baseline_pad": window_term(baseline, "pad_start", "pad_end", "baseline"),
    }
    terms["net"] = combine(
        "(job - pad) - (baseline_job - baseline_pad)",
        terms,
        {"job": 1, "pad": -1, "baseline_job": -1, "baseline_pad": 1},
    )
    terms["evaluation_overhead"] = combine(
        "evaluation - inference", terms, {"evaluation": 1, "inference": -1}
    )
    terms["gap"] = combine("net - inference", terms, {"net": 1, "inference": -1})
    if why is not None:  # the states inside the evaluation window are unknown
        terms["corrected"] = TermRecord.missing(CORRECTED_FORMULA, f"no generation window: {why}")
    else:
        terms["corrected"] = corrected_term(
            terms,
            cell,
            baseline,
            with_generation_marks(marks) if note and marks is not None else marks,
            _marks_of(baseline, baseline_marks),
            cold_idle_w,
        )
    terms["corrected_gap"] = combine(
        "corrected - inference", terms, {"corrected": 1, "inference": -1}
    )
    terms.update(judge_terms(judge, "no judge job for this cell"))
    first = cell or baseline
    return FamilyEnergy(
        source=first.name if first else None,
        is_estimate=first.is_estimate if first else None,
        terms=terms,
        per_unit=_per_unit_terms(terms, samples_completed, output_tokens),
        gap_pct=_percent(terms["gap"].energy_j, terms["inference"].energy_j),
    )
