"""The sampler reads NVML's energy counter at each mark the job stamps (SIGUSR1), between its
scheduled reads, so that every window edge has a counter read within milliseconds.

The sampler runs in this process, on its main thread (signals go there), over a fake NVML; a
thread plays the job: it stamps marks (pokes) and finally stops the sampler."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pynvml
from test_sampling import _fake_nvml

from evalwatt.sampling import sampler


def _play_job(
    marks: list[float],
    stop_after_s: float,
    sent: list[float],
    main: int,
    signals: list[int] | None = None,
) -> None:
    started = time.monotonic()
    for i, at in enumerate(marks):
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        sent.append(time.time())
        # to the sampler's thread: pytest's other threads do not block the signal (the
        # sampler's own process blocks it in every thread, from its first line)
        signal.pthread_kill(main, signals[i] if signals else sampler.MARK_SIGNAL)
    time.sleep(max(0.0, stop_after_s - (time.monotonic() - started)))
    os.kill(os.getpid(), signal.SIGTERM)


def test_each_mark_gets_a_counter_read_at_once(tmp_path: Path, monkeypatch):
    _fake_nvml(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "fake-1.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, sampler.MARK_SIGNAL)}
    marks = [0.55, 0.93, 1.41]
    sent: list[float] = []
    job = threading.Thread(target=_play_job, args=(marks, 2.0, sent, threading.get_ident()))
    job.start()
    try:
        status = sampler.run(tmp_path, os.getpid(), 0.1, 10.0, None, counter_period_s=5.0)
    finally:
        job.join()
        for s, handler in saved.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sampler.MARK_SIGNAL})
    assert status["counter_reads_on_mark"] == len(marks)
    trace = pq.read_table(tmp_path / "trace-gpu.parquet").to_pylist()
    reads = [r["t_unix"] for r in trace if r["energy_mj"] is not None]
    powers = [r for r in trace if r["energy_mj"] is None]
    # scheduled: the first round and the last sample (the 5 s period never comes); on demand:
    # one per mark
    assert len(reads) == 2 + len(marks)
    assert len(powers) >= 15  # power still every round, ~2 s at 10 Hz
    # the CPU-time model too (every 5 s otherwise): the first round, one per mark, the last
    cpu = pq.read_table(tmp_path / "trace-cpu-est.parquet").to_pylist()
    assert len(cpu) == 2 + len(marks)
    on_mark = sorted(reads)[1:-1]
    for mark, read in zip(sent, on_mark, strict=True):
        # at once, not at the next round: well under the 100 ms between rounds
        assert 0.0 <= read - mark < 0.05, read - mark


def test_the_counter_is_read_densely_while_the_job_evaluates(tmp_path: Path, monkeypatch):
    """Between the evaluation's start and end (DENSE_ON, DENSE_OFF) the counter is read every
    DENSE_COUNTER_PERIOD_S, the generation marks inside it being known only afterwards."""
    _fake_nvml(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "fake-1.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    kept = (signal.SIGTERM, signal.SIGINT, *sampler.SIGNALS)
    saved = {s: signal.getsignal(s) for s in kept}
    sent: list[float] = []
    plan = [0.3, 2.4]
    job = threading.Thread(
        target=_play_job,
        args=(plan, 3.6, sent, threading.get_ident(), [sampler.DENSE_ON, sampler.DENSE_OFF]),
    )
    job.start()
    try:
        status = sampler.run(tmp_path, os.getpid(), 0.1, 10.0, None, counter_period_s=5.0)
    finally:
        job.join()
        for s, handler in saved.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(sampler.SIGNALS))
    assert status["counter_reads_on_mark"] == 2
    reads = sorted(
        r["t_unix"]
        for r in pq.read_table(tmp_path / "trace-gpu.parquet").to_pylist()
        if r["energy_mj"] is not None
    )
    on, off = sent
    inside = [t for t in reads if on <= t <= off + 0.05]
    # the read at DENSE_ON, then one every 0.2 s (2 rounds), then the read at DENSE_OFF
    assert len(inside) >= 10
    assert max(b - a for a, b in itertools.pairwise(inside)) < 0.2 + 0.15
    # after the evaluation, back to every 5 s: only the last sample reads it
    assert len([t for t in reads if t > off + 0.05]) == 1
    info = status["traces"]["nvml"]
    assert info["counter_every_rounds"] == 50 and info["dense_counter_every_rounds"] == 2
