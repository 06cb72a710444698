"""Energy maths: counter interpolation over windows, the terms of a cell, the `energy` CLI.

Expected values are computed here with a few independent lines (reading the CSV with the csv
module and interpolating by hand), or by hand for synthetic traces.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalwatt.base.vocabulary import Family
from evalwatt.contracts.record import FamilyUnavailable, TermRecord
from evalwatt.energy.readings import cell_energy
from evalwatt.energy.sources import TraceSource, column_prefix
from evalwatt.energy.terms import cell_terms, combine, of_window, per_unit
from evalwatt.energy.trace import CounterWentBackwards, TraceError, WindowEnergy
from evalwatt.energy.trace_files import read_timeline, read_trace
from evalwatt.ops.cli import main as cli_main
from evalwatt.sampling.sampler import SCHEMAS, TraceWriter
from evalwatt.table.cells import energy_columns

T0 = 1_700_000_000.0  # synthetic traces start here (unix seconds)


# --- independent reference maths ------------------------------------------------------------


def _load_csv(path: Path) -> list[tuple[float, float, float]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [
            (float(r["t_unix"]), float(r["energy_mj"]), float(r["power_mw"]))
            for r in csv.DictReader(fh)
        ]
    rows.sort()
    return rows


def _counter_at(rows: list[tuple[float, float, float]], t: float) -> float:
    """Counter (mJ) at t: linear between the samples around t; outside, the edge sample's
    power times the distance to it."""
    if t <= rows[0][0]:
        t0, e0, p0 = rows[0]
        return e0 + p0 * (t - t0)
    if t >= rows[-1][0]:
        t1, e1, p1 = rows[-1]
        return e1 + p1 * (t - t1)
    for (ta, ea, _), (tb, eb, _) in itertools.pairwise(rows):
        if ta <= t <= tb:
            return ea + (eb - ea) * (t - ta) / (tb - ta)
    raise AssertionError("unreachable")


def _joules(rows, start: float, end: float) -> float:
    return (_counter_at(rows, end) - _counter_at(rows, start)) / 1000.0


def _marks(path: Path) -> dict[str, float]:
    return json.loads(path.read_text(encoding="utf-8"))


# --- the real H100 traces ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(llama1b_dir):
    here = llama1b_dir
    return {
        "cell_csv": here / "cell.csv",
        "cell_marks": here / "cell.marks.json",
        "base_csv": here / "baseline.csv",
        "base_marks": here / "baseline.marks.json",
        "cell_rows": _load_csv(here / "cell.csv"),
        "base_rows": _load_csv(here / "baseline.csv"),
        "cell_m": _marks(here / "cell.marks.json"),
        "base_m": _marks(here / "baseline.marks.json"),
    }


def test_real_trace_is_read_as_one_nvml_gpu(real):
    trace = read_trace(real["cell_csv"])
    assert trace.source == "nvml" and trace.domain == "gpu" and trace.is_estimate is False
    assert trace.devices == ["0"]
    assert len(trace.series["0"].t_unix) == len(real["cell_rows"])


def test_real_inference_energy_matches_independent_interpolation(real):
    m = real["cell_m"]
    expected = _joules(real["cell_rows"], m["inference_start"], m["inference_end"])
    window = read_trace(real["cell_csv"]).window(m["inference_start"], m["inference_end"])
    assert window.energy_j == pytest.approx(expected, rel=1e-6)
    assert window.extrapolated_s == 0.0
    # an H100 generating for 75 s: several kJ, between idle and TDP on average
    watts = window.energy_j / window.duration_s
    assert 70 < watts < 700


def test_real_inference_energy_close_to_raw_samples_inside_the_window(real):
    m = real["cell_m"]
    inside = [e for t, e, _ in real["cell_rows"] if m["inference_start"] <= t <= m["inference_end"]]
    raw_j = (inside[-1] - inside[0]) / 1000.0
    window = read_trace(real["cell_csv"]).window(m["inference_start"], m["inference_end"])
    assert window.energy_j == pytest.approx(raw_j, rel=0.005)
    assert window.energy_j > raw_j  # the window is slightly longer than its inner samples


def test_real_power_integral_is_the_trapezoid_of_inner_samples(real):
    m = real["cell_m"]
    pts = [
        (t, p) for t, _, p in real["cell_rows"] if m["inference_start"] <= t <= m["inference_end"]
    ]
    trapezoid_j = (
        sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(pts)) / 1e3
    )
    window = read_trace(real["cell_csv"]).window(m["inference_start"], m["inference_end"])
    assert window.power_integral_j == pytest.approx(trapezoid_j, rel=1e-9)
    assert window.power_integral_j == pytest.approx(window.energy_j, rel=0.01)


def test_real_terms_whole_job_method(real):
    cm, bm = real["cell_m"], real["base_m"]
    cell = TraceSource(read_trace(real["cell_csv"]), read_timeline(real["cell_marks"]))
    base = TraceSource(read_trace(real["base_csv"]), read_timeline(real["base_marks"]))
    out = cell_terms(cell, base, None, samples_completed=96, output_tokens=int(cm["output_tokens"]))
    terms = out.terms
    c, b = real["cell_rows"], real["base_rows"]
    expected = {
        "inference": _joules(c, cm["inference_start"], cm["inference_end"]),
        "job": _joules(c, cm["job_start"], cm["job_end"]),
        "pad": _joules(c, cm["pad_start"], cm["pad_end"]),
        "baseline_job": _joules(b, bm["job_start"], bm["job_end"]),
        "baseline_pad": _joules(b, bm["pad_start"], bm["pad_end"]),
    }
    for name, joules in expected.items():
        assert terms[name].energy_j == pytest.approx(joules, rel=1e-6), name
    e = expected
    net = (e["job"] - e["pad"]) - (e["baseline_job"] - e["baseline_pad"])
    assert terms["net"].energy_j == pytest.approx(net, rel=1e-6)
    gap = terms["net"].energy_j - terms["inference"].energy_j
    assert terms["gap"].energy_j == pytest.approx(gap, rel=1e-9)
    assert out.gap_pct == pytest.approx(100 * gap / expected["inference"], rel=1e-6)
    # job_start falls 0.025 s before the first sample: extrapolated, and said so
    first_t = c[0][0]
    assert terms["job"].extrapolated_s == pytest.approx(
        max(first_t - cm["job_start"], cm["job_end"] - c[-1][0]), abs=1e-6
    )
    per = out.per_unit
    assert per["inference_per_question"].value_wh == pytest.approx(
        expected["inference"] / 3600 / 96, rel=1e-6
    )
    assert per["net_per_question"].value_wh == pytest.approx(net / 3600 / 96, rel=1e-6)
    assert per["inference_per_1k_output_tokens"].value_wh == pytest.approx(
        expected["inference"] / 3600 / (69120 / 1000), rel=1e-6
    )
    assert terms["judge"].energy_j is None and terms["judge"].null_reason


def test_energy_cli_on_the_real_traces(real, capsys):
    cm, bm = real["cell_m"], real["base_m"]
    code = cli_main(
        [
            "energy",
            "--trace",
            str(real["cell_csv"]),
            "--timeline",
            str(real["cell_marks"]),
            "--baseline-trace",
            str(real["base_csv"]),
            "--baseline-timeline",
            str(real["base_marks"]),
            "--questions",
            "96",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    c, b = real["cell_rows"], real["base_rows"]
    inference = _joules(c, cm["inference_start"], cm["inference_end"])
    assert out["source"] == "nvml" and out["is_estimate"] is False and out["devices"] == ["0"]
    assert out["inference_energy_j"] == pytest.approx(inference, rel=1e-6)
    assert out["inference_duration_s"] == pytest.approx(
        cm["inference_end"] - cm["inference_start"], abs=1e-9
    )
    inside = [e for t, e, _ in c if cm["inference_start"] <= t <= cm["inference_end"]]
    raw = (inside[-1] - inside[0]) / 1000.0
    assert out["check_counter_samples_inside_window_j"] == pytest.approx(raw, rel=1e-12)
    assert out["inference_energy_j"] == pytest.approx(raw, rel=0.005)
    whole = out["whole_job"]
    job = _joules(c, cm["job_start"], cm["job_end"]) - _joules(c, cm["pad_start"], cm["pad_end"])
    base = _joules(b, bm["job_start"], bm["job_end"]) - _joules(b, bm["pad_start"], bm["pad_end"])
    net = job - base
    assert whole["net"] == pytest.approx(net, rel=1e-6)
    assert whole["net"] == pytest.approx(
        (whole["job"] - whole["pad"]) - (whole["baseline_job"] - whole["baseline_pad"]), rel=1e-12
    )
    assert out["gap_j"] == pytest.approx(whole["net"] - out["inference_energy_j"], rel=1e-9)
    # output tokens come from the marks (69,120) when not given
    assert out["per_unit_wh"]["inference_per_1k_output_tokens"] == pytest.approx(
        inference / 3600 / 69.12, rel=1e-6
    )
    assert out["per_unit_wh"]["inference_per_question"] == pytest.approx(
        inference / 3600 / 96, rel=1e-6
    )


def test_energy_cli_without_baseline_gives_null_net_with_reason(real, capsys):
    assert (
        cli_main(
            ["energy", "--trace", str(real["cell_csv"]), "--timeline", str(real["cell_marks"])]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["inference_energy_j"] > 0
    assert out["whole_job"]["net"] is None
    assert out["gap_j"] is None
    assert "no baseline readings" in out["terms"]["net"]["null_reason"]
    assert out["per_unit_wh"]["inference_per_question"] is None  # no --questions


# --- synthetic traces with hand-computed answers ------------------------------------------


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _constant(watts: float, seconds: int = 10, device: str | None = None) -> list[dict]:
    """1 Hz samples of a constant power: the counter grows by watts x 1000 mJ per second."""
    rows = []
    for i in range(seconds + 1):
        row = {
            "t_unix": T0 + i,
            "energy_mj": 5_000_000 + watts * 1000 * i,
            "power_mw": watts * 1000,
        }
        if device is not None:
            row = {"gpu": device, **row}
        rows.append(row)
    return rows


def test_constant_100_w_over_five_seconds(tmp_path):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _constant(100)))
    w = trace.window(T0 + 2.5, T0 + 7.5)
    assert w.energy_j == pytest.approx(500.0, rel=1e-9)
    assert w.duration_s == pytest.approx(5.0)
    assert w.extrapolated_s == 0.0
    # samples inside: 3, 4, 5, 6, 7 -> 4 s at 100 W
    assert w.power_integral_j == pytest.approx(400.0, rel=1e-9)


def test_window_on_sample_times_and_the_last_sample(tmp_path):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _constant(100)))
    assert trace.window(T0, T0 + 10).energy_j == pytest.approx(1000.0, rel=1e-9)
    assert trace.window(T0 + 3, T0 + 3).energy_j == 0.0


def test_two_devices_sum(tmp_path):
    rows = _constant(100, device="0") + _constant(50, device="1")
    trace = read_trace(_write_csv(tmp_path / "t.csv", rows))
    assert trace.devices == ["0", "1"]
    w = trace.window(T0 + 2.5, T0 + 7.5)
    assert w.per_device_j == pytest.approx({"0": 500.0, "1": 250.0}, rel=1e-9)
    assert w.energy_j == pytest.approx(750.0, rel=1e-9)


def test_edge_half_a_second_outside_is_extrapolated_with_edge_power(tmp_path):
    rows = _constant(100)
    rows[0]["power_mw"] = 200_000  # the first sample read 200 W: extrapolation must use it
    trace = read_trace(_write_csv(tmp_path / "t.csv", rows))
    w = trace.window(T0 - 0.5, T0 + 2)
    assert w.energy_j == pytest.approx(0.5 * 200 + 2 * 100, rel=1e-9)
    assert w.extrapolated_s == pytest.approx(0.5, abs=1e-6)
    w = trace.window(T0 + 8, T0 + 10.5)
    assert w.energy_j == pytest.approx(2 * 100 + 0.5 * 100, rel=1e-9)
    assert w.extrapolated_s == pytest.approx(0.5, abs=1e-6)


def test_edge_extrapolation_without_power_column_uses_counter_slope(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "power_mw"} for r in _constant(100)]
    trace = read_trace(_write_csv(tmp_path / "t.csv", rows))
    w = trace.window(T0 + 9, T0 + 10.5)
    assert w.energy_j == pytest.approx(150.0, rel=1e-9)
    assert w.power_integral_j is None


@pytest.mark.parametrize(("start", "end"), [(T0 - 2, T0 + 5), (T0 + 5, T0 + 12)])
def test_edge_two_seconds_outside_cannot_be_measured(tmp_path, start, end):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _constant(100)))
    with pytest.raises(TraceError, match=r"2\.000 s"):
        trace.window(start, end)


def test_window_ending_before_it_starts(tmp_path):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _constant(100)))
    with pytest.raises(TraceError, match="ends before it starts"):
        trace.window(T0 + 5, T0 + 4)


def test_edge_two_seconds_outside_becomes_a_null_term_with_reason(tmp_path):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _constant(100)))
    marks = {
        "job_start": T0,
        "job_end": T0 + 10,
        "pad_start": T0 + 9,
        "pad_end": T0 + 10,
        "inference_start": T0 + 5,
        "inference_end": T0 + 12,
    }
    out = cell_terms(TraceSource(trace, marks), None, None, 10, 1000)
    inference = out.terms["inference"]
    assert inference.energy_j is None  # never 0
    assert "after the last sample" in inference.null_reason
    assert out.terms["job"].energy_j == pytest.approx(1000.0)
    assert out.per_unit["inference_per_question"].value_wh is None
    assert out.per_unit["inference_per_question"].null_reason == inference.null_reason
    assert out.gap_pct is None


def test_missing_mark_becomes_a_null_term(tmp_path):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _constant(100)))
    marks = {"job_start": T0, "job_end": T0 + 10}
    out = cell_terms(TraceSource(trace, marks), None, None, 10, None)
    assert out.terms["pad"].energy_j is None
    assert "pad_start" in out.terms["pad"].null_reason


@pytest.mark.parametrize("n_rows", [0, 1])
def test_fewer_than_two_samples_is_an_error(tmp_path, n_rows):
    path = tmp_path / "t.csv"
    rows = _constant(100)[:n_rows]
    if rows:
        _write_csv(path, rows)
    else:
        path.write_text("t_unix,energy_mj,power_mw\n", encoding="utf-8")
    with pytest.raises(TraceError):
        read_trace(path)


def test_one_device_with_a_single_sample_is_an_error(tmp_path):
    rows = _constant(100, device="0") + _constant(50, device="1")[:1]
    with pytest.raises(TraceError, match="device 1: fewer than two samples"):
        read_trace(_write_csv(tmp_path / "t.csv", rows))


def test_csv_rows_out_of_order_are_sorted(tmp_path):
    rows = _constant(100)
    rows = rows[5:] + rows[:5]
    trace = read_trace(_write_csv(tmp_path / "t.csv", rows))
    assert trace.window(T0 + 2.5, T0 + 7.5).energy_j == pytest.approx(500.0, rel=1e-9)


def test_csv_times_with_different_digit_counts(tmp_path):
    # relative seconds 8 .. 12 at a constant 100 W: "10" sorts before "8" as text
    rows = [{"t_unix": t, "energy_mj": 100_000 * t, "power_mw": 100_000} for t in range(8, 13)]
    trace = read_trace(_write_csv(tmp_path / "t.csv", rows))
    assert trace.window(8.5, 11.5).energy_j == pytest.approx(300.0, rel=1e-9)


def test_unknown_trace_format(tmp_path):
    path = tmp_path / "t.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(TraceError, match="unknown trace format"):
        read_trace(path)


def test_read_timeline_accepts_both_shapes(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"job_start": 1.5, "output_tokens": 7}))
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"marks": {"job_start": 1.5, "job_end": 3}}))
    assert read_timeline(flat) == {"job_start": 1.5, "output_tokens": 7.0}
    assert read_timeline(nested) == {"job_start": 1.5, "job_end": 3.0}


def test_read_timeline_refuses_a_value_that_is_not_a_number(tmp_path):
    # it used to be skipped, so that a mark written as a string silently vanished
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"job_start": 1.5, "note": "x"}))
    with pytest.raises(TraceError, match=r"flat\.json: mark note is 'x', expected a number"):
        read_timeline(flat)


# --- a counter that goes backwards (driver reload, GPU reset) ---------------------------------


def _reset_at(rows: list[dict], i: int, to_mj: float = 1000.0) -> list[dict]:
    """The counter restarts at ``to_mj`` on sample ``i`` and grows as before from there."""
    shift = rows[i]["energy_mj"] - to_mj
    return [{**r, "energy_mj": r["energy_mj"] - shift} if j >= i else r for j, r in enumerate(rows)]


def test_counter_reset_inside_a_window_cannot_be_measured(tmp_path):
    # 100 W, the counter restarts at 1000 mJ at T0 + 5 (it read 5,500,000 mJ at T0 + 5 before)
    trace = read_trace(_write_csv(tmp_path / "t.csv", _reset_at(_constant(100), 5)))
    series = trace.series["0"]
    assert series.backward_steps(T0, T0 + 10) == [(T0 + 5, 5_500_000 - 1000 - 100_000)]
    with pytest.raises(CounterWentBackwards) as caught:
        trace.window(T0 + 2.5, T0 + 7.5)
    assert str(caught.value).startswith(
        f"counter of device 0 went backwards by 5399000 mJ at t={T0 + 5:.3f}"
    )
    # a window that only touches the sample before the step is not affected, nor one after it
    assert trace.window(T0 + 1, T0 + 4).energy_j == pytest.approx(300.0, rel=1e-9)
    assert trace.window(T0 + 5, T0 + 9.5).energy_j == pytest.approx(450.0, rel=1e-9)
    assert trace.window(T0 + 4, T0 + 4).energy_j == 0.0
    with pytest.raises(CounterWentBackwards):
        trace.window(T0 + 4.5, T0 + 4.5)  # between the two samples of the step
    # the raw-samples cross-check never subtracts across the step either
    assert trace.inner_counter_j(T0 + 2.5, T0 + 7.5) is None
    assert trace.inner_counter_j(T0 + 5, T0 + 9.5) == pytest.approx(400.0, rel=1e-9)


def test_counter_reset_becomes_a_null_term_with_its_reason_not_a_negative(tmp_path):
    trace = read_trace(_write_csv(tmp_path / "t.csv", _reset_at(_constant(100), 5)))
    marks = {
        "job_start": T0,
        "job_end": T0 + 10,
        "inference_start": T0 + 2.5,
        "inference_end": T0 + 7.5,
        "pad_start": T0 + 8,
        "pad_end": T0 + 10,
    }
    out = cell_terms(TraceSource(trace, marks), None, None, 10, 1000)
    terms = out.terms
    for name in ("inference", "job"):
        assert terms[name].energy_j is None, name
        assert "counter of device 0 went backwards by 5399000 mJ" in terms[name].null_reason
        assert str(tmp_path / "t.csv") in terms[name].null_reason
    assert terms["pad"].energy_j == pytest.approx(200.0, rel=1e-9)  # after the reset: fine
    assert terms["net"].energy_j is None and "went backwards" in terms["net"].null_reason
    assert out.per_unit["inference_per_question"].value_wh is None
    assert out.gap_pct is None


def test_counter_reset_at_the_edge_without_power_is_not_extrapolated(tmp_path):
    # no power column: the edge is extrapolated with the counter's slope, here negative
    rows = [{k: v for k, v in r.items() if k != "power_mw"} for r in _constant(100)]
    trace = read_trace(_write_csv(tmp_path / "t.csv", _reset_at(rows, 1)))
    with pytest.raises(CounterWentBackwards, match="went backwards"):
        trace.window(T0 - 0.8, T0 - 0.2)


def test_term_of_a_window_that_is_not_a_physical_energy_is_null():
    for bad in (-1.0, float("nan"), float("inf")):
        measure = WindowEnergy(T0, T0 + 1, bad, {"0": bad}, 0.0, None)
        term = of_window(measure, "E(b) - E(a)")
        assert term.energy_j is None and "not a finite energy" in term.null_reason


def test_net_may_be_negative_but_never_nan():
    terms = {"a": TermRecord.derived(1.0, "a"), "b": TermRecord.derived(3.0, "b")}
    assert combine("a - b", terms, {"a": 1, "b": -1}).energy_j == -2.0  # a real outcome, kept
    huge = {"a": TermRecord.derived(1.7e308, "a"), "b": TermRecord.derived(1.7e308, "b")}
    out = combine("a + b", huge, {"a": 1, "b": 1})
    assert out.energy_j is None and "not a finite number" in out.null_reason
    negative = per_unit(TermRecord.derived(7200.0, "x"), -4, "completed samples")
    assert negative.value_wh is None and "completed samples is -4" in negative.null_reason


# --- Parquet traces as the sampler writes them -----------------------------------------------


def _write_parquet(path: Path, columns: dict, meta: dict) -> Path:
    """Written the sampler's way: a ParquetWriter, the JSON metadata in the footer."""
    table = pa.table(columns)
    writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    writer.add_key_value_metadata({"evalwatt.trace": json.dumps(meta)})
    writer.close()
    return path


