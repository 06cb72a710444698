"""A thinned energy counter (read one round in ten, power every round) against the full-rate
counter, on the real H100 trace tests/data/traces/h100-hf-llama1b/cell.csv (10 Hz).

Per phase window (consecutive marks of cell.marks.json, 0.5 s or longer), energy vs the full
rate, power-placed edges | time fraction (no power):

    job_start..cold_idle_end          15.0 s  +0.00 % | +0.00 %
    cold_idle_end..load_start         16.3 s  +0.27 % | +0.32 %
    load_start..ready                  4.1 s  -0.81 % | -0.92 %
    ready..ready_idle_end             10.0 s  +0.07 % | +0.06 %
    inference_start..inference_end    75.3 s  -0.06 % | -0.07 %
    inference_end..post_idle_end       5.0 s  +0.99 % | +1.15 %
    exit..worker_exited                1.7 s  -0.26 % | -0.11 %
    pad_start..pad_end                30.0 s  +0.03 % | +0.01 %
    pad_end..job_end                   2.0 s  -0.00 % | -0.03 %

The 0.5 % target is met on every window of 10 s or more, not on the 4-5 s windows that begin
or end at a sharp power step (load start, end of generation): NVML's power on this H100 lags
the counter's step by ~0.5-1 s (a smoothed reading), so it places the edge little better than
time does. This is why the sampler reads the counter at once at each mark the job stamps, and
every 0.2 s while the job evaluates, where the generation marks come afterwards from the log
(evalwatt.sampling.sampler; docs/methodology.md).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalwatt.energy.trace import SampleGap
from evalwatt.energy.trace_files import COUNTS, read_timeline, read_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "traces" / "h100-hf-llama1b"
EVERY = 10
SCHEMA = pa.schema(
    [
        ("t_unix", pa.float64()),
        ("device", pa.string()),
        ("energy_mj", pa.float64()),
        ("power_mw", pa.float64()),
    ]
)
# measured figures (module docstring): |error| in % of the full-rate counter's energy
LONG_S = 10.0
TARGET_PCT = 0.5
SHORT_BOUND_PCT = 1.0


def _thin(path: Path, *, power: bool = True, holes: range = range(0), every: int = EVERY) -> Path:
    """cell.csv as the sampler writes a thinned counter: the counter on one row in ``every``
    and the last, power on every row (none with ``power=False``, none on rows in ``holes``)."""
    s = read_trace(DATA / "cell.csv").series["0"]
    last = len(s.t_unix) - 1
    rows = [
        {
            "t_unix": t,
            "device": "0",
            "energy_mj": e if i % every == 0 or i == last else None,
            "power_mw": p if power and i not in holes else None,
        }
        for i, (t, e, p) in enumerate(zip(s.t_unix, s.energy_mj, s.power_mw, strict=True))
    ]
    meta = {
        "source": "nvml",
        "domain": "gpu",
        "is_estimate": False,
        "interval_s": 0.1,
        "counter_every_rounds": every,
    }
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table.replace_schema_metadata({"evalwatt.trace": json.dumps(meta)}), path)
    return path


def _phases() -> list[tuple[str, float, float]]:
    marks = sorted(
        (t, m) for m, t in read_timeline(DATA / "cell.marks.json").items() if m not in COUNTS
    )
    return [
        (f"{m0}..{m1}", t0, t1)
        for (t0, m0), (t1, m1) in itertools.pairwise(marks)
        if t1 - t0 >= 0.5
    ]


@pytest.fixture(scope="module")
def errors(tmp_path_factory) -> dict[str, tuple[float, float, float]]:
    """Per phase: (seconds, % error with power, % error by time fraction)."""
    tmp = tmp_path_factory.mktemp("thin")
    full = read_trace(DATA / "cell.csv")
    thin = read_trace(_thin(tmp / "power.parquet"))
    blind = read_trace(_thin(tmp / "no-power.parquet", power=False))
    out = {}
    for name, t0, t1 in _phases():
        ref = full.window(t0, t1).energy_j
        placed, timed = thin.window(t0, t1), blind.window(t0, t1)
        assert placed.edge_method == "power", name
        assert timed.edge_method == "time" and "no power" in (timed.edge_note or ""), name
        out[name] = (
            t1 - t0,
            100 * (placed.energy_j - ref) / ref,
            100 * (timed.energy_j - ref) / ref,
        )
    return out


def test_the_thinned_trace_reads_with_its_counter_reads_and_every_power_sample(tmp_path):
    trace = read_trace(_thin(tmp_path / "t.parquet"))
    s = trace.series["0"]
    assert trace.counter_every == EVERY and s.thinned
    assert len(s.t_unix) == (len(s.rows) - 1) // EVERY + 1 + ((len(s.rows) - 1) % EVERY > 0)
    assert len(s.power_samples()[0]) == len(s.rows)
    assert trace.counter_gap_s == pytest.approx(10.0) and trace.max_gap_s == pytest.approx(1.0)


def test_every_long_phase_is_within_the_target(errors):
    long = {n: e for n, e in errors.items() if e[0] >= LONG_S}
    assert len(long) >= 4
    for name, (_, placed, _) in long.items():
        assert abs(placed) <= TARGET_PCT, (name, placed)


def test_short_phases_at_a_power_step_miss_the_target_but_stay_bounded(errors):
    """Recorded as measured, so that a change shows: load (4.1 s) and the idle after generation
    (5 s) are off by 0.8 and 1.0 %, the time fraction by 0.9 and 1.15 %."""
    for name, (_, placed, timed) in errors.items():
        assert abs(placed) <= SHORT_BOUND_PCT, (name, placed)
        assert abs(timed) <= SHORT_BOUND_PCT + 0.25, (name, timed)
    assert abs(errors["load_start..ready"][1]) > TARGET_PCT
    assert abs(errors["inference_end..post_idle_end"][1]) > TARGET_PCT


def test_power_places_the_edges_better_than_time_on_the_step_phases(errors):
    for name in ("load_start..ready", "inference_end..post_idle_end", "cold_idle_end..load_start"):
        _, placed, timed = errors[name]
        assert abs(placed) < abs(timed), (name, placed, timed)
    # summed over the phases shorter than 10 s, time does worse than power
    short = [e for e in errors.values() if e[0] < LONG_S]
    assert sum(abs(t) for *_, t in short) > sum(abs(p) for _, p, _ in short)


def test_a_hole_in_power_at_an_edge_is_a_gap(tmp_path):
    """Counter every 2 s, power at the reads around an edge but none between them: a 2 s gap
    in the power that would place the edge, beyond the 1 s limit."""
    marks = read_timeline(DATA / "cell.marks.json")
    s = read_trace(DATA / "cell.csv").series["0"]
    i = next(k for k, t in enumerate(s.t_unix) if t > marks["inference_end"]) // 20 * 20
    path = _thin(tmp_path / "hole.parquet", holes=range(i + 1, i + 20), every=20)
    thin = read_trace(path)
    with pytest.raises(SampleGap, match="no power sample"):
        thin.window(marks["inference_start"], marks["inference_end"])
    # a window whose edges are elsewhere is unaffected
    thin.window(marks["ready"], marks["ready_idle_end"])
