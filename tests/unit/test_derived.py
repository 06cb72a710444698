"""Derived columns: Wh per correct answer, score per Wh, the generation share of GPU time."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from study_table import demo_table, study_table

from evalwatt.derived import (
    CORRECT_ANSWERS,
    GENERATION_SHARE,
    add_derived_columns,
    correct_answers,
    derived_fields,
    energy_per_correct_answer,
    generation_share,
    score_per_wh,
)
from evalwatt.errors import UserError


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


def test_the_study_table_gets_every_column_with_its_type():
    table = study_table()
    out = add_derived_columns(table)
    fields = derived_fields("gpu")
    assert out.column_names == table.column_names + [f.name for f in fields]
    for f in fields:
        assert out.schema.field(f.name).type == f.type
        assert f.metadata[b"doc"]
    _check_nulls(out, [f.name for f in fields])
    rows = out.to_pylist()
    graded = [r for r in rows if r["score_metric"] == "mean"]
    assert graded and all(r["gpu_energy_per_correct_answer_wh"] is None for r in graded)
    exact = [r for r in rows if r["score_metric"] == "accuracy" and r["score"] > 0]
    for r in exact:
        assert r["gpu_energy_per_correct_answer_wh"] == pytest.approx(
            r["gpu_energy_per_question_wh"] / r["score"]
        )
    assert all(0 < r[GENERATION_SHARE] <= 100 for r in rows)


def test_the_demo_table_uses_the_estimate_family_and_the_gpu_family_stays_null():
    table = demo_table()
    est = add_derived_columns(table, family="cpu_est")
    names = [f.name for f in derived_fields("cpu_est")]
    _check_nulls(est, names)
    rows = est.to_pylist()
    humaneval_t0 = next(r for r in rows if r["benchmark"] == "humaneval" and r["temperature"] == 0)
    assert humaneval_t0[CORRECT_ANSWERS] == pytest.approx(1.0)
    assert humaneval_t0["cpu_est_energy_per_correct_answer_wh"] == pytest.approx(
        humaneval_t0["cpu_est_energy_per_question_wh"] * 3
    )
    gpu = add_derived_columns(table).to_pylist()
    assert all(r["gpu_energy_per_correct_answer_wh"] is None for r in gpu)
    assert all("no GPU" in r["score_per_gpu_wh_per_question_null_reason"] for r in gpu)


def test_refuses_a_missing_column_twice_derived_columns_and_an_unknown_family():
    table = study_table()
    with pytest.raises(UserError, match="no column score"):
        add_derived_columns(table.drop_columns(["score"]))
    with pytest.raises(UserError, match="already has derived"):
        add_derived_columns(add_derived_columns(table))
    with pytest.raises(UserError, match="not one of"):
        add_derived_columns(table, family="tpu")
