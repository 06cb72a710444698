"""Figures from the study-shaped table, the demo-like table and a real trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_table import demo_table, study_table

pytest.importorskip(
    "matplotlib", reason="the figures need matplotlib (not installed in this environment)"
)

from evalwatt.base.errors import UserError
from evalwatt.report.figures import make_figures, power_timeline, write_index
from evalwatt.report.figures._common import (
    boxes_overlap,
    new_figure,
    pareto_front,
    place_labels,
)
from evalwatt.report.figures.tables import match_models
from evalwatt.report.figures.timeline import phases
from evalwatt.table.study_view import study_rows

TRACES = Path(__file__).resolve().parents[1] / "data" / "traces" / "h100-hf-llama1b"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BENCHMARKS = ("healthbench", "humaneval", "piqa", "simpleqa_verified", "writingbench", "zerobench")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    table = study_table(temperatures=(0.0, 0.7), max_connections=(10, 100, 1000))
    out = tmp_path_factory.mktemp("study")
    return out, make_figures(table, out)


def _check_files(result):
    assert [p.suffix for p in result.files] == [".png", ".svg"]
    png, svg = result.files
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert svg.read_text().lstrip().startswith("<?xml")


def test_the_study_shaped_table_draws_every_figure(study):
    out, results = study
    names = [r.name for r in results]
    assert names == [
        *(f"score_vs_energy__{b}" for b in BENCHMARKS),
        "energy_vs_time_tokens",
        "energy_vs_params",
        "paired__reasoning",
        "paired__quantized",
        "paired__moe",
        "paired__temperature",
        "max_connections",
    ]
    for r in results:
        assert r.skipped is None, (r.name, r.skipped)
        _check_files(r)
        assert r.columns and all(c in r.caption for c in r.columns if c.endswith("_wh")), r.name
    write_index(results, out / "figures.json")
    index = json.loads((out / "figures.json").read_text())
    assert [e["name"] for e in index] == names


def test_same_table_same_bytes(study, tmp_path):
    _, results = study
    table = study_table(temperatures=(0.0, 0.7), max_connections=(10, 100, 1000))
    again = make_figures(table, tmp_path)
    for a, b in zip(results, again, strict=True):
        for pa_, pb in zip(a.files, b.files, strict=True):
            assert pa_.read_bytes() == pb.read_bytes(), pa_.name


def test_the_demo_like_table_draws_what_it_can_and_says_why_not_the_rest(tmp_path):
    results = {r.name: r for r in make_figures(demo_table(), tmp_path)}
    drawn = {n for n, r in results.items() if r.skipped is None}
    assert drawn == {
        "score_vs_energy__humaneval",
        "score_vs_energy__writingbench",
        "energy_vs_time_tokens",
        "paired__temperature",
    }
    for name in drawn:
        _check_files(results[name])
        # the demo has no GPU: the figures say they show the CPU-time estimate
        assert "ESTIMATE" in results[name].caption and "cpu_est_" in results[name].caption
    assert results["paired__reasoning"].skipped == "no pair in this table"
    assert "one max_connections" in results["max_connections"].skipped
    assert "two or more different energies" in results["energy_vs_params"].skipped
    assert not list(tmp_path.glob("paired__moe.*"))


def test_a_table_without_the_columns_is_refused(tmp_path):
    with pytest.raises(UserError, match="no column score"):
        make_figures(study_table().drop_columns(["score"]), tmp_path)
    with pytest.raises(UserError, match="not one of"):
        make_figures(study_table(), tmp_path, family="tpu")


def test_labels_of_the_busiest_panel_do_not_overlap():
    rows = [r for r in study_rows(study_table().to_pylist()) if r["benchmark"] == "piqa"]
    assert len(rows) >= 17
    fig = new_figure(7.5, 5.2)
    ax = fig.add_subplot()
    xs = [r["gpu_energy_per_question_wh"] for r in rows]
    ys = [r["score"] for r in rows]
    ax.scatter(xs, ys)
    ax.set_xscale("log")
    texts = place_labels(ax, xs, ys, [r["model"] for r in rows])
    fig.draw_without_rendering()
    assert boxes_overlap(texts) == []
    # a cluster of identical points still gets separate labels
    fig = new_figure(4, 3)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    texts = place_labels(ax, [5.0] * 8, [5.0] * 8, [f"model-{i}" for i in range(8)])
    fig.draw_without_rendering()
    assert boxes_overlap(texts) == []


def test_pareto_front():
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.7), (0.5, 0.1), (4.0, 0.9)]
    assert pareto_front(points) == [4, 0, 2, 5]


def test_models_are_paired_by_what_differs_and_nothing_else():
    view = study_rows(study_table().to_pylist())
    assert match_models(view, "reasoning") == [
        ("DeepSeek-R1-Distill-Qwen-32B", "Qwen2.5-32B-Instruct"),
        ("QwQ-32B", "Qwen2.5-32B-Instruct"),
        ("Qwen3-30B-A3B-Thinking-2507", "Qwen3-30B-A3B-Instruct-2507"),
    ]
    assert match_models(view, "quantized") == [
        ("QwQ-32B-AWQ", "QwQ-32B"),
        ("Qwen3-30B-A3B-Instruct-2507-FP8", "Qwen3-30B-A3B-Instruct-2507"),
        ("Qwen3-VL-30B-A3B-Instruct-FP8", "Qwen3-VL-30B-A3B-Instruct"),
    ]
    moe = dict(match_models(view, "moe"))
    assert moe["Qwen3-30B-A3B-Instruct-2507"] == "Qwen2.5-32B-Instruct"
    assert moe["Qwen3-30B-A3B-Thinking-2507"] == "QwQ-32B"


def test_the_power_timeline_of_a_real_trace(tmp_path):
    marks = json.loads((TRACES / "cell.marks.json").read_text())
    assert [p[0] for p in phases(marks)] == [
        "start-up",
        "load",
        "loaded, idle",
        "generation",
        "after generation",
        "shutdown",
        "padding",
        "after padding",
    ]
    result = power_timeline(TRACES / "cell.csv", TRACES / "cell.marks.json", tmp_path)
    assert result.skipped is None
    _check_files(result)
    again = power_timeline(TRACES / "cell.csv", TRACES / "cell.marks.json", tmp_path / "again")
    assert result.files[0].read_bytes() == again.files[0].read_bytes()
    baseline = power_timeline(
        TRACES / "baseline.csv", TRACES / "baseline.marks.json", tmp_path, name="baseline"
    )
    assert baseline.skipped is None


# --- the report: every figure known in advance, a card where there is nothing to draw ---------


def _report_specs(benchmarks=("humaneval", "writingbench")):
    from evalwatt.report.figure_specs import figure_specs

    return figure_specs(benchmarks, [("cell", "c1"), ("baseline", "b1")])


def test_the_report_names_every_figure_make_figures_draws(study):
    from evalwatt.report.figure_specs import figure_specs

    _, results = study
    specs = figure_specs(BENCHMARKS, [])
    assert [s.name for s in specs] == [r.name for r in results]
    captions = Path(__file__).resolve().parents[2] / "workflow" / "report"
    for spec in _report_specs():
        assert (captions / spec.caption).is_file(), spec.caption
    # one label per result: two labels could become a toggle that hides half the results
    assert all(len(s.label) == 2 for s in specs)


def test_the_report_figures_of_the_demo_table_draw_or_say_why(tmp_path):
    from PIL import Image

    from evalwatt.report.figures.report import draw_report_figures

    specs = _report_specs()
    outputs = {s.name: tmp_path / "figures" / f"{s.name}.png" for s in specs}
    cell = tmp_path / "cells" / "c1"
    cell.mkdir(parents=True)  # no trace at all
    baseline = tmp_path / "baselines" / "b1"
    baseline.mkdir(parents=True)
    (baseline / "trace-cpu-est.parquet").write_bytes(b"not parquet")
    results = draw_report_figures(
        demo_table(),
        specs,
        outputs,
        {"power_timeline__cell": cell, "power_timeline__baseline": baseline},
        tmp_path / "figures" / "figures.json",
    )
    by_name = {r.name: r for r in results}
    assert "has no trace file" in by_name["power_timeline__cell"].skipped
    assert "not a readable Parquet file" in by_name["power_timeline__baseline"].skipped
    assert by_name["paired__reasoning"].skipped and by_name["max_connections"].skipped
    assert by_name["paired__temperature"].skipped is None  # both temperatures: drawn
    for spec in specs:  # every declared output exists: drawn, or a card that says why
        png = outputs[spec.name]
        assert png.read_bytes()[:8] == PNG_MAGIC, spec.name
        image = Image.open(png).convert("L")
        low, high = image.getextrema()
        assert high - low > 100, spec.name  # text or lines on a background, not blank
    index = json.loads((tmp_path / "figures" / "figures.json").read_text())
    assert [e["name"] for e in index] == [s.name for s in specs]
    assert index[[s.name for s in specs].index("max_connections")]["skipped"]


def test_the_plan_page_shows_the_cost_preview(tmp_path):
    from evalwatt.report.figures.report import write_plan_page

    hours = {"generation": 1.5, "loading": 0.25, "reference_idle": 0.0, "idle": 0.0,
             "padding": 0.125, "judging_generation": 0.0, "judging_other": 0.0}  # fmt: skip
    plan = {
        "schema_version": 2,
        "run": "demo",
        "models": [
            {"model": "m", "backend": "vllm", "gpus": 2, "cpus": 48, "vram_gb": 70.4,
             "gpu_memory_gb": 80.0, "total_params_b": 27.1, "weight_bits": 16,
             "attention_heads": 32, "kv_heads": 8, "reason": "70.4 GB | fits 2 GPUs"},
        ],
        "baselines": [],
        "cells": [
            {"id": "m__piqa__t0__c10", "model": "m", "benchmark": "piqa", "temperature": 0.0,
             "max_connections": 10, "baseline": "m__b", "judge": None,
             "sampling": {"top_p": None, "top_k": None, "max_tokens": None}},
        ],
        "checks": [],
        "cost": {
            "execution": "per-cell", "cells": 1, "judged_cells": 0,
            "modes": [
                {"execution": execution, "jobs": jobs,
                 "gpu_hours": hours, "job_hours": hours, "gpu_hours_total": 1.875,
                 "overhead_share": 0.2}
                for execution, jobs in (
                    ("per-cell", {"cell": 1, "baseline": 1, "model": 0, "judge_pass": 0}),
                    ("per-model", {"cell": 0, "baseline": 0, "model": 1, "judge_pass": 0}),
                )
            ],
            "rates": [{"model": "m", "source": "H100 rows | a row", "load_s": 120.0,
                       "decode_tokens_per_s": {"10": 612.4}}],
            "assumptions": {"server_start_s": 60.0, "load_gb_per_s": 1.0,
                            "accounting_window_s": 300.0, "pad_margin_s": 30.0,
                            "inspect_overhead_s": 10.0,
                            "throughput_table": "config/throughput.yaml", "calibration": None},
        },
    }  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    write_plan_page(tmp_path / "plan.json", tmp_path / "plan.html")
    page = (tmp_path / "plan.html").read_text()
    assert "<table>" in page and "GPU-hour preview" in page
    assert "<td>generation</td>\n<td>1.50</td>" in page
    assert "<td>total</td>\n<td>1.88</td>" in page  # the total, as the plan rule computed it
    assert "<td>outside generation</td>\n<td>20.0 %</td>" in page
    assert "<td>10: 612</td>" in page and "H100 rows / a row" in page
    assert "70.4 GB / fits 2 GPUs" in page  # a | in a reason does not break the table
    assert "<code>accounting_window_s</code> = 300," in page  # as written, not 300.0
    assert "<code>calibration</code> = null" in page
