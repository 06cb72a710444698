"""Sampler pieces that run without a GPU: probes (fake powercap tree, fake NVML), the CPU-time
model, and the sampler process itself for half a second."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pynvml
import pytest

from evalwatt.energy.trace_files import read_trace
from evalwatt.sampling.probes import (
    CpuTimeModelProbe,
    NvmlProbe,
    ProbeUnavailable,
    RaplProbe,
    parse_visible_devices,
)
from evalwatt.sampling.process import SamplerProcess


def _nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


NO_NVML = not _nvml_works()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("0", ["0"]),
        ("0, 2", ["0", "2"]),
        ("1,,3,", ["1", "3"]),
        ("GPU-8a2f,MIG-11d0", ["GPU-8a2f", "MIG-11d0"]),
    ],
)
def test_parse_visible_devices(value, expected):
    assert parse_visible_devices(value) == expected


# --- NVML -----------------------------------------------------------------------------------


@pytest.mark.skipif(not NO_NVML, reason="this machine has a working NVIDIA driver")
def test_nvml_unavailable_without_driver():
    with pytest.raises(ProbeUnavailable, match="NVML could not start"):
        NvmlProbe(visible=None).open()


def _fake_nvml(monkeypatch, energy_error: bool = False):
    """NVML as seen by the probe: two GPUs, 300 W and 100 W, counters that advance."""
    clock = {"calls": 0}
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 2)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: ("h", i))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", lambda u: ("h", int(u[-1])))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetIndex", lambda h: h[1])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", lambda h: f"GPU-fake-{h[1]}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "Fake H100")
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetPciInfo", lambda h: SimpleNamespace(busId=f"0000:0{h[1]}:00.0")
    )
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetMemoryInfo", lambda h: SimpleNamespace(total=80 * 2**30, used=2**30)
    )
    monkeypatch.setattr(pynvml, "nvmlDeviceGetEnforcedPowerLimit", lambda h: 700_000)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", lambda h: (300_000, 100_000)[h[1]])

    def energy(h):
        if energy_error:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        clock["calls"] += 1
        return 1_000_000 * (h[1] + 1) + clock["calls"]

    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", energy)

    def no_util(h):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", no_util)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTemperature", lambda h, s: 40)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetClockInfo", lambda h, c: 1980)


def test_nvml_mig_entry_is_refused_with_reason(monkeypatch):
    _fake_nvml(monkeypatch)
    with pytest.raises(ProbeUnavailable, match=r"MIG-11d0.*MIG instance.*per physical GPU"):
        NvmlProbe(visible=["MIG-11d0"]).open()


def test_nvml_empty_visible_devices_means_no_gpu(monkeypatch):
    _fake_nvml(monkeypatch)
    with pytest.raises(ProbeUnavailable, match="no GPU"):
        NvmlProbe(visible=[]).open()


def test_nvml_gpu_without_energy_counter_is_unavailable_not_zero(monkeypatch):
    _fake_nvml(monkeypatch, energy_error=True)
    with pytest.raises(ProbeUnavailable, match="GPU-fake-0 has no NVML energy counter"):
        NvmlProbe(visible=None).open()


def test_nvml_opens_only_the_visible_gpus(monkeypatch):
    _fake_nvml(monkeypatch)
    probe = NvmlProbe(visible=["GPU-fake-1"])
    probe.open()
    rows = probe.sample()
    assert [r["device"] for r in rows] == ["1"]
    assert rows[0]["gpu_uuid"] == "GPU-fake-1"
    assert rows[0]["power_mw"] == 100_000
    assert rows[0]["util_gpu"] is None  # unsupported query: null, not 0
    assert rows[0]["mem_used_mib"] == 1024
    assert probe.info[0]["memory_total_mib"] == 80 * 1024


def test_nvml_reads_the_counter_every_few_rounds_and_power_every_round(monkeypatch):
    _fake_nvml(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "550.00")
    probe = NvmlProbe(visible=["0"], counter_every=3)
    probe.open()
    rounds = [probe.sample()[0] for _ in range(7)] + [probe.sample(last=True)[0]]
    has_counter = [r["energy_mj"] is not None for r in rounds]
    assert has_counter == [True, False, False, True, False, False, True, True]  # and the last
    assert all(r["power_mw"] == 300_000 for r in rounds)
    assert probe.metadata()["counter_every_rounds"] == 3


def test_nvml_rows_are_stamped_at_the_counter_read(monkeypatch):
    """A row's time is the middle of its counter read, not a time before it: with a read
    that takes 0.2 s, the stamp is 0.1 s after the call began (issue 10)."""
    _fake_nvml(monkeypatch)
    probe = NvmlProbe(visible=["0"])
    probe.open()
    called: list[float] = []

    def slow_energy(h):
        called.append(time.time())
        time.sleep(0.2)
        return 5_000_000

    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", slow_energy)
    (row,) = probe.sample(last=True)
    assert row["energy_mj"] == 5_000_000
    assert row["t_unix"] == pytest.approx(called[0] + 0.1, abs=0.03)


def test_rapl_rows_are_stamped_at_the_read(tmp_path, monkeypatch):
    _zone(tmp_path, "intel-rapl:0", 1_000_000)
    probe = RaplProbe(root=tmp_path)
    probe.open()
    called: list[float] = []
    read_text = Path.read_text

    def slow_read(self, *args, **kwargs):
        if self.name == "energy_uj":
            called.append(time.time())
            time.sleep(0.2)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", slow_read)
    (row,) = probe.sample()
    assert row["t_unix"] == pytest.approx(called[0] + 0.1, abs=0.03)


def test_nvml_without_power_reads_the_counter_every_round(monkeypatch):
    _fake_nvml(monkeypatch)

    def no_power(h):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", no_power)
    probe = NvmlProbe(visible=["0"], counter_every=10)
    probe.open()
    assert probe.counter_every == 1
    assert all(probe.sample()[0]["energy_mj"] is not None for _ in range(3))


def test_nvml_bad_index_is_unavailable(monkeypatch):
    _fake_nvml(monkeypatch)
    with pytest.raises(ProbeUnavailable, match="cannot open GPU 'zero'"):
        NvmlProbe(visible=["zero"]).open()


# --- RAPL -----------------------------------------------------------------------------------


def _zone(root: Path, name: str, energy_uj: int, max_range_uj: int = 10_000_000) -> Path:
    zone = root / name
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return zone


def test_rapl_unwraps_the_counter(tmp_path):
    pkg = _zone(tmp_path, "intel-rapl:0", 1_000_000)
    _zone(tmp_path, "intel-rapl:0:0", 500)  # a sub-zone (core): not a package, not read
    probe = RaplProbe(root=tmp_path)
    probe.open()
    readings = []
    for value in (5_000_000, 9_000_000, 1_000_000, 3_000_000, 500_000):
        (pkg / "energy_uj").write_text(f"{value}\n")
        (row,) = probe.sample()
        assert row["device"] == "intel-rapl:0"
        readings.append(row["energy_mj"])
    # The counter runs 0..max_energy_range_uj (1e7) then restarts at 0: one wrap adds
    # max + 1 uJ. 9e6 -> 1e6: +2e6 + 1 uJ; 3e6 -> 0.5e6: +7.5e6 + 1 uJ.
    assert readings == [5_000.0, 9_000.0, 11_000.001, 13_000.001, 20_500.002]
    assert all(b > a for a, b in itertools.pairwise(readings))


def test_rapl_two_packages(tmp_path):
    _zone(tmp_path, "intel-rapl:0", 100_000)
    _zone(tmp_path, "intel-rapl:1", 200_000)
    probe = RaplProbe(root=tmp_path)
    probe.open()
    rows = probe.sample()
    assert {r["device"]: r["energy_mj"] for r in rows} == {
        "intel-rapl:0": 100.0,
        "intel-rapl:1": 200.0,
    }
    assert probe.metadata() == {"zones": ["intel-rapl:0", "intel-rapl:1"]}


def test_rapl_without_zones(tmp_path):
    with pytest.raises(ProbeUnavailable, match="no RAPL package zone"):
        RaplProbe(root=tmp_path).open()


def test_rapl_unreadable_zone(tmp_path):
    zone = _zone(tmp_path, "intel-rapl:0", 1)
    (zone / "energy_uj").unlink()
    with pytest.raises(ProbeUnavailable, match="not readable"):
        RaplProbe(root=tmp_path).open()


# --- the CPU-time model -------------------------------------------------------------------


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += sum(range(1000))


def test_cpu_model_on_the_current_process():
    probe = CpuTimeModelProbe(pid=os.getpid(), watts_per_core=12.5)
    probe.open()
    (before,) = probe.sample()
    _burn(0.3)
    (after,) = probe.sample()
    assert after["cpu_time_s"] - before["cpu_time_s"] >= 0.25
    assert after["est_energy_mj"] == pytest.approx(after["cpu_time_s"] * 12.5 * 1000)


def test_cpu_model_on_a_busy_child_tree(tmp_path):
    """The sampler's real use: it watches another process (the job) and its children."""
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "end = time.process_time() + 0.4\n"
        "while time.process_time() < end: sum(range(1000))\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        probe = CpuTimeModelProbe(pid=child.pid, watts_per_core=12.5)
        probe.open()
        (before,) = probe.sample()
        go.touch()
        deadline = time.monotonic() + 10
        while True:
            (after,) = probe.sample()
            if after["cpu_time_s"] - before["cpu_time_s"] >= 0.35 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    assert after["cpu_time_s"] - before["cpu_time_s"] >= 0.35
    assert after["est_energy_mj"] == pytest.approx(after["cpu_time_s"] * 12.5 * 1000, rel=1e-12)
    assert after["device"] == "process-tree"


