"""The expectations of the GPU check scripts (benchmarks/nvml_check.py,
benchmarks/nvml_visible_devices_check.py), without a GPU: fake figures, and the figures
recorded on real GPUs under docs/validation/ replayed."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
nvml_check: Any = importlib.import_module("nvml_check")
visible_check: Any = importlib.import_module("nvml_visible_devices_check")
WindowFigures = nvml_check.WindowFigures
PASSED, FAILED, NOT_RUN = nvml_check.PASSED, nvml_check.FAILED, nvml_check.NOT_RUN


def _windows(**overrides: Any) -> dict[str, Any]:
    """Every window of the check, the sampled figure 0.1 % above the direct one."""
    windows = {
        label: WindowFigures(label, 10.0, 1001.0, 1000.0, 990.0)
        for label, _, _ in nvml_check.WINDOWS
    }
    windows.update(overrides)
    return windows


def _by_name(expectations: list[Any]) -> dict[str, Any]:
    return {e.name: e for e in expectations}


SAMPLER = {"rounds": 600, "late_rounds": 0}
COMPUTE = "sampled vs direct counter, compute window"


def test_all_within_thresholds_passes_and_exits_0() -> None:
    checks = nvml_check.expectations(_windows(), SAMPLER)
    assert {e.status for e in checks} == {PASSED}
    assert {e.name for e in checks} >= {COMPUTE, "late sampler rounds"}
    _, status = nvml_check.verdict(checks)
    assert status == 0


def test_compute_window_beyond_half_a_percent_fails() -> None:
    label = nvml_check.COMPUTE_WINDOW
    checks = _by_name(
        nvml_check.expectations(
            _windows(**{label: WindowFigures(label, 20.0, 10060.0, 10000.0, None)}), SAMPLER
        )
    )
    assert checks[COMPUTE].status == FAILED
    assert "+0.600 %" in checks[COMPUTE].detail
    assert nvml_check.verdict(list(checks.values()))[1] == 1


def test_idle_window_limit_is_two_percent() -> None:
    name = "sampled vs direct counter, post idle"
    for sampled, status in ((1019.0, PASSED), (979.0, FAILED)):
        window = WindowFigures("post idle", 10.0, sampled, 1000.0, None)
        checks = nvml_check.expectations(_windows(**{"post idle": window}), SAMPLER)
        assert _by_name(checks)[name].status == status


def test_missing_figure_could_not_run_never_passed_nor_zero() -> None:
    label = nvml_check.COMPUTE_WINDOW
    gone = WindowFigures(label, 20.0, None, 10000.0, None, "device 0: sampling gap of 3 s")
    checks = nvml_check.expectations(_windows(**{label: gone}), SAMPLER)
    compute = _by_name(checks)[COMPUTE]
    assert compute.status == NOT_RUN
    assert "sampling gap" in compute.detail
    report, status = nvml_check.verdict(checks)
    assert status == 1
    assert "1 could not run" in report
    assert "missing" in nvml_check.table({label: gone})[1]


@pytest.mark.parametrize(
    ("sampler", "status"),
    [
        ({"rounds": 600, "late_rounds": 6}, PASSED),
        ({"rounds": 600, "late_rounds": 7}, FAILED),
        ({"rounds": 0, "late_rounds": 0}, NOT_RUN),
        ({"rounds": 600}, NOT_RUN),
        (None, NOT_RUN),
    ],
)
def test_late_rounds_at_most_one_percent(sampler: dict[str, int] | None, status: str) -> None:
    checks = _by_name(nvml_check.expectations(_windows(), sampler))
    assert checks["late sampler rounds"].status == status


def test_no_expectation_is_not_a_pass() -> None:
    assert nvml_check.verdict([])[1] == 1


def test_missing_marks_are_reported_as_missing() -> None:
    windows = nvml_check.window_figures(None, {"job_start": 1.0}, {"job_start": 5.0})
    assert all(w.trace_j is None and w.missing for w in windows.values())
    assert {e.status for e in nvml_check.expectations(windows, SAMPLER)} == {NOT_RUN, PASSED}


@pytest.mark.parametrize("gpu", ["h100", "h200"])
def test_recorded_real_gpu_run_passes(gpu: str) -> None:
    folder = REPO / "docs" / "validation" / f"{gpu}-nvml-check"
    marks = json.loads((folder / "marks.json").read_text())
    trace = nvml_check.read_trace(folder / "trace-gpu.parquet")
    windows = nvml_check.window_figures(trace, marks["marks"], marks["direct_mj"])
    sampler = json.loads((folder / "sampler.json").read_text())
    report, status = nvml_check.verdict(nvml_check.expectations(windows, sampler))
    assert status == 0, report


# --- visible devices ---------------------------------------------------------------------------

UUID0, UUID1 = "GPU-0000", "GPU-1111"


def _device(index: int, uuid: str, watts: float | None) -> dict[str, Any]:
    return {"nvml_index": index, "uuid": uuid, "mean_w_during_burst": watts}


def _statuses(case: dict[str, Any]) -> list[str]:
    return [e.status for e in visible_check.case_expectations(case)]


def test_visible_gpus_only_and_busy_one_passes() -> None:
    case = {
        "CUDA_VISIBLE_DEVICES": "1,0",
        "cuda_ran_on": UUID1,
        "sampled": [_device(1, UUID1, 550.0), _device(0, UUID0, 80.0)],
    }
    assert _statuses(case) == [PASSED, PASSED, PASSED]
    assert _statuses({**case, "CUDA_VISIBLE_DEVICES": UUID1 + "," + UUID0}) == [PASSED] * 3


def test_a_gpu_outside_the_variable_fails() -> None:
    case = {
        "CUDA_VISIBLE_DEVICES": "1",
        "cuda_ran_on": UUID1,
        "sampled": [_device(1, UUID1, 550.0), _device(0, UUID0, 80.0)],
    }
    checks = visible_check.case_expectations(case)
    assert checks[0].status == FAILED
    assert UUID0 in checks[0].detail


def test_busy_gpu_not_the_one_cuda_used_fails() -> None:
    case = {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "cuda_ran_on": UUID1,
        "sampled": [_device(0, UUID0, 550.0), _device(1, UUID1, 80.0)],
    }
    assert _statuses(case) == [PASSED, PASSED, FAILED]


def test_case_that_could_not_run_is_not_passed() -> None:
    case = {"CUDA_VISIBLE_DEVICES": "0", "missing": "the CUDA burst failed (exit 1)"}
    assert _statuses(case) == [NOT_RUN, NOT_RUN]
    checks = [*visible_check.case_expectations(case)]
    assert visible_check.verdict(checks)[1] == 1
    missing_power = {
        "CUDA_VISIBLE_DEVICES": "1,0",
        "cuda_ran_on": UUID1,
        "sampled": [_device(1, UUID1, 550.0), _device(0, UUID0, None)],
    }
    assert _statuses(missing_power)[2] == NOT_RUN


def test_recorded_two_h200_cases_pass() -> None:
    folder = REPO / "docs" / "validation" / "h200x2-visible-devices"
    cases = json.loads((folder / "report.json").read_text())
    checks = [e for case in cases for e in visible_check.case_expectations(case)]
    report, status = visible_check.verdict(checks)
    assert status == 0, report
