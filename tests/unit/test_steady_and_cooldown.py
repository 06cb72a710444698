"""ML.ENERGY's steady state read from a cell's model calls, and a model job's waits on the
GPUs' power (reference idle, cooldown), with the GPUs played by a fake reader."""

from __future__ import annotations

import itertools
import time

import pytest

from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.spec import CooldownSpec
from evalwatt.runtime.cooldown import JobGpus, cool_down, hold_reference_idle
from evalwatt.runtime.inspect_steps import ServedCall, steady_state
from evalwatt.runtime.timeline import Timeline


def _saturated(n: int, b: int, duration: float = 1.0, tokens: int = 10) -> list[ServedCall]:
    """n requests of ``duration`` s, b at a time, each started as one ends."""
    return [
        ServedCall(start=(i // b) * duration, end=(i // b + 1) * duration, output_tokens=tokens)
        for i in range(n)
    ]


def test_the_steady_state_opens_at_the_bth_start_and_closes_at_the_n_b_1th_end():
    calls = _saturated(8, 2)  # 4 waves of 2: starts 0,0,1,1,2,2,3,3 ends 1,1,2,2,3,3,4,4
    window = steady_state(calls, 2)
    assert window.null_reason is None and (window.in_flight, window.requests) == (2, 8)
    # the 2nd request started at 0; the (8 - 2 - 1) = 5th completion is at 3
    assert (window.start, window.end) == (0.0, 3.0)
    # 3 whole waves of 2 requests of 10 tokens inside it
    assert window.output_tokens == pytest.approx(60.0)


def test_tokens_are_pro_rated_over_each_request():
    calls = [
        ServedCall(0.0, 1.0, 10),
        ServedCall(0.5, 2.5, 40),  # half inside the window [0.5, 1.5]
        ServedCall(1.0, 1.5, 5),
        ServedCall(1.5, 3.0, 9),
    ]
    window = steady_state(calls, 2)  # opens at 0.5; closes at the 1st completion (1.0)
    assert (window.start, window.end) == (0.5, 1.0)
    assert window.output_tokens == pytest.approx(10 * 0.5 + 40 * 0.25)


@pytest.mark.parametrize(("n", "b"), [(3, 2), (7, 4), (0, 1)])
def test_no_steady_state_below_twice_max_connections(n, b):
    window = steady_state(_saturated(n, b), b)
    assert window.start is None and window.end is None and window.output_tokens is None
    assert f"{n} requests, fewer than twice max_connections ({b})" in window.null_reason


def test_an_empty_steady_state_is_null_with_its_reason():
    # 2 requests, 1 at a time: opens at the 1st start, and 0 requests finish before it closes
    window = steady_state(_saturated(2, 1), 1)
    assert window.start is None and "empty" in window.null_reason
    # the 2nd request starts only after the first completion: never 2 in flight
    late = [ServedCall(0, 1, 1), ServedCall(3, 4, 1), ServedCall(3, 4, 1), ServedCall(3, 4, 1)]
    assert "empty" in steady_state(late, 2).null_reason


class _FakeGpus:
    """Two GPUs whose power follows a list of readings (then its last), 30 and 31 °C."""

    def __init__(self, powers: list[tuple[float, ...] | None]) -> None:
        self.powers = itertools.chain(powers, itertools.repeat(powers[-1]))

    def power_w(self) -> tuple[float, ...] | None:
        return next(self.powers)

    def temperatures_c(self) -> tuple[float, ...] | None:
        return (30.0, 31.0)

    def close(self) -> None:
        pass


def _gpus(powers: list[tuple[float, ...] | None]) -> JobGpus:
    return JobGpus(_FakeGpus(powers))  # type: ignore[arg-type]


def test_the_reference_idle_is_each_gpus_mean_power_with_its_temperature(tmp_path):
    timeline, temps = Timeline(tmp_path / "t.json"), {}
    started = time.monotonic()
    ref = hold_reference_idle(_gpus([(100.0, 60.0), (110.0, 70.0)]), 0.35, timeline, temps)
    assert time.monotonic() - started >= 0.35
    reads = 4  # every 0.1 s over 0.35 s: two readings, then the last repeated
    assert ref == pytest.approx(
        ((100 + 110 * (reads - 1)) / reads, (60 + 70 * (reads - 1)) / reads)
    )
    assert temps == {Mark.REFERENCE_IDLE_START: (30.0, 31.0)}
    marks = timeline.marks
    assert marks[Mark.REFERENCE_IDLE_END] - marks[Mark.REFERENCE_IDLE_START] >= 0.35


def test_no_gpu_holds_the_reference_idle_and_records_nothing(tmp_path):
    timeline, temps = Timeline(tmp_path / "t.json"), {}
    gpus = JobGpus(None, "NVML could not start")
    assert hold_reference_idle(gpus, 0.1, timeline, temps) is None
    assert temps == {} and Mark.REFERENCE_IDLE_END in timeline.marks
    rule = CooldownSpec(max_s=5.0, margin_w=10.0)
    record = cool_down(gpus, None, rule, timeline, temps)
    assert record.ended_by == "no_power_reading" and record.ended - record.started < 0.5
    assert record.power_w_at_end is None and temps == {}


def test_the_cooldown_ends_when_every_gpu_is_back_near_its_reference(tmp_path):
    warm = [(300.0, 200.0), (250.0, 120.0), (120.0, 75.0), (105.0, 79.0)]
    timeline, temps = Timeline(tmp_path / "t.json"), {}
    rule = CooldownSpec(max_s=5.0, margin_w=10.0)
    record = cool_down(_gpus(warm), (100.0, 70.0), rule, timeline, temps)
    assert record.ended_by == "power" and record.power_w_at_end == (105.0, 79.0)
    assert 0.25 <= record.ended - record.started < 1.0  # three reads, 0.1 s apart
    assert (record.started, record.ended) == (
        timeline.marks[Mark.COOLDOWN_START],
        timeline.marks[Mark.COOLDOWN_END],
    )
    assert temps == {Mark.COOLDOWN_START: (30.0, 31.0)}


def test_the_cooldown_stops_at_its_longest_wait_or_when_none_is_asked(tmp_path):
    rule = CooldownSpec(max_s=0.3, margin_w=10.0)
    hot = cool_down(_gpus([(300.0, 70.0)]), (100.0, 70.0), rule, Timeline(tmp_path / "a"), {})
    assert hot.ended_by == "max_s" and 0.3 <= hot.ended - hot.started < 0.6
    none = CooldownSpec(max_s=0.0, margin_w=10.0)
    skip = cool_down(_gpus([(300.0, 70.0)]), (100.0, 70.0), none, Timeline(tmp_path / "b"), {})
    assert skip.ended_by == "skipped" and skip.ended - skip.started < 0.1
    lost = cool_down(
        _gpus([(300.0, 70.0), None]), (100.0, 70.0), rule, Timeline(tmp_path / "c"), {}
    )
    assert lost.ended_by == "no_power_reading" and lost.power_w_at_end == (300.0, 70.0)


def test_the_job_reads_its_gpus_through_nvml(monkeypatch):
    from test_sampling import _fake_nvml

    _fake_nvml(monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,GPU-fake-0")
    gpus = JobGpus.open()
    assert gpus.reason is None
    assert gpus.power_w() == (100.0, 300.0)  # in CUDA_VISIBLE_DEVICES's order, W
    temps: dict = {}
    gpus.note_temperature(Mark.INFERENCE_START, temps)
    assert temps == {Mark.INFERENCE_START: (40.0, 40.0)}
    gpus.close()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1")
    assert "MIG instance" in JobGpus.open().reason