def _parquet_columns(watts_by_device: dict[str, float], counter: str = "energy_mj") -> dict:
    cols: dict[str, list] = {"t_unix": [], "device": [], counter: [], "power_mw": []}
    for device, watts in watts_by_device.items():
        for i in range(11):
            cols["t_unix"].append(T0 + i)
            cols["device"].append(device)
            cols[counter].append(1000.0 * watts * i)
            cols["power_mw"].append(1000.0 * watts)
    return cols


def test_parquet_trace_with_footer_metadata(tmp_path):
    path = _write_parquet(
        tmp_path / "trace-gpu.parquet",
        _parquet_columns({"0": 300.0, "1": 100.0}),
        {"source": "nvml", "domain": "gpu", "is_estimate": False, "interval_s": 1.0},
    )
    trace = read_trace(path)
    assert (trace.source, trace.domain, trace.is_estimate) == ("nvml", "gpu", False)
    assert trace.metadata["interval_s"] == 1.0
    assert trace.devices == ["0", "1"]
    w = trace.window(T0 + 1, T0 + 3)
    assert w.per_device_j == pytest.approx({"0": 600.0, "1": 200.0}, rel=1e-9)
    assert column_prefix(TraceSource(trace, {})) == "gpu"


def test_estimate_counter_is_est_energy_mj_not_energy_mj(tmp_path):
    cols = _parquet_columns({"process-tree": 20.0}, counter="est_energy_mj")
    cols["energy_mj"] = [999_999.0 * i for i in range(11)]  # a decoy: must not be read
    path = _write_parquet(
        tmp_path / "trace-cpu-est.parquet",
        cols,
        {"source": "cpu-model", "domain": "cpu", "is_estimate": True},
    )
    trace = read_trace(path)
    assert trace.is_estimate is True
    assert trace.window(T0 + 2, T0 + 7).energy_j == pytest.approx(100.0, rel=1e-9)
    assert column_prefix(TraceSource(trace, {})) == "cpu_est"


