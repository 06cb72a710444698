"""Probes: one class per energy counter, one method per vendor call.

* ``NvmlProbe``: NVIDIA GPUs through NVML (``import pynvml``, package nvidia-ml-py). The energy
  counter is ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer).
  Only the job's GPUs are opened: ``CUDA_VISIBLE_DEVICES`` as indices or UUIDs. One counter
  read costs ~4 ms of CPU on an H100 against ~0.01 ms for power, so the counter is read every
  ``counter_every`` rounds only (and on the first and the last sample), power every round; the
  reader places window edges between counter reads with power (evalwatt.energy.trace).
* ``RaplProbe``: Intel/AMD CPU packages through ``/sys/class/powercap`` (measured, µJ, wraps).
* ``CpuTimeModelProbe``: a *model*: CPU seconds of the job's process tree x a configured
  power per busy core. Its counter is ``est_energy_mj``, so it can never be mistaken for a
  measurement.

A probe that cannot run raises ``ProbeUnavailable`` with the reason; the reason is kept in
the job's result so that a missing number is explained, never replaced by zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil


class Probe(Protocol):
    """What the sampler needs from a probe."""

    source: str
    domain: str
    is_estimate: bool

    def open(self) -> None: ...
    def sample(self, *, last: bool = False) -> list[dict[str, Any]]:
        """One row per device; ``last`` marks the sampler's final sample."""
        ...

    def metadata(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class ProbeUnavailable(Exception):
    """This machine or job cannot provide this measurement; the message says why."""


def parse_visible_devices(value: str | None) -> list[str] | None:
    """Entries of CUDA_VISIBLE_DEVICES; None when unset (all GPUs visible)."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def nvml_start() -> Any:
    """NVML (``pynvml``), started; ``ProbeUnavailable`` with the reason where it cannot."""
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - nvidia-ml-py is a core dependency
        raise ProbeUnavailable(f"nvidia-ml-py is not installed: {exc}") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise ProbeUnavailable(f"NVML could not start (no NVIDIA driver?): {exc}") from exc
    return pynvml


def nvml_handle(nvml: Any, entry: str) -> Any:
    """NVML's handle of one ``CUDA_VISIBLE_DEVICES`` entry (an index or a UUID)."""
    if entry.startswith("MIG-"):
        raise ProbeUnavailable(
            f"CUDA_VISIBLE_DEVICES entry {entry} is a MIG instance: NVML reports energy "
            "per physical GPU only, so a MIG slice's energy cannot be measured"
        )
    try:
        if entry.startswith("GPU-"):
            return nvml.nvmlDeviceGetHandleByUUID(entry)
        return nvml.nvmlDeviceGetHandleByIndex(int(entry))
    except (ValueError, nvml.NVMLError) as exc:
        raise ProbeUnavailable(f"cannot open GPU {entry!r} with NVML: {exc}") from exc


@dataclass
class NvmlProbe:
    """Samples the GPUs this job was given."""

    visible: list[str] | None = None
    aux_every: int = 1
    counter_every: int = 1
    # rounds between counter reads while the job evaluates (``dense``): the evaluation's
    # generation marks are known only afterwards, from Inspect's log, so no read is made at
    # them (sampler.DENSE_COUNTER_PERIOD_S)
    dense_every: int = 1
    dense: bool = False
    handles: list[Any] = field(default_factory=list)
    info: list[dict[str, Any]] = field(default_factory=list)
    source: str = "nvml"
    domain: str = "gpu"
    is_estimate: bool = False

    def open(self) -> None:
        pynvml = self._nvml = nvml_start()
        self._rounds = 0
        if self.visible is not None and len(self.visible) == 0:
            raise ProbeUnavailable("CUDA_VISIBLE_DEVICES is empty: this job has no GPU")
        entries = self.visible
        if entries is None:
            entries = [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        for entry in entries:
            self.handles.append(self._handle(entry))
        for entry, handle in zip(entries, self.handles, strict=True):
            self.info.append(
                {
                    "visible_as": entry,
                    "nvml_index": pynvml.nvmlDeviceGetIndex(handle),
                    "uuid": pynvml.nvmlDeviceGetUUID(handle),
                    "name": pynvml.nvmlDeviceGetName(handle),
                    "pci_bus_id": pynvml.nvmlDeviceGetPciInfo(handle).busId,
                    "memory_total_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20,
                    "power_limit_mw": self._optional(
                        pynvml.nvmlDeviceGetEnforcedPowerLimit, handle
                    ),
                }
            )
        if not self.handles:
            raise ProbeUnavailable("NVML sees no GPU")
        # A GPU without the energy counter (pre-Volta) must not read as zero.
        for info, handle in zip(self.info, self.handles, strict=True):
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            except pynvml.NVMLError as exc:
                raise ProbeUnavailable(
                    f"GPU {info['uuid']} has no NVML energy counter: {exc}"
                ) from exc
            # Between counter reads, power places the window edges: without it, read the
            # counter every round (the reader would otherwise interpolate over ~1 s in time).
            if self._optional(pynvml.nvmlDeviceGetPowerUsage, handle) is None:
                self.counter_every = 1

    def _handle(self, entry: str) -> Any:
        return nvml_handle(self._nvml, entry)

    def _optional(self, call: Any, handle: Any) -> Any:
        try:
            return call(handle)
        except self._nvml.NVMLError:
            return None

    def sample(self, *, last: bool = False) -> list[dict[str, Any]]:
        """Power every round; the energy counter every ``counter_every`` rounds, on the first
        round and on the ``last`` sample (``energy_mj`` null in between); temperature, clocks,
        memory and utilisation every ``aux_every`` rounds only (null in between): they explain
        a trace, they are not integrated, and reading them every round was most of the
        sampler's cost. A row is stamped at the middle of its counter read, or of its power
        read where the counter is not read."""
        nvml = self._nvml
        aux = self._rounds % self.aux_every == 0
        every = min(self.dense_every, self.counter_every) if self.dense else self.counter_every
        counter = last or self._rounds % every == 0
        self._rounds += 1
        rows = []
        for info, h in zip(self.info, self.handles, strict=True):
            before = time.time()
            if counter:
                energy_mj: float | None = float(nvml.nvmlDeviceGetTotalEnergyConsumption(h))
                t = (before + time.time()) / 2
                power_mw = self._optional(nvml.nvmlDeviceGetPowerUsage, h)
            else:
                energy_mj = None
                power_mw = self._optional(nvml.nvmlDeviceGetPowerUsage, h)
                t = (before + time.time()) / 2
            row: dict[str, Any] = {
                "t_unix": t,
                "device": str(info["nvml_index"]),
                "gpu_uuid": info["uuid"],
                "energy_mj": energy_mj,
                "power_mw": power_mw,
            }
            if aux:
                row.update(self._aux(h))
            rows.append(row)
        return rows

    def read_counter_now(self) -> list[dict[str, Any]]:
        """An extra counter read of every device, outside the rounds' schedule: the job asks
        for one at each of its marks (SIGUSR1), so that every window edge has a counter read
        within milliseconds and the counter can be read rarely in between."""
        nvml = self._nvml
        rows = []
        for info, h in zip(self.info, self.handles, strict=True):
            before = time.time()
            energy_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(h))
            t = (before + time.time()) / 2
            rows.append(
                {
                    "t_unix": t,
                    "device": str(info["nvml_index"]),
                    "gpu_uuid": info["uuid"],
                    "energy_mj": energy_mj,
                    "power_mw": self._optional(nvml.nvmlDeviceGetPowerUsage, h),
                }
            )
        return rows

    def _aux(self, h: Any) -> dict[str, Any]:
        nvml = self._nvml
        util = self._optional(nvml.nvmlDeviceGetUtilizationRates, h)
        mem = self._optional(nvml.nvmlDeviceGetMemoryInfo, h)
        return {
            "temp_c": self._optional(
                lambda x: nvml.nvmlDeviceGetTemperature(x, nvml.NVML_TEMPERATURE_GPU), h
            ),
            "sm_mhz": self._optional(
                lambda x: nvml.nvmlDeviceGetClockInfo(x, nvml.NVML_CLOCK_SM), h
            ),
            "mem_mhz": self._optional(
                lambda x: nvml.nvmlDeviceGetClockInfo(x, nvml.NVML_CLOCK_MEM), h
            ),
            "mem_used_mib": None if mem is None else mem.used // 2**20,
            "util_gpu": None if util is None else util.gpu,
        }

    def metadata(self) -> dict[str, Any]:
        return {
            "devices": self.info,
            "driver": self._nvml.nvmlSystemGetDriverVersion(),
            "aux_every_rounds": self.aux_every,
            "counter_every_rounds": self.counter_every,
            "dense_counter_every_rounds": self.dense_every,
        }

    def close(self) -> None:
        self._nvml.nvmlShutdown()


@dataclass
class RaplProbe:
    """CPU package energy from the powercap interface, unwrapped at each read."""

    root: Path = Path("/sys/class/powercap")
    source: str = "rapl"
    domain: str = "cpu"
    is_estimate: bool = False
    zones: list[Path] = field(default_factory=list)

    def open(self) -> None:
        zones = sorted(p for p in self.root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not zones:
            raise ProbeUnavailable(f"no RAPL package zone under {self.root}")
        self._last: dict[Path, int] = {}
        self._offset: dict[Path, int] = {}
        self._range: dict[Path, int] = {}
        for zone in zones:
            try:
                self._last[zone] = int((zone / "energy_uj").read_text())
                self._range[zone] = int((zone / "max_energy_range_uj").read_text())
            except OSError as exc:
                raise ProbeUnavailable(f"{zone}/energy_uj is not readable: {exc}") from exc
            self._offset[zone] = 0
        self.zones = zones

    def sample(self, *, last: bool = False) -> list[dict[str, Any]]:
        rows = []
        for zone in self.zones:
            before = time.time()
            value = int((zone / "energy_uj").read_text())
            t = (before + time.time()) / 2  # at the read, as NVML's rows
            if value < self._last[zone]:  # the counter wrapped after max_energy_range_uj
                self._offset[zone] += self._range[zone] + 1
            self._last[zone] = value
            rows.append(
                {
                    "t_unix": t,
                    "device": zone.name,
                    "energy_mj": (value + self._offset[zone]) / 1000.0,
                    "power_mw": None,
                }
            )
        return rows

    def metadata(self) -> dict[str, Any]:
        return {"zones": [z.name for z in self.zones]}

    def close(self) -> None:
        pass


@dataclass
class CpuTimeModelProbe:
    """Modelled CPU energy of one process tree: busy CPU seconds x watts per busy core."""

    pid: int
    watts_per_core: float
    source: str = "cpu-model"
    domain: str = "cpu"
    is_estimate: bool = True

    def open(self) -> None:
        try:
            self._root = psutil.Process(self.pid)
        except psutil.Error as exc:
            raise ProbeUnavailable(f"process {self.pid} cannot be watched: {exc}") from exc
        self._last = 0.0
        self.failed_walks = 0

    def cpu_seconds(self) -> float | None:
        """CPU seconds of the live tree, the children it has reaped included; None when the
        tree cannot be listed (the row's estimate is then null, never a frozen value).

        A child that exits is counted again once its parent reaps it (``children_*`` times),
        so only live processes are summed; the sampler itself is left out. Orphans that are
        never reaped by the tree are lost, and the total is kept monotonic.
        """
        own = os.getpid()
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            self.failed_walks += 1
            return None
        total = 0.0
        for proc in procs:
            if proc.pid == own and proc.pid != self.pid:
                continue
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        self._last = max(self._last, total)
        return self._last

    def sample(self, *, last: bool = False) -> list[dict[str, Any]]:
        """One row; none once the followed process has exited (a job killed without its
        sampler: nothing is left to model, and a null after the job's end would make the
        trace of its finished cells unreadable)."""
        t = time.time()
        cpu_s = self.cpu_seconds()
        if cpu_s is None and not self._root.is_running():
            return []
        return [
            {
                "t_unix": t,
                "device": "process-tree",
                "cpu_time_s": cpu_s,
                "est_energy_mj": None if cpu_s is None else cpu_s * self.watts_per_core * 1e3,
            }
        ]

    def metadata(self) -> dict[str, Any]:
        return {
            "model": "cpu_time_s x watts_per_core",
            "watts_per_core": self.watts_per_core,
            "pid": self.pid,
            "logical_cpus": os.cpu_count(),
            "failed_tree_walks": self.failed_walks,
        }

    def close(self) -> None:
        pass


@dataclass
class GpuReadings:
    """Live power and temperature of the job's GPUs, read by the job itself (not sampled):
    the model job's reference idle and cooldowns wait on the power, its windows record the
    temperature at their start. Opens the GPUs of ``CUDA_VISIBLE_DEVICES`` as ``NvmlProbe``
    does; ``ProbeUnavailable`` with the reason where there is none."""

    visible: list[str] | None = None
    handles: list[Any] = field(default_factory=list)

    def open(self) -> None:
        pynvml = self._nvml = nvml_start()
        if self.visible is not None and not self.visible:
            raise ProbeUnavailable("CUDA_VISIBLE_DEVICES is empty: this job has no GPU")
        entries = self.visible or [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.handles = [nvml_handle(pynvml, entry) for entry in entries]
        if not self.handles:
            raise ProbeUnavailable("NVML sees no GPU")

    def power_w(self) -> tuple[float, ...] | None:
        """Each GPU's power now, W; None when one cannot be read."""
        try:
            return tuple(self._nvml.nvmlDeviceGetPowerUsage(h) / 1000.0 for h in self.handles)
        except self._nvml.NVMLError:
            return None

    def temperatures_c(self) -> tuple[float, ...] | None:
        """Each GPU's temperature now, °C; None when one cannot be read."""
        nvml = self._nvml
        try:
            return tuple(
                float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
                for h in self.handles
            )
        except nvml.NVMLError:
            return None

    def close(self) -> None:
        self._nvml.nvmlShutdown()
