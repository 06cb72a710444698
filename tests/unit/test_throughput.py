"""The shipped throughput table (config/throughput.yaml): its fits agree with the published
points they were fitted to, every number has a source, and every model of the study and of the
demo finds its row (none falls back to expected_s_per_sample)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from evalwatt.config.load import load_config
from evalwatt.plan.estimate import device_of, rates_of
from evalwatt.plan.matrix import plan_run
from evalwatt.plan.throughput import DEFAULT_TABLE, read_table

REPO = Path(__file__).resolve().parents[2]
TABLE = read_table(DEFAULT_TABLE)


@pytest.mark.parametrize("row", [r for r in TABLE.rows if r.points], ids=lambda r: r.name)
def test_each_fit_is_within_a_quarter_of_its_published_points(row):
    for in_flight, measured in row.points:
        if in_flight <= row.max_batch:
            assert row.tokens_per_s(in_flight) == pytest.approx(measured, rel=0.25), in_flight


def test_every_row_has_a_source_and_rows_of_a_class_do_not_overlap():
    for row in TABLE.rows:
        assert len(row.source) > 40, row.name
    assert all(len(p.source) > 3 for p in TABLE.precision_factors)
    classes: dict[tuple, list[tuple[float, float]]] = {}
    for row in TABLE.rows:
        key = (row.device, row.gpu, row.server, row.architecture)
        classes.setdefault(key, []).append(row.active_params_b)
    for ranges in classes.values():
        ranges.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges)), ranges


def test_throughput_saturates_with_requests_in_flight():
    row = next(r for r in TABLE.rows if r.name == "h100-dense-upto-12b")
    rates = [row.tokens_per_s(c) for c in (1, 10, 100, 1000)]
    assert rates == sorted(rates) and rates[-1] <= row.tokens_per_s_max
    assert row.tokens_per_s(10_000) == row.tokens_per_s(row.max_batch)


@pytest.mark.parametrize("name", ["peren.yaml", "config.yaml"])
def test_every_model_of_the_study_and_the_demo_has_a_row(name):
    config = load_config(REPO / "config" / name, check_environment=False)
    plan = plan_run(config)
    for model in plan.models:
        rates = rates_of(plan, config, model)
        assert rates.row is not None, rates.note
        expected = "cpu" if name == "config.yaml" else "gpu"
        assert device_of(plan, model) == rates.row.device == expected