def test_estimate_without_est_column_is_refused(tmp_path):
    path = _write_parquet(
        tmp_path / "t.parquet",
        _parquet_columns({"0": 20.0}),
        {"source": "cpu-model", "domain": "cpu", "is_estimate": True},
    )
    with pytest.raises(TraceError, match="no est_energy_mj column"):
        read_trace(path)


def test_measurement_with_only_an_estimate_column_is_refused(tmp_path):
    path = _write_parquet(
        tmp_path / "t.parquet",
        _parquet_columns({"0": 20.0}, "est_energy_mj"),
        {"source": "rapl", "domain": "cpu", "is_estimate": False},
    )
    with pytest.raises(TraceError, match="no energy_mj column"):
        read_trace(path)


def test_trace_writer_round_trip(tmp_path):
    path = tmp_path / "trace-cpu.parquet"
    writer = TraceWriter(path, SCHEMAS["rapl"])
    writer.add(
        [
            {
                "t_unix": T0 + i,
                "device": "intel-rapl:0",
                "energy_mj": 40_000.0 * i,
                "power_mw": None,
            }
            for i in range(6)
        ]
    )
    assert writer.partial.exists() and not path.exists()  # unfinished files are not traces
    writer.close({"source": "rapl", "domain": "cpu", "is_estimate": False})
    assert path.exists() and not writer.partial.exists()
    assert writer.count == 6
    trace = read_trace(path)
    assert (trace.source, trace.domain, trace.is_estimate) == ("rapl", "cpu", False)
    assert trace.devices == ["intel-rapl:0"]
    assert trace.window(T0 + 0.5, T0 + 4.5).energy_j == pytest.approx(160.0, rel=1e-9)
    # no power column: extrapolation uses the counter slope at the edge (40 W)
    assert trace.window(T0 + 4, T0 + 5.5).energy_j == pytest.approx(60.0, rel=1e-9)


