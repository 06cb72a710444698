"""Integrity checks on the real H100 trace with synthetic faults: a counter reset, a wrap, a
sample gap at a window edge and inside a window, a device without samples, a device-count
mismatch, another host or other GPUs for the baseline.

Each fault must make the window a null with its reason (never a number) and show as a failed
finding; the unbroken trace must pass every check.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalwatt.energy import integrity
from evalwatt.energy.integrity import Finding, GpuSet
from evalwatt.energy.sources import TraceSource
from evalwatt.energy.terms import cell_terms
from evalwatt.energy.trace import CounterWentBackwards, DeviceMissing, SampleGap, TraceError
from evalwatt.energy.trace_files import read_timeline, read_trace

UUID0 = "GPU-00000000-1111-2222-3333-444444444444"
UUID1 = "GPU-99999999-1111-2222-3333-444444444444"


def _device(index: int, uuid: str, **extra: object) -> dict:
    return {
        "visible_as": str(index),
        "nvml_index": index,
        "uuid": uuid,
        "name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": f"00000000:{index:02d}:00.0",
        "memory_total_mib": 81559,
        "power_limit_mw": 700000,
        **extra,
    }


def _footer(*devices: dict, **extra: object) -> dict:
    return {
        "source": "nvml",
        "domain": "gpu",
        "is_estimate": False,
        "interval_s": 0.1,
        "devices": list(devices),
        "driver": "580.159.04",
        **extra,
    }


@pytest.fixture(scope="module")
def real(llama1b_dir):
    with open(llama1b_dir / "cell.csv", encoding="utf-8", newline="") as fh:
        rows = [
            (float(r["t_unix"]), float(r["energy_mj"]), float(r["power_mw"]))
            for r in csv.DictReader(fh)
        ]
    return {
        "rows": rows,
        "marks": read_timeline(llama1b_dir / "cell.marks.json"),
        "dir": llama1b_dir,
    }


def _parquet(path: Path, columns: dict[str, list], footer: dict) -> Path:
    table = pa.table(
        {
            "t_unix": pa.array(columns["t_unix"], pa.float64()),
            "device": pa.array(columns["device"], pa.string()),
            "energy_mj": pa.array(columns["energy_mj"], pa.float64()),
            "power_mw": pa.array(columns["power_mw"], pa.float64()),
        }
    )
    writer = pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
    writer.add_key_value_metadata({"evalwatt.trace": json.dumps(footer)})
    writer.close()
    return path


def _columns(rows, device: str = "0") -> dict[str, list]:
    return {
        "t_unix": [r[0] for r in rows],
        "device": [device] * len(rows),
        "energy_mj": [r[1] for r in rows],
        "power_mw": [r[2] for r in rows],
    }


def _join(*parts: dict[str, list]) -> dict[str, list]:
    return {k: [v for p in parts for v in p[k]] for k in parts[0]}


def _names(findings: list[Finding], ok: bool | None) -> list[str]:
    return [f.name for f in findings if f.ok is ok]


# --- the unbroken trace ------------------------------------------------------------------------


def test_the_real_trace_passes_every_check(real, tmp_path):
    trace = read_trace(
        _parquet(tmp_path / "t.parquet", _columns(real["rows"]), _footer(_device(0, UUID0)))
    )
    findings = integrity.trace_findings(trace, real["marks"], "cell")
    assert findings and all(f.ok is True for f in findings), findings
    assert trace.max_gap_s == 1.0  # max(1 s, 10 x 0.1 s)
    gaps = [f for f in findings if "sample gaps" in f.name]
    assert (
        "widest gap 0.10" in gaps[0].detail and "interval_s of the trace metadata" in gaps[0].detail
    )


def test_csv_takes_the_median_spacing_as_its_interval(real):
    trace = read_trace(real["dir"] / "cell.csv")
    interval, basis = trace.interval_s
    assert interval == pytest.approx(0.1, abs=0.001) and "median spacing" in basis
    assert trace.max_gap_s == 1.0


def test_a_slow_sampler_gets_a_wider_limit(real, tmp_path):
    every_20th = real["rows"][::20]  # 2 s apart, as if sampled at 0.5 Hz
    trace = read_trace(
        _parquet(tmp_path / "t.parquet", _columns(every_20th), _footer(interval_s=2.0))
    )
    assert trace.max_gap_s == 20.0
    m = real["marks"]
    assert trace.window(m["inference_start"], m["inference_end"]).energy_j > 0


# --- gaps --------------------------------------------------------------------------------------


def _without(rows, lo: float, hi: float):
    return [r for r in rows if not lo < r[0] < hi]


def test_gap_across_a_window_edge_is_a_null_with_the_bound(real, tmp_path):
    m = real["marks"]
    rows = _without(real["rows"], m["inference_end"] - 15, m["inference_end"] + 5)
    trace = read_trace(_parquet(tmp_path / "t.parquet", _columns(rows), _footer()))
    with pytest.raises(SampleGap, match=r"no sample for 20\.1\d\d s .* across the window's end"):
        trace.window(m["inference_start"], m["inference_end"])
    # a window away from the gap still stands
    assert trace.window(m["pad_start"], m["pad_end"]).energy_j > 0
    findings = integrity.window_findings(trace, m, "cell")
    assert "cell inference_start..inference_end: sample gaps within the limit" in _names(
        findings, False
    )
    # and in the terms: a null with the reason, not the -1.5 % the interpolation would give
    term = cell_terms(TraceSource(trace, m), None, None, 96, None).terms["inference"]
    assert term.energy_j is None
    assert "limit 1 s = max(1 s, 10 x the sampling interval 0.1 s" in term.null_reason


def test_gap_inside_a_window_is_a_null_too(real, tmp_path):
    m = real["marks"]
    rows = _without(real["rows"], m["inference_start"] + 20, m["inference_start"] + 40)
    trace = read_trace(_parquet(tmp_path / "t.parquet", _columns(rows), _footer()))
    with pytest.raises(SampleGap, match="inside the window"):
        trace.window(m["inference_start"], m["inference_end"])
    assert trace.window(m["job_start"], m["inference_start"]).energy_j > 0


def test_a_gap_just_under_the_limit_is_accepted(real, tmp_path):
    m = real["marks"]
    rows = _without(real["rows"], m["inference_end"] - 0.4, m["inference_end"] + 0.4)
    trace = read_trace(_parquet(tmp_path / "t.parquet", _columns(rows), _footer()))
    assert trace.window(m["inference_start"], m["inference_end"]).energy_j == pytest.approx(
        10_285.0, rel=0.01
    )


def test_late_rounds_of_the_sampler(real):
    trace = read_trace(real["dir"] / "cell.csv")
    good = {"interval_s": 0.1, "rounds": 1592, "late_rounds": 3, "max_late_s": 0.05}
    assert integrity.sampler_findings(good, trace, "cell")[0].ok is True
    bad = {**good, "max_late_s": 19.9}
    finding = integrity.sampler_findings(bad, trace, "cell")[0]
    assert finding.ok is False and "longest interval 20.000 s" in finding.detail
    assert integrity.sampler_findings({}, trace, "cell")[0].ok is None


# --- resets and wraps -------------------------------------------------------------------------


def _shifted(rows, at: float, new_value: float):
    """The counter restarts at ``new_value`` at the first sample after ``at``."""
    i = next(i for i, r in enumerate(rows) if r[0] > at)
    shift = rows[i][1] - new_value
    return [(t, e - shift if k >= i else e, p) for k, (t, e, p) in enumerate(rows)], i


def test_reset_is_a_null_and_a_failed_finding(real, tmp_path):
    m = real["marks"]
    rows, _ = _shifted(real["rows"], m["inference_start"] + 20, 1000.0)
    trace = read_trace(_parquet(tmp_path / "t.parquet", _columns(rows), _footer(_device(0, UUID0))))
    with pytest.raises(CounterWentBackwards):
        trace.window(m["inference_start"], m["inference_end"])
    findings = integrity.window_findings(trace, m, "cell")
    assert "cell inference_start..inference_end: counter never goes backwards" in _names(
        findings, False
    )
    assert not trace.repairs  # no range in the metadata: a reset, never a guessed wrap


def test_wrap_with_a_known_range_is_repaired(real, tmp_path):
    """A 32-bit-like counter: range 2**24 mJ (16.8 kJ). The real counter (4.77 MJ...) is
    taken modulo the range: every wrap is unambiguous (the implied energy fits at 700 W)."""
    m = real["marks"]
    span = float(2**24)
    rows = [(t, e % span, p) for t, e, p in real["rows"]]
    wraps = sum(1 for a, b in itertools.pairwise(rows) if b[1] < a[1])
    assert wraps >= 1
    path = _parquet(
        tmp_path / "t.parquet",
        _columns(rows),
        _footer(_device(0, UUID0, counter_range_mj=span)),
    )
    trace = read_trace(path)
    assert len(trace.repairs) == wraps and "unwrapped" in trace.repairs[0]
    reference = read_trace(real["dir"] / "cell.csv")
    for a, b in (("inference_start", "inference_end"), ("job_start", "job_end")):
        assert trace.window(m[a], m[b]).energy_j == pytest.approx(
            reference.window(m[a], m[b]).energy_j, rel=1e-9
        )
    findings = integrity.device_findings(trace, "cell")
    assert "cell: counter wraps repaired" in _names(findings, True)


def test_a_backward_step_that_does_not_fit_the_range_stays_a_reset(real, tmp_path):
    m = real["marks"]
    rows, i = _shifted(real["rows"], m["inference_start"] + 20, 1000.0)
    # range given, but the value before the step is far below it: wrapping would mean
    # ~10 MJ in 0.1 s, far above the 700 W power limit
    path = _parquet(
        tmp_path / "t.parquet",
        _columns(rows),
        _footer(_device(0, UUID0, counter_range_mj=rows[i - 1][1] + 1e7)),
    )
    trace = read_trace(path)
    assert not trace.repairs
    with pytest.raises(CounterWentBackwards):
        trace.window(m["inference_start"], m["inference_end"])


# --- devices -----------------------------------------------------------------------------------


def test_a_device_whose_counter_is_all_null_makes_every_window_null(real, tmp_path):
    m = real["marks"]
    dead = _columns(real["rows"], device="1")
    dead["energy_mj"] = [None] * len(dead["energy_mj"])
    path = _parquet(
        tmp_path / "t.parquet",
        _join(_columns(real["rows"]), dead),
        _footer(_device(0, UUID0), _device(1, UUID1)),
    )
    trace = read_trace(path)
    assert trace.devices == ["0"] and "1" in trace.missing
    with pytest.raises(DeviceMissing, match=r"device 1: its counter .* is empty in all 1591"):
        trace.window(m["inference_start"], m["inference_end"])
    term = cell_terms(TraceSource(trace, m), None, None, 96, None).terms["inference"]
    assert term.energy_j is None and "would leave it out" in term.null_reason
    assert "cell: every device's samples accounted for" in _names(
        integrity.device_findings(trace, "cell"), False
    )
    assert trace.inner_counter_j(m["inference_start"], m["inference_end"]) is None


def test_a_listed_gpu_without_rows_is_missing(real, tmp_path):
    """2 GPUs listed, 1 sampled: never a sum over the one left."""
    m = real["marks"]
    path = _parquet(
        tmp_path / "t.parquet",
        _columns(real["rows"]),
        _footer(_device(0, UUID0), _device(1, UUID1)),
    )
    trace = read_trace(path)
    assert trace.missing == {"1": f"listed in the trace metadata ({UUID1}) but no row has it"}
    with pytest.raises(DeviceMissing):
        trace.window(m["inference_start"], m["inference_end"])


def test_a_counter_null_in_some_rows_only_is_still_refused(real, tmp_path):
    cols = _columns(real["rows"])
    cols["energy_mj"][5] = None
    path = _parquet(tmp_path / "t.parquet", cols, _footer())
    with pytest.raises(TraceError, match="row 6: energy_mj is empty"):
        read_trace(path)


def test_every_counter_null_is_refused(real, tmp_path):
    cols = _columns(real["rows"])
    cols["energy_mj"] = [None] * len(cols["energy_mj"])
    with pytest.raises(TraceError, match="empty in every row of every device"):
        read_trace(_parquet(tmp_path / "t.parquet", cols, _footer()))


def test_rows_of_a_device_the_metadata_does_not_list(real, tmp_path):
    path = _parquet(
        tmp_path / "t.parquet",
        _join(_columns(real["rows"]), _columns(real["rows"], device="3")),
        _footer(_device(0, UUID0)),
    )
    findings = integrity.device_findings(read_trace(path), "cell")
    assert "cell: sampled devices are the ones the sampler opened" in _names(findings, False)


def test_device_count_against_plan_and_allocation():
    ok = integrity.device_count_findings(["0", "1"], 2, "2,3", "cell")
    assert [f.ok for f in ok] == [True, True]
    bad = integrity.device_count_findings(["0", "1"], 1, "2", "cell")
    assert [f.ok for f in bad] == [False, False]
    assert "2 device(s) summed (0, 1), 1 planned" in bad[0].detail
    unknown = integrity.device_count_findings(["0"], None, None, "cell")
    assert [f.ok for f in unknown] == [None, None]
    assert "CUDA_VISIBLE_DEVICES was unset" in unknown[1].detail


def test_sampler_opened_the_allocated_gpus(real, tmp_path):
    trace = read_trace(
        _parquet(tmp_path / "t.parquet", _columns(real["rows"]), _footer(_device(0, UUID0)))
    )
    assert integrity.allocation_findings(trace, "0", "cell")[0].ok is True
    assert integrity.allocation_findings(trace, "1", "cell")[0].ok is False
    assert integrity.allocation_findings(trace, None, "cell")[0].ok is None
    csv_trace = read_trace(real["dir"] / "cell.csv")
    assert integrity.allocation_findings(csv_trace, "0", "cell")[0].ok is None


def test_cell_and_baseline_on_another_host_or_other_gpus(real, tmp_path):
    one = read_trace(
        _parquet(tmp_path / "a.parquet", _columns(real["rows"]), _footer(_device(0, UUID0)))
    )
    other = read_trace(
        _parquet(tmp_path / "b.parquet", _columns(real["rows"]), _footer(_device(0, UUID1)))
    )
    same = integrity.same_gpus_findings(
        integrity.gpu_set(one, "node1"), integrity.gpu_set(one, "node1")
    )
    assert [f.ok for f in same] == [True, True]
    moved = integrity.same_gpus_findings(
        integrity.gpu_set(one, "node1"), integrity.gpu_set(other, "node2")
    )
    assert [f.ok for f in moved] == [False, False]
    assert "cell on node1, baseline on node2" in moved[0].detail
    assert UUID0 in moved[1].detail and UUID1 in moved[1].detail and "8 W" in moved[1].detail
    unknown = integrity.same_gpus_findings(GpuSet(None, None), GpuSet("n", None))
    assert [f.ok for f in unknown] == [None, None]
    assert integrity.failed(moved) == moved and integrity.failed(unknown) == []
