"""The sampler writes its traces in parts when the job asks (SIGUSR2, after each cell of a model
job): each part a finished file, sampler.json rewritten with the parts so far, and the reader
reads the parts as one trace, refusing a missing, foreign or misplaced part by name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pynvml
import pytest
from test_sampler_marks import _play_job
from test_sampling import NO_NVML, _fake_nvml

from evalwatt.base.layout import JobFiles, trace_part_name
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.energy.trace import TraceError
from evalwatt.energy.trace_files import read_trace, read_trace_parts
from evalwatt.sampling import sampler
from evalwatt.sampling.process import SamplerProcess


def test_part_names_keep_part_zero_as_the_trace_and_sort_later_parts(tmp_path):
    assert trace_part_name("nvml", 0) == "trace-gpu.parquet"
    assert trace_part_name("nvml", 12) == "trace-gpu.part-0012.parquet"
    files = JobFiles(tmp_path)
    for n in (0, 2, 10, 1):
        (tmp_path / trace_part_name("nvml", n)).write_text("")
    (tmp_path / "trace-gpu.part-0003.parquet.partial").write_text("")  # unfinished: not a part
    assert [p.name for p in files.trace_parts("nvml")] == [
        trace_part_name("nvml", n) for n in (0, 1, 2, 10)
    ]
    assert files.trace_parts("rapl") == []
    with pytest.raises(ValueError, match="from 0"):
        trace_part_name("nvml", -1)


def _sample_with_rotations(tmp_path: Path, monkeypatch) -> tuple[dict, list[float]]:
    """The sampler in this process over a fake NVML; a thread stamps a mark, asks for a new
    part, stamps a mark, asks again, then stops it: three parts per probe."""
    _fake_nvml(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "fake-1.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    kept = (signal.SIGTERM, signal.SIGINT, *sampler.SIGNALS)
    saved = {s: signal.getsignal(s) for s in kept}
    sent: list[float] = []
    plan = [0.4, 0.8, 1.2, 1.6]
    signals = [sampler.MARK_SIGNAL, sampler.ROTATE_SIGNAL] * 2
    ready = tmp_path / "ready"
    main = threading.get_ident()

    def job_once_sampling() -> None:  # two pending SIGUSR2 would be one: start when sampling
        while not ready.exists():
            time.sleep(0.01)
        _play_job(plan, 2.2, sent, main, signals)

    job = threading.Thread(target=job_once_sampling)
    job.start()
    try:
        status = sampler.run(tmp_path, os.getpid(), 0.05, 10.0, ready, counter_period_s=0.5)
    finally:
        job.join()
        for s, handler in saved.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(sampler.SIGNALS))
    return status, sent


def test_the_sampler_finishes_a_part_when_asked_and_the_parts_read_as_one(tmp_path, monkeypatch):
    status, sent = _sample_with_rotations(tmp_path, monkeypatch)
    checked = SamplerStatus.model_validate(status)
    assert checked.final and checked.parts == 3
    assert not list(tmp_path.glob("*.partial"))
    for source in ("nvml", "cpu-model"):
        info = checked.traces[source]
        names = [trace_part_name(source, n) for n in range(3)]
        assert list(info.files) == names and info.file == names[0]
        assert [p.name for p in JobFiles(tmp_path).trace_parts(source)] == names
        rows = [pq.read_metadata(tmp_path / n).num_rows for n in names]
        assert all(r > 0 for r in rows) and info.rows == sum(rows)
        for n, name in enumerate(names):  # each part a finished file, numbered in its footer
            footer = pq.read_metadata(tmp_path / name).metadata[b"evalwatt.trace"]
            assert json.loads(footer)["part"] == n
    # a part ends on the counter read made when the job asked for it, the next part goes on
    parts = [read_trace(tmp_path / trace_part_name("nvml", n)) for n in range(3)]
    rotate_at = sent[1::2]
    for part, asked in zip(parts, rotate_at, strict=False):
        last = part.series["0"].t_unix[-1]
        assert 0 <= last - asked < 0.05
    whole = read_trace_parts([tmp_path / trace_part_name("nvml", n) for n in range(3)])
    for device in ("0", "1"):
        joined = [t for p in parts for t in p.series[device].t_unix]
        assert whole.series[device].t_unix == joined == sorted(joined)
        energy = whole.series[device].energy_mj
        assert energy == sorted(energy)  # one counter across the parts
    assert whole.metadata["counter_every_rounds"] == parts[0].metadata["counter_every_rounds"]


def _parts(tmp_path: Path, monkeypatch) -> list[Path]:
    _sample_with_rotations(tmp_path, monkeypatch)
    return [tmp_path / trace_part_name("nvml", n) for n in range(3)]


def test_a_missing_or_misplaced_part_is_refused_by_name(tmp_path, monkeypatch):
    paths = _parts(tmp_path, monkeypatch)
    with pytest.raises(TraceError, match=r"part 2, read as part 1.*missing or out of order"):
        read_trace_parts([paths[0], paths[2]])
    with pytest.raises(TraceError, match=r"part 1, read as part 0"):
        read_trace_parts([paths[1], paths[0]])
    gone = paths[1].rename(tmp_path / "elsewhere.parquet")
    with pytest.raises(TraceError, match=rf"{paths[1].name}: no such trace file"):
        read_trace_parts(paths)
    gone.rename(paths[1])
    paths[2].write_bytes(paths[2].read_bytes()[:100])  # cut: no footer
    with pytest.raises(TraceError, match=rf"{paths[2].name}: not a readable Parquet file"):
        read_trace_parts(paths)
    foreign = tmp_path / trace_part_name("cpu-model", 1)
    with pytest.raises(TraceError, match="not parts of one trace"):
        read_trace_parts([paths[0], foreign])
    with pytest.raises(TraceError, match="no trace part"):
        read_trace_parts([])


@pytest.mark.skipif(not NO_NVML, reason="expects a machine without NVML")
def test_a_killed_sampler_keeps_the_parts_it_finished(tmp_path):
    """The helper the job runtime uses: ``rotate`` returns once sampler.json lists the new
    part, so a kill right after (SIGKILL, no clean stop) leaves those parts readable."""
    out = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = SamplerProcess(out, interval_s=0.05, cpu_watts_per_core=5.0, pid=sleeper.pid)
        for _ in range(2):
            time.sleep(0.3)
            process.rotate()
        time.sleep(0.3)
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(timeout=10)
    finally:
        sleeper.kill()
        sleeper.wait()
    status = SamplerStatus.model_validate_json((out / "sampler.json").read_text())
    assert status.parts == 2 and not status.final
    info = status.traces["cpu-model"]
    assert info.files == (trace_part_name("cpu-model", 0), trace_part_name("cpu-model", 1))
    trace = read_trace_parts([out / f for f in info.files])
    assert sum(len(s.t_unix) for s in trace.series.values()) == info.rows
    assert (out / (trace_part_name("cpu-model", 2) + ".partial")).exists()  # the unfinished one
    with pytest.raises(RuntimeError, match="exited with code -9"):
        process.rotate()
