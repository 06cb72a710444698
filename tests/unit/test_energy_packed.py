"""A cell measured inside a per-model job: its windows cut from the model job's trace parts
give the joules the same samples give a per-cell job; the model's load, reference idle and
the other overheads are shared by evaluation seconds, never added to the headline; the whole-
job methods are null with the reason; the steady state, in both modes, is energy per token.

The jobs are built from the real H100 trace (packed_jobs.py); every expected number is
recomputed here from the CSV with an independent linear interpolation.
"""

from __future__ import annotations

import bisect
import shutil

import pytest
from packed_jobs import (
    CELL_A,
    CELL_B,
    MODEL_MARKS,
    STEADY_B_WHY,
    STEADY_TOKENS,
    model_job,
    real_marks,
    rows_of,
)
from packed_jobs import judge_pass as make_judge_pass

from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import Family
from evalwatt.contracts.record import FamilyEnergy
from evalwatt.energy.packed import PER_CELL_REASON
from evalwatt.energy.readings import cell_energy, job_sources
from evalwatt.table.cells import energy_columns

ROWS = rows_of("cell")


def joules(start: float, end: float, rows=ROWS) -> float:
    """The counter interpolated linearly at both edges, by hand (mJ; mW x s beyond the
    samples)."""

    def at(t: float) -> float:
        ts = [r[0] for r in rows]
        for edge in (rows[0], rows[-1]):  # beyond the samples: the edge sample's power
            if (t < ts[0] and edge is rows[0]) or (t > ts[-1] and edge is rows[-1]):
                return edge[1] + edge[2] * (t - edge[0])
        i = min(max(bisect.bisect_right(ts, t) - 1, 0), len(rows) - 2)
        (t0, e0, _), (t1, e1, _) = rows[i], rows[i + 1]
        return e0 + (t - t0) / (t1 - t0) * (e1 - e0)

    return (at(end) - at(start)) / 1000.0


@pytest.fixture
def run(tmp_path):
    return model_job(tmp_path)


def _gpu(out) -> FamilyEnergy:
    family = out[Family.GPU]
    assert isinstance(family, FamilyEnergy), family
    return family


def test_the_model_job_trace_is_read_from_its_parts_as_one(run):
    sources, _ = job_sources(run.cells["a"])
    trace = sources[Family.GPU].trace
    assert [len(s.t_unix) for s in trace.series.values()] == [len(ROWS)]
    assert (run.model / "trace-gpu.part-0002.parquet").exists()


@pytest.mark.parametrize("cell", ["a", "b"])
def test_a_packed_cell_gives_the_joules_of_the_same_cell_run_alone(run, cell):
    """The same trace cut by the same marks gives the same joules, in parts or whole."""
    packed = _gpu(cell_energy(run.cells[cell], None, None, 100, 69120))
    alone = _gpu(cell_energy(run.alone[cell], run.baseline, None, 100, 69120))
    own = CELL_A if cell == "a" else CELL_B
    for name, (a, b) in {
        "inference": ("generation_start", "generation_end"),
        "evaluation": ("inference_start", "inference_end"),
    }.items():
        assert packed.terms[name].energy_j == alone.terms[name].energy_j, name
        assert packed.terms[name].energy_j == pytest.approx(joules(own[a], own[b]), rel=1e-9)
    assert packed.per_unit["inference_per_question"] == alone.per_unit["inference_per_question"]
    assert packed.terms["evaluation_overhead"].energy_j == pytest.approx(
        alone.terms["evaluation_overhead"].energy_j, rel=1e-12
    )


def test_whole_job_methods_are_null_per_cell_with_the_reason(run):
    gpu = _gpu(cell_energy(run.cells["a"], None, None, 100, 69120))
    for name in ("job", "pad", "baseline_job", "net", "gap", "corrected"):
        term = gpu.terms[name]
        assert term.energy_j is None, name
        assert "one job for 2 cells" in term.null_reason and "cannot be split" in term.null_reason
    assert gpu.per_unit["net_per_question"].value_wh is None
    assert "reference idle window stands in" in gpu.baseline_unavailable
    assert gpu.gap_pct is None


def test_reference_idle_and_cooldown_are_the_model_jobs_windows(run):
    gpu = _gpu(cell_energy(run.cells["b"], None, None, 3, 100))
    ref = gpu.terms["reference_idle"]
    expected = joules(MODEL_MARKS["reference_idle_start"], MODEL_MARKS["reference_idle_end"])
    assert ref.energy_j == pytest.approx(expected, rel=1e-9)
    cool = gpu.terms["cooldown"]
    assert cool.energy_j == pytest.approx(
        joules(CELL_B["cooldown_start"], CELL_B["cooldown_end"]), rel=1e-9
    )
    columns = energy_columns({Family.GPU: gpu})
    seconds = MODEL_MARKS["reference_idle_end"] - MODEL_MARKS["reference_idle_start"]
    assert columns["gpu_reference_idle_power_w"] == pytest.approx(expected / seconds, rel=1e-9)
    assert 60 < columns["gpu_reference_idle_power_w"] < 200  # an H100 holding a model, idle