def test_trace_writer_estimate_round_trip(tmp_path):
    path = tmp_path / "trace-cpu-est.parquet"
    writer = TraceWriter(path, SCHEMAS["cpu-model"])
    writer.add(
        [
            {
                "t_unix": T0 + i,
                "device": "process-tree",
                "cpu_time_s": 0.5 * i,
                "est_energy_mj": 0.5 * i * 10.0 * 1000,
            }
            for i in range(4)
        ]
    )
    writer.close({"source": "cpu-model", "domain": "cpu", "is_estimate": True})
    trace = read_trace(path)
    assert trace.is_estimate is True and trace.source == "cpu-model"
    assert trace.window(T0, T0 + 3).energy_j == pytest.approx(15.0, rel=1e-9)  # 1.5 s x 10 W


# --- terms -------------------------------------------------------------------------------


def test_combine_signed_sum():
    terms = {n: TermRecord.derived(v, n) for n, v in (("a", 10.0), ("b", 3.0), ("c", 1.5))}
    out = combine("a - b + c", terms, {"a": 1, "b": -1, "c": 1})
    assert out.energy_j == pytest.approx(8.5)
    assert out.null_reason is None


def test_combine_zero_is_a_value_not_a_null():
    terms = {"a": TermRecord.derived(0.0, "a"), "b": TermRecord.derived(0.0, "b")}
    out = combine("a - b", terms, {"a": 1, "b": -1})
    assert out.energy_j == 0.0 and out.null_reason is None