def test_cpu_model_on_a_missing_process():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProbeUnavailable, match=str(child.pid)):
        CpuTimeModelProbe(pid=child.pid, watts_per_core=10).open()


# --- the sampler process -------------------------------------------------------------------


@pytest.mark.skipif(not NO_NVML, reason="expects a machine without NVML")
def test_sampler_process_runs_and_stops_cleanly(tmp_path):
    """The helper the job runtime uses: start, wait until sampling, SIGTERM, clean files."""
    out = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sampler = SamplerProcess(out, interval_s=0.05, cpu_watts_per_core=7.5, pid=sleeper.pid)
        time.sleep(2.3)
        sampler.stop()  # raises unless the sampler exits 0 after SIGTERM
    finally:
        sleeper.kill()
        sleeper.wait()

    trace_path = out / "trace-cpu-est.parquet"
    assert trace_path.exists()
    assert not list(out.glob("*.partial"))
    status = json.loads((out / "sampler.json").read_text())
    assert set(status["unavailable"]) == {"nvml", "rapl"}
    assert all(reason.strip() for reason in status["unavailable"].values())
    assert set(status["traces"]) == {"cpu-model"}
    rows = status["traces"]["cpu-model"]["rows"]
    # the CPU-time model is sampled every 5 s (its tree walk is costly; at each mark too, and
    # there are none here), plus a last sample at stop: round 0 in 2.3 s, and the last
    assert rows == 2
    assert status["traces"]["cpu-model"]["interval_s"] == pytest.approx(5.0)
    assert status["rounds"] >= 40
    assert pq.read_metadata(trace_path).num_rows == rows
    trace = read_trace(trace_path)
    assert trace.is_estimate is True and trace.source == "cpu-model"
    assert trace.metadata["watts_per_core"] == 7.5
    assert trace.metadata["pid"] == sleeper.pid
    times = trace.series["process-tree"].t_unix
    assert times == sorted(times)
    assert times[0] <= sampler.ready_unix <= times[-1]


@pytest.mark.skipif(not NO_NVML, reason="expects a machine without NVML")
def test_sampler_stops_by_itself_when_the_job_is_gone(tmp_path):
    out, ready = tmp_path / "run", tmp_path / "ready"
    # the job lives until the sampler is sampling it, then a little longer, then exits
    code = (
        f"import os, time\nwhile not os.path.exists({str(ready)!r}): time.sleep(0.01)\n"
        "time.sleep(0.3)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", code])
    sampler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evalwatt.sampling",
            "--out-dir",
            str(out),
            "--pid",
            str(job.pid),
            "--interval-s",
            "0.01",
            "--ready-file",
            str(ready),
        ],
    )
    try:
        job.wait(timeout=30)  # reaped: its pid is gone, not a zombie
        assert sampler.wait(timeout=30) == 0  # no signal sent
    finally:
        if sampler.poll() is None:
            sampler.kill()
    status = json.loads((out / "sampler.json").read_text())
    assert set(status["traces"]) == {"cpu-model"}
    assert status["rounds"] >= 1
    assert (out / "trace-cpu-est.parquet").exists()
    assert not list(out.glob("*.partial"))