def test_the_overhead_is_shared_by_evaluation_seconds_and_kept_out_of_the_headline(run):
    eval_s = {
        c: m["inference_end"] - m["inference_start"] for c, m in (("a", CELL_A), ("b", CELL_B))
    }
    job = joules(MODEL_MARKS["job_start"], MODEL_MARKS["job_end"])
    cells = sum(joules(m["inference_start"], m["inference_end"]) for m in (CELL_A, CELL_B))
    overhead = job - cells
    shares = {}
    for cell in ("a", "b"):
        gpu = _gpu(cell_energy(run.cells[cell], None, None, 100, 69120))
        assert gpu.terms["model_overhead"].energy_j == pytest.approx(overhead, rel=1e-9)
        share = gpu.terms["shared_overhead"]
        assert share.energy_j == pytest.approx(
            overhead * eval_s[cell] / sum(eval_s.values()), rel=1e-9
        )
        assert "of 2 cell(s)" in share.formula
        shares[cell] = share.energy_j
        own = CELL_A if cell == "a" else CELL_B
        headline = joules(own["generation_start"], own["generation_end"])
        assert gpu.terms["inference"].energy_j == pytest.approx(headline, rel=1e-9)
    assert sum(shares.values()) == pytest.approx(overhead, rel=1e-9)
    assert overhead > 0.3 * job  # the load, the idle and the pad of this job are not small


def test_a_killed_model_job_keeps_its_cells_energy_but_not_their_share(run):
    (run.model / "result.json").unlink()
    gpu = _gpu(cell_energy(run.cells["a"], None, None, 100, 69120))
    assert gpu.terms["inference"].energy_j == pytest.approx(
        joules(CELL_A["generation_start"], CELL_A["generation_end"]), rel=1e-9
    )
    share = gpu.terms["shared_overhead"]
    assert share.energy_j is None and "did not finish" in share.null_reason
    columns = energy_columns({Family.GPU: gpu})
    assert columns["gpu_shared_overhead_energy_j"] is None
    assert "did not finish" in columns["gpu_per_model_null_reason"]
    assert columns["gpu_energy_per_question_wh"] is not None


def test_a_missing_trace_part_is_a_null_naming_it(run):
    (run.model / "trace-gpu.part-0001.parquet").unlink()
    out = cell_energy(run.cells["a"], None, None, 100, 69120)
    assert "part-0001" in out[Family.GPU].unavailable


def test_steady_state_energy_per_output_token(run):
    for cell_dir in (run.cells["a"], run.alone["a"]):  # both modes
        gpu = _gpu(cell_energy(cell_dir, None, None, 100, 69120))
        expected = joules(CELL_A["steady_start"], CELL_A["steady_end"])
        assert gpu.terms["steady"].energy_j == pytest.approx(expected, rel=1e-9)
        assert gpu.steady.energy_per_output_token_j == pytest.approx(
            expected / STEADY_TOKENS, rel=1e-9
        )
        assert gpu.steady.window_s == pytest.approx(CELL_A["steady_end"] - CELL_A["steady_start"])
    gpu = _gpu(cell_energy(run.cells["b"], None, None, 3, 100))
    assert gpu.steady.energy_per_output_token_j is None
    assert gpu.steady.null_reason == STEADY_B_WHY
    columns = energy_columns({Family.GPU: gpu})
    assert columns["gpu_steady_energy_per_output_token_j"] is None
    assert columns["gpu_steady_null_reason"] == STEADY_B_WHY


def test_per_cell_mode_has_the_same_columns_null_with_the_reason(run):
    alone = cell_energy(run.alone["a"], run.baseline, None, 100, 69120)
    packed = cell_energy(run.cells["a"], None, None, 100, 69120)
    per_cell, per_model = energy_columns(alone), energy_columns(packed)
    assert per_cell.keys() == per_model.keys()
    assert per_cell["gpu_shared_overhead_energy_j"] is None
    assert per_cell["gpu_cooldown_energy_j"] is None
    assert PER_CELL_REASON in per_cell["gpu_per_model_null_reason"]
    assert per_cell["gpu_net_energy_j"] is not None and per_model["gpu_net_energy_j"] is None
    assert per_model["gpu_shared_overhead_energy_j"] > 0
    assert per_model["gpu_per_model_null_reason"] is None


def test_the_judge_pass_gives_each_judged_cell_its_windows(run, tmp_path):
    pass_dir, judged = make_judge_pass(tmp_path, "a", run.cells["a"] / "result.json")
    gpu = _gpu(cell_energy(run.cells["a"], None, judged, 100, 69120))
    base_rows = rows_of("baseline")
    ready = real_marks("baseline")["ready"]
    assert gpu.terms["judge"].energy_j == pytest.approx(
        joules(ready + 2.0, ready + 6.0, base_rows), rel=1e-9
    )
    assert gpu.terms["judge_evaluation"].energy_j == pytest.approx(
        joules(ready + 1.0, ready + 7.0, base_rows), rel=1e-9
    )
    assert (pass_dir / "trace-gpu.part-0001.parquet").exists()  # read across its parts