def test_combine_null_input_gives_null_with_every_reason():
    terms = {
        "job": TermRecord.derived(100.0, "job"),
        "pad": TermRecord.missing("pad", "no pad mark"),
        "baseline_job": TermRecord.missing("bj", "baseline trace unreadable"),
    }
    out = combine("job - pad - baseline_job", terms, {"job": 1, "pad": -1, "baseline_job": -1})
    assert out.energy_j is None
    assert "pad: no pad mark" in out.null_reason
    assert "baseline_job: baseline trace unreadable" in out.null_reason
    assert "job:" not in out.null_reason.replace("baseline_job:", "")


def test_per_unit_divides_and_refuses_zero_counts():
    term = TermRecord.derived(7200.0, "E(b) - E(a) [cell]")
    assert per_unit(term, 4, "completed samples").value_wh == pytest.approx(0.5)
    assert per_unit(term, 2000, "tokens / 1000", scale=1000.0).value_wh == pytest.approx(1.0)
    zero = per_unit(term, 0, "completed samples")
    assert zero.value_wh is None and "completed samples is 0" in zero.null_reason
    missing = per_unit(TermRecord.missing("x", "why not"), 4, "completed samples")
    assert missing.value_wh is None and missing.null_reason == "why not"


def test_cell_terms_without_any_source():
    out = cell_terms(None, None, None, 10, 100)
    assert out.source is None
    for name in ("inference", "job", "net", "gap", "judge"):
        assert out.terms[name].energy_j is None
        assert out.terms[name].null_reason


