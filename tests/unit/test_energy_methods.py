"""The three energy methods on the shared H100 traces, with hand-computed expectations.

Phase energies are computed here from the CSV with a few independent lines (linear
interpolation of the counter between samples); durations come straight from the marks. The
literal figures (10,285.0 J, +9.67 %, +0.85 %) are the ones docs/methodology.md quotes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evalwatt.energy.corrected import JobTotal, corrected_whole_job, phase_durations
from evalwatt.energy.sources import TraceSource, Unavailable, with_generation_marks
from evalwatt.energy.terms import cell_terms, method_comparison
from evalwatt.energy.trace_files import read_timeline, read_trace


def _rows(path: Path) -> list[tuple[float, float]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return sorted((float(r["t_unix"]), float(r["energy_mj"])) for r in csv.DictReader(fh))


def _counter(rows: list[tuple[float, float]], t: float) -> float:
    """Linear between the samples around t (every mark used here falls inside the trace,
    except job_start and job_end, extrapolated at the slope of the first/last two samples)."""
    if t <= rows[0][0]:
        (ta, ea), (tb, eb) = rows[0], rows[1]
    elif t >= rows[-1][0]:
        (ta, ea), (tb, eb) = rows[-2], rows[-1]
    else:
        i = next(i for i in range(len(rows) - 1) if rows[i][0] <= t <= rows[i + 1][0])
        (ta, ea), (tb, eb) = rows[i], rows[i + 1]
    return ea + (eb - ea) * (t - ta) / (tb - ta)


@pytest.fixture(scope="module")
def shared(llama1b_dir):
    out = {}
    for name in ("cell", "baseline"):
        rows = _rows(llama1b_dir / f"{name}.csv")
        # the harness stamped its inference marks around the generate calls: they are the
        # generation window (what energy.terms does with a timeline without generation marks)
        marks = with_generation_marks(json.loads((llama1b_dir / f"{name}.marks.json").read_text()))

        def joules(a: str, b: str, rows=rows, marks=marks) -> float:
            return (_counter(rows, marks[b]) - _counter(rows, marks[a])) / 1000.0

        out[name] = {"rows": rows, "marks": marks, "J": joules}
    return out


def _terms(llama1b_dir: Path) -> dict:
    cell = TraceSource(
        read_trace(llama1b_dir / "cell.csv"), read_timeline(llama1b_dir / "cell.marks.json")
    )
    base = TraceSource(
        read_trace(llama1b_dir / "baseline.csv"),
        read_timeline(llama1b_dir / "baseline.marks.json"),
    )
    return cell_terms(cell, base, None, 96, 69120)


def test_phase_durations_by_hand(shared):
    cm, bm = shared["cell"]["marks"], shared["baseline"]["marks"]
    cell = phase_durations(cm)
    # cold: job_start..load_start (15 s cold idle + 16.27 s before loading), the pad and the
    # 2 s after it; loaded: ready..inference_start (10 s) and inference_end..worker_exited
    # (5 s of post idle + 1.685 s while the worker exits, the model still in memory)
    assert cell.cold_s == pytest.approx(
        (cm["load_start"] - cm["job_start"])
        + (cm["pad_start"] - cm["worker_exited"])
        + (cm["pad_end"] - cm["pad_start"])
        + (cm["job_end"] - cm["pad_end"]),
        abs=1e-9,
    )
    assert cell.cold_s == pytest.approx(63.270, abs=1e-3)
    assert cell.load_s == pytest.approx(4.111, abs=1e-3)
    assert cell.loaded_s == pytest.approx(10.000 + 5.000 + 1.685, abs=1e-3)
    assert cell.work_s == pytest.approx(75.284, abs=1e-3)
    assert cell.cold_idle_s == pytest.approx(30.0, abs=1e-3)  # no pad_settled: the whole pad
    assert cell.cold_power_s == pytest.approx(cell.cold_s + cell.load_s)
    assert cell.cold_s + cell.load_s + cell.loaded_s + cell.work_s == pytest.approx(
        cm["job_end"] - cm["job_start"], abs=1e-9
    )
    base = phase_durations(bm)
    assert base.cold_s == pytest.approx(30.216 + 30.0 + 2.0, abs=1e-3)
    assert base.load_s == pytest.approx(1.624, abs=1e-3)
    assert base.loaded_s == pytest.approx(10.000 + 1.503, abs=1e-3)
    assert base.work_s == 0.0


def test_the_three_methods_on_the_shared_trace(shared, llama1b_dir):
    c, b = shared["cell"]["J"], shared["baseline"]["J"]
    inference = c("inference_start", "inference_end")
    job, pad = c("job_start", "job_end"), c("pad_start", "pad_end")
    base_job, base_pad = b("job_start", "job_end"), b("pad_start", "pad_end")
    net = (job - pad) - (base_job - base_pad)
    # corrected, by hand: each job's cold idle from its own pad (these timelines have no
    # pad_settled), loading at that power, the loaded level from the baseline's total less
    # its cold and load seconds, the cell's total less both
    cp = phase_durations(shared["cell"]["marks"])
    bp = phase_durations(shared["baseline"]["marks"])
    p_cold, p_cold_base = pad / 30.0, base_pad / 30.0
    p_loaded = (base_job - p_cold_base * (bp.cold_s + bp.load_s)) / bp.loaded_s
    corrected = job - p_cold * (cp.cold_s + cp.load_s) - p_loaded * cp.loaded_s

    table = method_comparison(_terms(llama1b_dir))
    pr, wj, cw = table["phase_resolved"], table["whole_job"], table["corrected_whole_job"]
    assert pr.energy_j == pytest.approx(inference, rel=1e-6)
    assert wj.energy_j == pytest.approx(net, rel=1e-6)
    assert cw.energy_j == pytest.approx(corrected, rel=1e-6)
    # the figures the docs quote
    assert pr.energy_j == pytest.approx(10_285.0, abs=0.1)
    assert wj.energy_j == pytest.approx(11_279.7, abs=0.1)
    assert wj.gap_pct == pytest.approx(9.67, abs=0.01)
    # this trace's loader drew 115 W for 4.1 s (1.6 s in the baseline) where loading counts
    # at cold idle: +0.85 %
    assert cw.energy_j == pytest.approx(10_372.8, abs=0.1)
    assert cw.gap_pct == pytest.approx(0.85, abs=0.01)
    assert p_cold == pytest.approx(74.3, abs=0.05) and p_loaded == pytest.approx(119.8, abs=0.05)
    assert pr.gap_pct == 0.0
    # job_start/job_end lie a few ms outside the samples: extrapolated here at the counter's
    # slope, in evalwatt at the edge sample's power (a few mJ apart)
    assert wj.gap_j == pytest.approx(net - inference, abs=0.05)
    assert "P_loaded 119.8 W" in cw.formula


def test_where_the_study_methods_gap_comes_from(shared):
    """The +9.7 % of the study's method, phase by phase: the loaded idle after inference that
    only the cell has (61 %), the longer load (30 %), the longer wait before loading (9 %).
    The 10 s idle after ready is in both jobs and cancels."""
    c, b = shared["cell"]["J"], shared["baseline"]["J"]
    gap = (c("job_start", "job_end") - c("pad_start", "pad_end")) - c(
        "inference_start", "inference_end"
    )
    gap -= b("job_start", "job_end") - b("pad_start", "pad_end")
    post_idle = c("inference_end", "post_idle_end")
    load = c("load_start", "ready") - b("load_start", "ready")
    wait = c("cold_idle_end", "load_start") - b("cold_idle_end", "load_start")
    ready_idle = c("ready", "ready_idle_end") - b("ready", "ready_idle_end")
    assert post_idle / gap == pytest.approx(0.61, abs=0.01)
    assert load / gap == pytest.approx(0.30, abs=0.01)
    assert wait / gap == pytest.approx(0.09, abs=0.01)
    assert abs(ready_idle) / gap < 0.02  # both have it


def _synthetic(levels: dict[str, float], marks: dict[str, float]) -> float:
    """Job total of a job whose every state draws a constant power (W)."""
    p = phase_durations(marks)
    return (
        levels["cold"] * p.cold_s
        + levels["load"] * p.load_s
        + levels["loaded"] * p.loaded_s
        + levels["work"] * p.work_s
    )


CELL = {  # evalwatt's runtime: exit once the server is gone, in-job scoring, then the pad
    "job_start": 0.0,
    "load_start": 2.0,
    "ready": 62.0,
    "inference_start": 70.0,  # 8 s of `import inspect_ai`, the model loaded
    "generation_start": 70.0,  # generation marks at the inference marks: no Inspect overhead
    "generation_end": 670.0,
    "inference_end": 670.0,
    "exit": 680.0,
    "scoring_start": 680.0,
    "scoring_end": 740.0,  # unit tests at cold idle
    "pad_start": 740.0,
    "pad_end": 760.0,
    "job_end": 760.0,
}
BASE = {
    "job_start": 0.0,
    "load_start": 1.0,
    "ready": 41.0,
    "exit": 45.0,
    "pad_start": 45.0,
    "pad_end": 305.0,
    "job_end": 305.0,
}


def test_job_total_source_gives_the_work_exactly_when_levels_hold():
    """A job-total source (sacct, CEEMS: E_job only, no trace) with both timelines and the
    pads' energy recovers the inference energy when each state has one power level and
    loading draws cold-idle power (the method's assumption)."""
    levels = {"cold": 72.0, "load": 72.0, "loaded": 120.0, "work": 650.0}
    cell_total, base_total = _synthetic(levels, CELL), _synthetic(levels, BASE)
    out = corrected_whole_job(
        JobTotal(cell_total, CELL, cold_idle_j=72.0 * 20),
        JobTotal(base_total, BASE, cold_idle_j=72.0 * 260),
    )
    assert out.energy_j == pytest.approx(650.0 * 600, rel=1e-12)
    assert out.loaded_w == pytest.approx(120.0)
    # the study's method on the same jobs counts the extra load, the import, the loaded idle
    # after inference and the scoring as inference
    net = (cell_total - 72.0 * 20) - (base_total - 72.0 * 260)
    assert net - 650.0 * 600 == pytest.approx(
        72.0 * (60 - 40) + 120.0 * 8 + 120.0 * 10 - 120.0 * 4 + 72.0 * (2 + 60 - 1), rel=1e-12
    )
    # a cell whose pad is too short takes its baseline's cold idle, and says so
    short = dict(CELL, pad_end=745.0, job_end=745.0)
    got = corrected_whole_job(
        JobTotal(_synthetic(levels, short), short, cold_idle_j=72.0 * 5),
        JobTotal(base_total, BASE, cold_idle_j=72.0 * 260),
    )
    assert got.energy_j == pytest.approx(650.0 * 600, rel=1e-12)
    assert "baseline's" in got.cold_from
    # a stated cold-idle power (sacct cannot cut the pad) and the source's wider span
    span = (-3.0, 762.0)
    wide = _synthetic(levels, CELL) + 72.0 * 5
    got = corrected_whole_job(
        JobTotal(wide, CELL, cold_idle_w=72.0, span=span),
        JobTotal(base_total, BASE, cold_idle_w=72.0),
    )
    assert got.energy_j == pytest.approx(650.0 * 600, rel=1e-12)


def test_corrected_is_null_with_reason_when_an_input_is_missing():
    with pytest.raises(Unavailable, match="no pad energy and no stated cold-idle power"):
        corrected_whole_job(JobTotal(1e5, CELL), JobTotal(2e4, BASE))
    with pytest.raises(Unavailable, match="no mark ready"):
        corrected_whole_job(
            JobTotal(1e5, CELL, cold_idle_j=1440.0),
            JobTotal(2e4, {k: v for k, v in BASE.items() if k != "ready"}, cold_idle_j=18720.0),
        )
    with pytest.raises(Unavailable, match="no known GPU state after it"):
        corrected_whole_job(
            JobTotal(1e5, {**CELL, "mystery": 5.0}, cold_idle_j=1440.0),
            JobTotal(2e4, BASE, cold_idle_j=18720.0),
        )
    with pytest.raises(Unavailable, match="below its cold idle"):
        corrected_whole_job(
            JobTotal(1e5, CELL, cold_idle_j=1440.0), JobTotal(100.0, BASE, cold_idle_j=1e4)
        )
    with pytest.raises(Unavailable, match=r"does not hold job_start\.\.job_end"):
        corrected_whole_job(
            JobTotal(1e5, CELL, cold_idle_j=1440.0, span=(5.0, 700.0)),
            JobTotal(2e4, BASE, cold_idle_j=18720.0),
        )


def test_cell_terms_without_a_baseline_give_a_null_corrected_term(llama1b_dir):
    cell = TraceSource(
        read_trace(llama1b_dir / "cell.csv"), read_timeline(llama1b_dir / "cell.marks.json")
    )
    out = cell_terms(cell, None, None, 96, None)
    corrected = out.terms["corrected"]
    assert corrected.energy_j is None
    assert "no baseline readings" in corrected.null_reason
    assert out.terms["corrected_gap"].energy_j is None
    assert method_comparison(out)["corrected_whole_job"].gap_pct is None


def test_loading_above_cold_idle_is_what_remains():
    """Where loading draws more than cold idle, the excess of the baseline's load lands in its
    P_loaded and is taken from the cell in proportion to the loaded seconds: what remains is
    the cell's excess less that share, the error the docs state."""
    levels = {"cold": 72.0, "load": 80.0, "loaded": 120.0, "work": 650.0}
    cell_total, base_total = _synthetic(levels, CELL), _synthetic(levels, BASE)
    out = corrected_whole_job(
        JobTotal(cell_total, CELL, cold_idle_j=72.0 * 20),
        JobTotal(base_total, BASE, cold_idle_j=72.0 * 260),
    )
    cp, bp = phase_durations(CELL), phase_durations(BASE)
    excess_cell, excess_base = 8.0 * cp.load_s, 8.0 * bp.load_s
    assert out.loaded_w == pytest.approx(120.0 + excess_base / bp.loaded_s)
    expected_error = excess_cell - excess_base * cp.loaded_s / bp.loaded_s
    assert out.energy_j - 650.0 * 600 == pytest.approx(expected_error, rel=1e-9)


def test_the_settled_pad_gives_cold_idle():
    """With a ``pad_settled`` mark the decay after the server's exit (pad_start..pad_settled)
    is left out of P_cold."""
    cell = {**CELL, "pad_settled": 743.0}
    base = {**BASE, "pad_settled": 48.0}
    assert phase_durations(cell).cold_idle_s == pytest.approx(17.0)
    levels = {"cold": 72.0, "load": 72.0, "loaded": 120.0, "work": 650.0}
    out = corrected_whole_job(
        JobTotal(_synthetic(levels, cell), cell, cold_idle_j=72.0 * 17),
        JobTotal(_synthetic(levels, base), base, cold_idle_j=72.0 * 257),
    )
    assert out.cold_w == pytest.approx(72.0) and "settled pad, 17.0 s" in out.cold_from
    assert out.energy_j == pytest.approx(650.0 * 600, rel=1e-12)
