"""The study's view (evalwatt.table.study_view): per setting the fastest max_connections, per
(model, benchmark) the lowest temperature's; nulls and ties decided one way for every user."""

from __future__ import annotations

import random

import pytest
from study_table import cell_row as _row

from evalwatt.table.final import TABLE_SCHEMA, to_table
from evalwatt.table.study_view import best_view, fastest, study_rows, study_view


def _rows(text):
    """Rows from lines "model benchmark temperature max_connections duration" ("-": a null
    duration; "#" starts a comment)."""
    rows = []
    for line in text.strip().splitlines():
        model, bench, temperature, conns, duration = line.split("#")[0].split()
        seconds = None if duration == "-" else float(duration)
        rows.append(_row(model, bench, float(temperature), int(conns), seconds))
    return rows


def _kept(rows, view):
    return [r["cell_id"] for r in view.take(rows)]


def test_best_view_keeps_the_fastest_max_connections():
    rows = _rows(
        """
        m1 piqa 0.0 10 50.0
        m1 piqa 0.0 100 30.0
        m1 piqa 0.0 1000 40.0
        m1 piqa 0.7 10 20.0
        m1 piqa 0.7 100 25.0
        m1 humaneval 0.0 10 -
        m1 humaneval 0.0 100 9.0
        m2 piqa 0.0 1000 5.0
        m2 piqa 0.0 10 -
        """
    )
    view = best_view(to_table(rows))
    assert view.schema.equals(TABLE_SCHEMA, check_metadata=True)  # derived columns kept
    best = view.to_pylist()
    assert [(r["model"], r["benchmark"], r["temperature"], r["max_connections"]) for r in best] == [
        ("m1", "humaneval", 0.0, 100),  # a null duration never beats a measured one
        ("m1", "piqa", 0.0, 100),
        ("m1", "piqa", 0.7, 10),
        ("m2", "piqa", 0.0, 1000),
    ]


def test_a_setting_without_any_duration_is_kept_and_named_undecided():
    rows = _rows(
        """
        m1 piqa 0.0 1000 -
        m1 piqa 0.0 100 -
        m1 piqa 0.7 10 3.0
        m2 piqa 0.0 10 -  # alone: nothing to decide
        """
    )
    view = fastest(rows)
    # kept with its nulls, not dropped: the smaller max_connections
    assert _kept(rows, view) == ["m1__piqa__t0__c100", "m1__piqa__t0.7__c10", "m2__piqa__t0__c10"]
    assert view.undecided == ((1, 0),)  # its rows, the kept one first
    assert view.merged == 1


def test_ties_go_to_the_smaller_max_connections_whatever_the_row_order():
    rows = _rows(
        """
        m b 0.0 1000 12.0
        m b 0.0 10 12.0
        m b 0.0 100 12.0
        m b 0.0 1 13.0
        """
    )
    for seed in range(5):
        shuffled = random.Random(seed).sample(rows, len(rows))
        assert _kept(shuffled, fastest(shuffled)) == ["m__b__t0__c10"]
        assert study_rows(shuffled) == [rows[1]]
    assert fastest(rows).undecided == ()


def test_the_study_view_takes_the_lowest_temperature_then_the_fastest():
    rows = _rows(
        """
        m2 piqa 0.7 10 1.0  # faster, but not the lowest temperature
        m2 piqa 0.0 10 -
        m2 piqa 0.0 100 8.0
        m1 piqa 0.7 100 2.0
        m1 humaneval 0.0 10 4.0
        """
    )
    view = study_view(rows)
    assert _kept(rows, view) == [
        "m1__humaneval__t0__c10",
        "m1__piqa__t0.7__c100",
        "m2__piqa__t0__c100",
    ]
    assert view.merged == 1 and view.undecided == ()


def test_a_table_without_the_choice_columns_keeps_single_rows_and_names_the_others():
    """A user's own table (the GLMM takes one) may lack temperature, max_connections and
    inference_duration_s: one row per pair passes, several are undecided, not guessed."""
    rows = [
        {"model": "a", "benchmark": "x", "wh": 1.0},
        {"model": "b", "benchmark": "x", "wh": 2.0},
        {"model": "b", "benchmark": "x", "wh": 3.0},
    ]
    view = study_view(rows)
    assert view.take(rows) == [rows[0], rows[1]]
    assert view.undecided == ((1, 2),)
    # a known temperature wins over a missing one
    mixed = [{**rows[1], "temperature": None}, {**rows[2], "temperature": 0.7}]
    assert study_rows(mixed) == [mixed[1]]


@pytest.mark.parametrize("view", [fastest, study_view])
def test_an_empty_table_is_an_empty_view(view):
    assert view([]).kept == () and view([]).merged == 0
