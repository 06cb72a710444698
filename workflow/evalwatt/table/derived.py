"""Columns of the final table derived from its other columns, beside Wh per question.

``derived_columns(row)`` computes them for one row of the final table and
``derived_fields()`` gives their Arrow fields (types and docs), in table order;
``evalwatt.table.final`` appends both to every row and to ``TABLE_SCHEMA``, so each of these
columns is computed in one place only, here. Units are in the names; ``<family>`` is each
energy family of the table (``gpu``, ``cpu``, ``cpu_est``):

* ``correct_answers``: completed samples x accuracy. Only a score whose metric is
  ``accuracy`` counts correct answers: Inspect's ``accuracy`` is the mean of per-sample
  correct (1) / incorrect (0) values (exact match, unit tests, a judge's correct/incorrect
  verdict), so accuracy x completed samples is the number answered correctly. A graded score
  (metric ``mean``: a rubric or a 1-10 grade averaged over samples) says how good the answers
  were, not how many were right: its count is null with that reason, never a guess. A
  partial-credit scorer (value 0.5) would count as half an answer: the column is a float.
* ``<family>_energy_per_correct_answer_wh``: the family's inference energy / 3600 / correct
  answers, i.e. ``<family>_energy_per_question_wh / accuracy``. Null when there is no count of
  correct answers, none was correct (the energy per correct answer is unbounded) or the energy
  is null (the family's own ``*_energy_null_reason`` is repeated).
* ``score_per_<family>_wh_per_question``: score / ``<family>_energy_per_question_wh``, score
  points per Wh spent on each question; higher is better. Scores of different benchmarks and
  metrics are on different scales: compare this column within one benchmark only.
* ``generation_share_of_gpu_time_pct``: 100 x inference_duration_s / job_duration_s. The job
  held its GPUs for its whole duration (start-up, load, generation, shutdown, padding), so
  this is the share of the cell's GPU time (GPUs x job duration) spent generating.

Every value column has a ``*_null_reason`` column: a missing value is a null with a reason,
never a zero or a NaN. The functions are pure: they read a row and return values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from evalwatt.base.errors import UserError
from evalwatt.base.vocabulary import FAMILY_TITLES, Family

FAMILIES = tuple(f.value for f in Family)
ACCURACY = "accuracy"

CORRECT_ANSWERS = "correct_answers"
GENERATION_SHARE = "generation_share_of_gpu_time_pct"

REVISION = 1
"""Revision of these columns (names, types, meaning): a change adds 1 here, which bumps the
final table's ``schema_version`` (``evalwatt.table.final.SCHEMA_VERSION``)."""


def energy_per_correct_column(family: str) -> str:
    return f"{family}_energy_per_correct_answer_wh"


def score_per_wh_column(family: str) -> str:
    return f"score_per_{family}_wh_per_question"


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise UserError(f"energy family {family!r} is not one of {', '.join(FAMILIES)}")


def derived_fields() -> list[pa.Field]:
    """The Arrow fields of the derived columns, each with a ``doc``, in table order: the same
    order as the keys of ``derived_columns``."""

    def field(name: str, doc: str) -> list[pa.Field]:
        reason = f"why {name} is null"
        return [
            pa.field(name, pa.float64(), metadata={"doc": doc}),
            pa.field(f"{name}_null_reason", pa.string(), metadata={"doc": reason}),
        ]

    fields = field(
        CORRECT_ANSWERS,
        "correct answers: samples_completed x score, for score_metric accuracy only "
        "(null for graded scores)",
    )
    for family in FAMILIES:
        title = FAMILY_TITLES[Family(family)]
        fields += field(
            energy_per_correct_column(family),
            f"{title}: {family}_energy_per_question_wh / accuracy, Wh per correct answer",
        )
        fields += field(
            score_per_wh_column(family),
            f"{title}: score / {family}_energy_per_question_wh, score points per Wh per "
            "question (compare within one benchmark)",
        )
    fields += field(
        GENERATION_SHARE,
        "100 x inference_duration_s / job_duration_s: share of the cell's GPU time spent "
        "generating",
    )
    return fields


Value = tuple[float | None, str | None]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def correct_answers(row: Mapping[str, Any]) -> Value:
    """Correct answers of one row and, when null, why."""
    metric = row.get("score_metric")
    if row.get("score") is None:
        return None, "no score (the cell was not scored or its scoring failed)"
    if metric != ACCURACY:
        kind = "no metric recorded" if metric is None else f"metric {metric}"
        return None, (
            f"graded score ({kind}): it says how good answers were, not how many were correct"
        )
    score, completed = row["score"], row.get("samples_completed")
    if not _finite(score) or not 0.0 <= score <= 1.0:
        return None, f"accuracy {score!r} is not a fraction between 0 and 1"
    if completed is None:
        return None, "samples_completed is null"
    if completed < 1:
        return None, "no sample completed"
    return float(score) * completed, None


def energy_per_correct_answer(row: Mapping[str, Any], family: str = "gpu") -> Value:
    """Wh per correct answer of one row (``family``'s inference energy) and, when null, why."""
    _check_family(family)
    energy = row.get(f"{family}_energy_per_question_wh")
    if energy is None:
        why = row.get(f"{family}_energy_null_reason") or "no reason recorded"
        return None, f"{family}_energy_per_question_wh is null: {why}"
    correct, why = correct_answers(row)
    if correct is None:
        return None, why
    if correct == 0:
        return None, "no correct answer: energy per correct answer is unbounded"
    return energy * row["samples_completed"] / correct, None


def score_per_wh(row: Mapping[str, Any], family: str = "gpu") -> Value:
    """Score per Wh per question of one row and, when null, why."""
    _check_family(family)
    energy = row.get(f"{family}_energy_per_question_wh")
    score = row.get("score")
    if score is None:
        return None, "no score (the cell was not scored or its scoring failed)"
    if energy is None:
        why = row.get(f"{family}_energy_null_reason") or "no reason recorded"
        return None, f"{family}_energy_per_question_wh is null: {why}"
    if energy <= 0:
        return None, f"{family}_energy_per_question_wh is {energy}, not above zero"
    return score / energy, None


def generation_share(row: Mapping[str, Any]) -> Value:
    """Percent of the cell job's duration spent generating and, when null, why."""
    inference, job = row.get("inference_duration_s"), row.get("job_duration_s")
    if inference is None:
        return None, "inference_duration_s is null"
    if job is None and row.get("execution") == "per-model":
        return None, (
            "per-model: the cell has no job of its own (its model job ran several cells; "
            "their shared overhead is the shared_overhead_energy_j columns)"
        )
    if job is None:
        return None, "job_duration_s is null"
    if job <= 0:
        return None, f"job_duration_s is {job}, not above zero"
    if inference > job:
        return None, f"inference_duration_s {inference} exceeds job_duration_s {job}"
    return 100.0 * inference / job, None


def derived_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """The derived columns of one row of the final table (keyed by the table's column names),
    each value with its ``*_null_reason``, in the order of ``derived_fields()``."""
    out: dict[str, Any] = {}

    def put(name: str, value: Value) -> None:
        out[name], out[f"{name}_null_reason"] = value

    put(CORRECT_ANSWERS, correct_answers(row))
    for family in FAMILIES:
        put(energy_per_correct_column(family), energy_per_correct_answer(row, family))
        put(score_per_wh_column(family), score_per_wh(row, family))
    put(GENERATION_SHARE, generation_share(row))
    return out
