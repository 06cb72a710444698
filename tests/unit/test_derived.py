"""Derived columns: Wh per correct answer, score per Wh, the generation share of GPU time,
computed per row by evalwatt.table.derived and carried by every final table
(evalwatt.table.final)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from study_table import demo_table, study_table

from evalwatt.base.errors import UserError
from evalwatt.table.derived import (
    CORRECT_ANSWERS,
    FAMILIES,
    GENERATION_SHARE,
    correct_answers,
    derived_columns,
    derived_fields,
    energy_per_correct_answer,
    generation_share,
    score_per_wh,
)
from evalwatt.table.final import TABLE_SCHEMA, to_table


def _row(**extra):
    row = {
        "score": 0.5,
        "score_metric": "accuracy",
        "samples_completed": 100,
        "inference_duration_s": 60.0,
        "job_duration_s": 300.0,
        "gpu_energy_per_question_wh": 0.2,
        "gpu_energy_null_reason": None,
    }
    row.update(extra)
    return row


def test_an_accuracy_counts_correct_answers_and_divides_the_energy_by_them():
    assert correct_answers(_row()) == (50.0, None)
    value, why = energy_per_correct_answer(_row())
    assert why is None
    assert value == pytest.approx(0.4)  # 0.2 Wh per question / accuracy 0.5


def test_a_graded_score_has_no_correct_answers_and_says_why():
    for metric in ("mean", None):
        value, why = energy_per_correct_answer(_row(score=7.2, score_metric=metric))
        assert value is None
        assert "graded score" in why


def test_no_correct_answer_is_a_null_not_an_infinity():
    value, why = energy_per_correct_answer(_row(score=0.0))
    assert value is None and "no correct answer" in why


def test_a_null_energy_carries_the_familys_reason():
    row = _row(gpu_energy_per_question_wh=None, gpu_energy_null_reason="counter reset")
    assert energy_per_correct_answer(row) == (
        None,
        "gpu_energy_per_question_wh is null: counter reset",
    )
    assert score_per_wh(row)[0] is None and "counter reset" in score_per_wh(row)[1]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"score": None}, "no score"),
        ({"score": 1.5}, "not a fraction"),
        ({"samples_completed": 0}, "no sample completed"),
        ({"samples_completed": None}, "samples_completed is null"),
    ],
)
def test_unusable_scores_give_reasons(extra, reason):
    value, why = correct_answers(_row(**extra))
    assert value is None and reason in why


def test_score_per_wh_and_generation_share():
    assert score_per_wh(_row()) == (pytest.approx(2.5), None)
    assert score_per_wh(_row(gpu_energy_per_question_wh=0.0))[0] is None
    assert generation_share(_row()) == (pytest.approx(20.0), None)
    assert generation_share(_row(job_duration_s=None)) == (None, "job_duration_s is null")
    assert "exceeds" in generation_share(_row(inference_duration_s=400.0))[1]


def _check_nulls(table: pa.Table, names: list[str]) -> None:
    """Every value column: a finite number with no reason, or a null with one."""
    for name in names:
        if name.endswith("_null_reason"):
            continue
        values = table.column(name).to_pylist()
        reasons = table.column(f"{name}_null_reason").to_pylist()
        for value, reason in zip(values, reasons, strict=True):
            if value is None:
                assert reason, name
            else:
                assert reason is None and math.isfinite(value), name


def test_the_final_table_carries_every_derived_column_with_its_type_and_doc():
    fields = derived_fields()
    names = [f.name for f in fields]
    # one definition: the table's derived fields are derived_fields(), after the row's
    assert TABLE_SCHEMA.names[-len(fields) :] == names
    for f in fields:
        assert TABLE_SCHEMA.field(f.name).equals(f, check_metadata=True)
        assert f.metadata[b"doc"]
    for family in FAMILIES:
        assert f"{family}_energy_per_correct_answer_wh" in names
        assert f"score_per_{family}_wh_per_question" in names
    assert names[:2] == [CORRECT_ANSWERS, f"{CORRECT_ANSWERS}_null_reason"]
    est_doc = TABLE_SCHEMA.field("cpu_est_energy_per_correct_answer_wh").metadata[b"doc"]
    assert est_doc.startswith(b"CPU energy, ESTIMATE")
    assert list(derived_columns(_row())) == names


def test_the_study_table_gets_every_column():
    table = study_table()
    names = [f.name for f in derived_fields()]
    _check_nulls(table, names)
    rows = table.to_pylist()
    graded = [r for r in rows if r["score_metric"] == "mean"]
    assert graded and all(r["gpu_energy_per_correct_answer_wh"] is None for r in graded)
    assert all("graded score" in r["correct_answers_null_reason"] for r in graded)
    exact = [r for r in rows if r["score_metric"] == "accuracy" and r["score"] > 0]
    for r in exact:
        assert r["gpu_energy_per_correct_answer_wh"] == pytest.approx(
            r["gpu_energy_per_question_wh"] / r["score"]
        )
        assert r[CORRECT_ANSWERS] == pytest.approx(r["score"] * r["samples_completed"])
    for r in rows:
        assert r["score_per_gpu_wh_per_question"] == pytest.approx(
            r["score"] / r["gpu_energy_per_question_wh"]
        )
        assert 0 < r[GENERATION_SHARE] <= 100
        assert r["cpu_energy_per_correct_answer_wh"] is None
        assert "RAPL not readable" in r["score_per_cpu_wh_per_question_null_reason"]


def test_the_demo_table_has_the_estimate_family_and_the_gpu_family_stays_null():
    table = demo_table()
    _check_nulls(table, [f.name for f in derived_fields()])
    rows = table.to_pylist()
    humaneval_t0 = next(r for r in rows if r["benchmark"] == "humaneval" and r["temperature"] == 0)
    assert humaneval_t0[CORRECT_ANSWERS] == pytest.approx(1.0)
    assert humaneval_t0["cpu_est_energy_per_correct_answer_wh"] == pytest.approx(
        humaneval_t0["cpu_est_energy_per_question_wh"] * 3
    )
    humaneval_t07 = next(r for r in rows if r["benchmark"] == "humaneval" and r["temperature"])
    assert humaneval_t07["cpu_est_energy_per_correct_answer_wh"] is None
    assert "no correct answer" in humaneval_t07["cpu_est_energy_per_correct_answer_wh_null_reason"]
    assert all(r["gpu_energy_per_correct_answer_wh"] is None for r in rows)
    assert all("no GPU" in r["score_per_gpu_wh_per_question_null_reason"] for r in rows)


def test_a_row_without_the_columns_derives_nulls_with_reasons():
    (row,) = to_table([{"run": "r", "cell_id": "c"}]).to_pylist()
    names = [f.name for f in derived_fields()]
    assert all(row[n] is None for n in names if not n.endswith("_null_reason"))
    assert row["gpu_energy_per_correct_answer_wh_null_reason"] == (
        "gpu_energy_per_question_wh is null: no reason recorded"
    )
    assert row[f"{GENERATION_SHARE}_null_reason"] == "inference_duration_s is null"


def test_an_unknown_family_is_refused():
    with pytest.raises(UserError, match="not one of"):
        energy_per_correct_answer(_row(), family="tpu")
    with pytest.raises(UserError, match="not one of"):
        score_per_wh(_row(), family="tpu")