def test_prometheus_is_cut_by_the_cells_windows_and_job_totals_are_left_out(run):
    """The cluster's series of the model job (collected for its Slurm job) cut by a packed
    cell's own marks; CEEMS and sacct, job totals, give no per-cell figure."""
    import dataclasses

    from test_audit import _prom_record, settings

    from evalwatt.base.layout import JobFiles
    from evalwatt.contracts.contract import write_contract
    from evalwatt.energy.cluster.source import JobFacts

    s = settings()
    facts = JobFacts.of(run.model)
    write_contract(JobFiles(run.model).accounting("prometheus"), _prom_record(s, facts, ROWS))
    prom_first = dataclasses.replace(s, headline_order=("prometheus", "nvml"))
    gpu = _gpu(cell_energy(run.cells["a"], None, None, 100, 69120, prom_first))
    assert gpu.source == "prometheus"
    nvml = joules(CELL_A["generation_start"], CELL_A["generation_end"])
    assert gpu.terms["inference"].energy_j == pytest.approx(1.25 * nvml, rel=0.03)  # the bias
    assert gpu.terms["inference"].window == (CELL_A["generation_start"], CELL_A["generation_end"])
    assert "cannot be split" in gpu.terms["job"].null_reason
    ceems_only = dataclasses.replace(s, headline_order=("ceems-api",))
    out = cell_energy(run.cells["a"], None, None, 100, 69120, ceems_only)
    assert "ceems-api: no figures that cut the cell's windows" in out[Family.GPU].unavailable


def test_the_row_says_how_the_cell_ran(run):
    from evalwatt.base.layout import JobFiles
    from evalwatt.contracts.contract import read_contract
    from evalwatt.contracts.result import JobResult
    from evalwatt.table.packed_columns import row_packed_columns

    packed = row_packed_columns(read_contract(JobResult, JobFiles(run.cells["a"]).result))
    alone = row_packed_columns(read_contract(JobResult, JobFiles(run.alone["a"]).result))
    assert packed.keys() == alone.keys()
    assert packed["execution"] == "per-model" and alone["execution"] == "per-cell"
    assert packed["model_job_id"] == run.model.name and alone["model_job_id"] is None
    assert packed["cooldown_duration_s"] == pytest.approx(
        CELL_A["cooldown_end"] - CELL_A["cooldown_start"]
    )
    assert packed["cooldown_ended_by"] == "power" and packed["cooldown_null_reason"] is None
    assert alone["cooldown_duration_s"] is None
    assert alone["cooldown_null_reason"] == PER_CELL_REASON
    assert packed["reference_idle_duration_s"] == pytest.approx(
        MODEL_MARKS["reference_idle_end"] - MODEL_MARKS["reference_idle_start"]
    )
    assert packed["temperature_at_evaluation_start_c"] == 41.0
    assert packed["temperature_at_cooldown_start_c"] is None
    assert "cooldown_start" in packed["temperature_null_reason"]
    steady_s = CELL_A["steady_end"] - CELL_A["steady_start"]
    for row in (packed, alone):
        assert row["steady_window_s"] == pytest.approx(steady_s)
        assert row["steady_output_tokens"] == STEADY_TOKENS


def test_a_run_copied_elsewhere_reads_its_own_model_job(run, tmp_path):
    """A packed result records its model job's folder as an absolute path; a run folder
    copied elsewhere (an admin's audit, a kept validation run) reads the model job beside
    its cells, the same joules, also once the original is gone."""
    before = _gpu(cell_energy(run.cells["a"], None, None, 100, 69120))
    copy = tmp_path / "copied" / "run"
    shutil.copytree(run.model.parents[1], copy, ignore=shutil.ignore_patterns("copied"))
    for original in run.model.parents[1].iterdir():  # the whole original run gone
        if original.name != "copied":
            shutil.rmtree(original) if original.is_dir() else original.unlink()
    after = _gpu(cell_energy(copy / "cells" / "a", None, None, 100, 69120))
    for name in ("inference", "evaluation", "reference_idle", "model_overhead"):
        assert after.terms[name].energy_j == before.terms[name].energy_j, name
        assert after.terms[name].energy_j is not None, name


def test_packing_home_finds_a_rerun_folder_in_a_copied_run(tmp_path):
    """A cell kept from a rerun records its model job's rerun folder
    (``models/<job>/rerun-<time>``): a copy of the run finds it in the copy, the kind folder
    and the rerun folder kept; a path outside any run, or a copy without it, stays as
    recorded."""
    recorded = tmp_path / "orig" / "models" / "run" / "models" / "m1" / "rerun-20261205"
    copy = tmp_path / "copy" / "run"
    cell = JobFiles(copy / "cells" / "a")
    assert cell.packing_home(recorded) == recorded  # not copied yet
    (copy / "models" / "m1" / "rerun-20261205").mkdir(parents=True)
    assert cell.packing_home(recorded) == copy / "models" / "m1" / "rerun-20261205"
    outside = tmp_path / "elsewhere" / "m1"
    assert cell.packing_home(outside) == outside