# --- a job's files, as the runtime and the sampler leave them --------------------------------

UNAVAILABLE = {
    "nvml": "NVML could not start (no NVIDIA driver?)",
    "rapl": "no RAPL package zone under /sys/class/powercap",
}


def _job_dir(
    path: Path, start: float, watts: list[float], marks: dict[str, float], window: Any = None
) -> Path:
    """A finished job: a CPU-model trace at 1 Hz whose power over [i, i+1] is watts[i]."""
    path.mkdir()
    writer = TraceWriter(path / "trace-cpu-est.parquet", SCHEMAS["cpu-model"])
    energy_mj = 0.0
    rows = []
    for i in range(len(watts) + 1):
        rows.append(
            {
                "t_unix": start + i,
                "device": "process-tree",
                "cpu_time_s": energy_mj / 1e4,
                "est_energy_mj": energy_mj,
            }
        )
        if i < len(watts):
            energy_mj += watts[i] * 1000
    writer.add(rows)
    writer.close({"source": "cpu-model", "domain": "cpu", "is_estimate": True})
    (path / "timeline.json").write_text(
        json.dumps({"marks": {k: start + v for k, v in marks.items()}})
    )
    _write_result(path, {k: start + v for k, v in marks.items()}, len(watts) + 1, window)
    return path


