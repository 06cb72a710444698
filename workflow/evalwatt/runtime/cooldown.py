"""A model job's waits at loaded idle, on the GPUs' live power: the reference idle (the
loaded model held idle, the in-job baseline measured in the same CUDA state as its cells) and
the cooldown before each cell (until every GPU's power is back near that reference, so a cell
does not start on GPUs still warm from the one before). Temperatures are read at the start
of every window.

The power is read by the job itself through NVML every ``POWER_READ_S`` (sampling.probes.
GpuReadings), only to decide when a wait ends; the energy of these windows comes from the
sampler's trace like any other window's. A job without GPUs (or NVML) waits the reference
idle all the same, ends each cooldown at once (``no_power_reading``) and records no
temperature: never a 0.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Literal

from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.result import CooldownRecord
from evalwatt.contracts.spec import CooldownSpec
from evalwatt.runtime.timeline import Timeline
from evalwatt.sampling.probes import GpuReadings, ProbeUnavailable, parse_visible_devices

POWER_READ_S = 0.1


@dataclass
class JobGpus:
    """The job's GPUs as the job reads them live; ``readings`` None (and ``reason``) where
    there is none to read."""

    readings: GpuReadings | None
    reason: str | None = None

    @classmethod
    def open(cls) -> JobGpus:
        readings = GpuReadings(parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES")))
        try:
            readings.open()
        except ProbeUnavailable as exc:
            return cls(None, str(exc))
        return cls(readings)

    def power_w(self) -> tuple[float, ...] | None:
        return self.readings.power_w() if self.readings is not None else None

    def note_temperature(self, mark: Mark, temperatures: dict[Mark, tuple[float, ...]]) -> None:
        """Record the GPUs' temperature as the one window ``mark`` starts at (read just
        before it is stamped). Nothing recorded without GPUs, never a 0."""
        if self.readings is not None and (now := self.readings.temperatures_c()) is not None:
            temperatures[mark] = now

    def stamp(
        self, timeline: Timeline, mark: Mark, temperatures: dict[Mark, tuple[float, ...]]
    ) -> float:
        """Read the GPUs' temperature, then stamp ``mark`` (a window's start)."""
        self.note_temperature(mark, temperatures)
        return timeline.mark(mark)

    def close(self) -> None:
        if self.readings is not None:
            self.readings.close()


def hold_reference_idle(
    gpus: JobGpus,
    seconds: float,
    timeline: Timeline,
    temperatures: dict[Mark, tuple[float, ...]],
) -> tuple[float, ...] | None:
    """Hold the loaded model idle ``seconds`` between ``reference_idle_*``; return each GPU's
    mean power over it (W), None where none could be read."""
    gpus.stamp(timeline, Mark.REFERENCE_IDLE_START, temperatures)
    reads: list[tuple[float, ...]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if (power := gpus.power_w()) is not None:
            reads.append(power)
        time.sleep(min(POWER_READ_S, left))
    timeline.mark(Mark.REFERENCE_IDLE_END)
    if not reads:
        return None
    return tuple(statistics.fmean(gpu) for gpu in zip(*reads, strict=True))


def cool_down(
    gpus: JobGpus,
    reference_w: tuple[float, ...] | None,
    rule: CooldownSpec,
    timeline: Timeline,
    temperatures: dict[Mark, tuple[float, ...]],
) -> CooldownRecord:
    """Wait between ``cooldown_*`` until every GPU's power is at most its reference idle plus
    ``rule.margin_w``, or ``rule.max_s``; at once where there is no power to compare."""
    started = gpus.stamp(timeline, Mark.COOLDOWN_START, temperatures)
    deadline = time.monotonic() + rule.max_s
    power = gpus.power_w()
    ended_by: Literal["power", "max_s", "no_power_reading", "skipped"]
    if rule.max_s == 0:
        ended_by = "skipped"
    elif power is None or reference_w is None:
        ended_by = "no_power_reading"
    else:
        while True:
            if all(p <= r + rule.margin_w for p, r in zip(power, reference_w, strict=True)):
                ended_by = "power"
                break
            if time.monotonic() >= deadline:
                ended_by = "max_s"
                break
            time.sleep(POWER_READ_S)
            if (now := gpus.power_w()) is None:
                ended_by = "no_power_reading"
                break
            power = now
    ended = timeline.mark(Mark.COOLDOWN_END)
    return CooldownRecord(
        started=started,
        ended=ended,
        ended_by=ended_by,
        reference_power_w=reference_w,
        power_w_at_end=power,
        max_s=rule.max_s,
        margin_w=rule.margin_w,
    )