def _write_result(path: Path, marks: dict[str, float], rows: int, window: Any = None) -> None:
    """The job's result.json, through its contract: a load-only job with one CPU-model trace
    (and ``window``, the generation window a cell job records)."""
    from evalwatt.contracts.contract import write_contract
    from evalwatt.contracts.result import JobResult, ServerRun
    from evalwatt.contracts.sampler import SamplerStatus, TraceInfo
    from evalwatt.contracts.spec import (
        JobSpec,
        ModelSpec,
        PadSpec,
        SamplerSpec,
        ServerSettings,
        ServerSpec,
    )

    settings = ServerSettings(
        backend="llama-cpp",
        gpus=0,
        cpus=1,
        quantization="gguf",
        context_tokens=None,
        server_args=(),
    )
    spec = JobSpec(
        kind="baseline",
        job_id=path.name,
        run="unit",
        run_dir=path,
        model=ModelSpec(name="m", served_name="m", backend="llama-cpp", path="m", hf_id="o/m"),
        server=ServerSpec(argv=("server",), settings=settings, baseline_id=path.name),
        ready_timeout_s=1.0,
        pad=PadSpec(accounting_window_s=0.0, margin_s=0.0),
        sampler=SamplerSpec(interval_s=1.0, cpu_watts_per_core=10.0),
    )
    trace = TraceInfo(
        file="trace-cpu-est.parquet",
        rows=rows,
        source="cpu-model",
        domain="cpu",
        is_estimate=True,
        interval_s=1.0,
    )
    sampler = SamplerStatus(
        started_unix=marks["job_start"],
        stopped_unix=marks["job_end"],
        interval_s=1.0,
        rounds=rows,
        late_rounds=0,
        max_late_s=0.0,
        median_late_s=0.0,
        traces={"cpu-model": trace},
        unavailable=UNAVAILABLE,
    )
    result = JobResult(
        kind="baseline",
        job_id=path.name,
        run="unit",
        status="ok",
        problems=(),
        marks=marks,
        pad_requested_s=0.0,
        server=ServerRun(argv=("server",), port=1, exit_code=-15, log_file="server.log"),
        generation=None,
        scoring=None,
        generation_window=window,
        sampler=sampler,
        host="h",
        scheduler_job_id=None,
        slurm={},
        cuda_visible_devices=None,
        versions={},
        spec=spec,
    )
    write_contract(path / "result.json", result)


@pytest.fixture
def job_dirs(tmp_path):
    # cell: 20 W, then 50 W while generating (4..14 s), 20 W, then 10 W while padding; the
    # Inspect call (the evaluation window) half a second wider on each side
    cell = _job_dir(
        tmp_path / "cell",
        T0,
        [20] * 4 + [50] * 10 + [20] * 2 + [10] * 11,
        {
            "job_start": 0,
            "load_start": 1,
            "ready": 3,
            "inference_start": 3.5,
            "generation_start": 4,
            "generation_end": 14,
            "inference_end": 14.5,
            "exit": 15,
            "pad_start": 16,
            "pad_end": 26,
            "job_end": 26.5,
        },
    )
    # baseline: 20 W while loading (0..5 s), then 10 W
    base = _job_dir(
        tmp_path / "base",
        T0 + 100,
        [20] * 5 + [10] * 15,
        {
            "job_start": 0,
            "load_start": 1,
            "ready": 3,
            "exit": 4,
            "pad_start": 5,
            "pad_end": 15,
            "job_end": 15.5,
        },
    )
    return cell, base


def test_cell_energy_from_job_files(job_dirs):
    cell, base = job_dirs
    out = cell_energy(cell, base, None, samples_completed=10, output_tokens=2000)
    assert out["gpu"] == FamilyUnavailable(unavailable=UNAVAILABLE["nvml"])
    assert out["cpu"] == FamilyUnavailable(unavailable=UNAVAILABLE["rapl"])
    est = out["cpu_est"]
    assert est.source == "cpu-model" and est.is_estimate is True
    joules = {name: term.energy_j for name, term in est.terms.items()}
    # by hand: inference (generation) 10 s x 50 W, evaluation that and 2 x 0.5 s x 20 W; job
    # 4x20 + 10x50 + 2x20 + 10.5x10; pad 10 s x 10 W; baseline 5x20 + 10.5x10; its pad 10 x 10
    expected = {
        "inference": 500.0,
        "evaluation": 520.0,
        "evaluation_overhead": 20.0,
        "job": 725.0,
        "pad": 100.0,
        "baseline_job": 205.0,
        "baseline_pad": 100.0,
        "net": 520.0,
        "gap": 20.0,
    }
    for name, value in expected.items():
        assert joules[name] == pytest.approx(value, rel=1e-9), name
    assert joules["judge"] is None and joules["judge_evaluation"] is None
    assert est.terms["inference"].formula == ("E(generation_end) - E(generation_start) [cell]")
    assert est.terms["evaluation"].formula == "E(inference_end) - E(inference_start) [cell]"
    assert est.gap_pct == pytest.approx(4.0)
    assert est.per_unit["inference_per_question"].value_wh == pytest.approx(500 / 3600 / 10)
    assert est.per_unit["inference_per_1k_output_tokens"].value_wh == pytest.approx(500 / 3600 / 2)

    row = energy_columns(out)
    assert row["cpu_est_inference_energy_j"] == pytest.approx(500.0)
    assert row["cpu_est_evaluation_energy_j"] == pytest.approx(520.0)
    assert row["cpu_est_evaluation_overhead_energy_j"] == pytest.approx(20.0)
    assert row["cpu_est_net_energy_j"] == pytest.approx(520.0)
    assert row["cpu_est_energy_source"] == "cpu-model"
    assert row["cpu_est_energy_null_reason"] is None
    assert row["gpu_inference_energy_j"] is None
    assert row["gpu_energy_null_reason"] == UNAVAILABLE["nvml"]


def test_a_cell_without_generation_marks_has_a_null_headline_with_the_reason(tmp_path, job_dirs):
    """evalwatt's own cell job whose log gave no model calls: the headline is null with the
    reason its result records, never the evaluation window in its place; the evaluation
    window is still measured and the corrected method, which needs the states inside it,
    is null too."""
    from evalwatt.contracts.result import GenerationWindow

    _, base = job_dirs
    why = "x.eval has no model call between inference_start and inference_end"
    window = GenerationWindow(
        log=Path("x.eval"),
        within=("inference_start", "inference_end"),
        start=None,
        end=None,
        model_calls=0,
        samples=0,
        ended_by_sample=0,
        null_reason=why,
    )
    marks = {"job_start": 0, "load_start": 1, "ready": 3, "inference_start": 3.5}
    marks |= {"inference_end": 14.5, "exit": 15, "pad_start": 16, "pad_end": 26, "job_end": 26.5}
    cell = _job_dir(
        tmp_path / "bare", T0, [20] * 4 + [50] * 10 + [20] * 2 + [10] * 11, marks, window
    )
    est = cell_energy(cell, base, None, 10, 2000)["cpu_est"]
    terms = est.terms
    assert terms["inference"].energy_j is None and terms["inference"].null_reason == why
    assert terms["evaluation"].energy_j == pytest.approx(520.0)
    assert terms["evaluation_overhead"].energy_j is None
    assert terms["corrected"].null_reason == f"no generation window: {why}"
    assert terms["net"].energy_j == pytest.approx(520.0)  # job totals need no marks
    assert est.per_unit["inference_per_question"].null_reason == why
    row = energy_columns({Family.CPU_EST: est})
    assert row["cpu_est_energy_per_question_wh"] is None
    assert row["cpu_est_evaluation_energy_j"] == pytest.approx(520.0)
    assert why in row["cpu_est_energy_null_reason"]


def test_cell_energy_with_unreadable_baseline_trace(job_dirs):
    cell, base = job_dirs
    (base / "trace-cpu-est.parquet").unlink()
    est = cell_energy(cell, base, None, 10, 2000)["cpu_est"]
    assert "trace unreadable" in est.baseline_unavailable
    assert est.terms["inference"].energy_j == pytest.approx(500.0)
    assert est.terms["net"].energy_j is None  # not 725 - 100: never a partial sum
    assert "no baseline readings" in est.terms["net"].null_reason
    row = energy_columns({Family.CPU_EST: est})
    assert row["cpu_est_net_energy_j"] is None
    assert "no baseline readings" in row["cpu_est_energy_null_reason"]
