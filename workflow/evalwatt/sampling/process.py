"""Start the sampler as its own process, wait until it samples, stop it cleanly.

Used by the job runtime and by the GPU checks in benchmarks/, so that both measure the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from evalwatt.base.layout import SAMPLER_STATUS
from evalwatt.sampling.sampler import (
    COUNTER_PERIOD_S,
    DENSE_OFF,
    DENSE_ON,
    MARK_SIGNAL,
    ROTATE_SIGNAL,
)

# The marks between which a job evaluates (its generation marks come afterwards from the log).
DENSE_FROM = ("inference_start", "judging_start")
DENSE_UNTIL = ("inference_end", "judging_end")

READY_TIMEOUT_S = 60.0
# Longest wait for the sampler to finish a trace part (a few row groups and a footer).
ROTATE_TIMEOUT_S = 60.0


class SamplerProcess:
    """``python -m evalwatt.sampling`` following process ``pid`` (default: this process)."""

    def __init__(
        self,
        out_dir: Path,
        interval_s: float = 0.1,
        cpu_watts_per_core: float = 10.0,
        pid: int | None = None,
        env: Mapping[str, str] | None = None,
        counter_period_s: float | None = COUNTER_PERIOD_S,
    ) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        ready = out_dir / ".sampler-ready"
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "evalwatt.sampling",
            "--out-dir",
            str(out_dir),
            "--pid",
            str(pid or os.getpid()),
            "--interval-s",
            str(interval_s),
            "--cpu-watts-per-core",
            str(cpu_watts_per_core),
            "--ready-file",
            str(ready),
        ]
        if counter_period_s is not None:  # read NVML's counter that often, power every round
            argv += ["--counter-period-s", str(counter_period_s)]
        self.status_file = out_dir / SAMPLER_STATUS
        self.parts = 0  # trace parts the sampler has finished, as its status says
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)
        self.ready_unix = self._wait_ready(ready)
        ready.unlink()

    def _wait_ready(self, ready: Path) -> float:
        """Poll until the sampler has written its first round's time. The sampler writes the
        file atomically; a half-written or unreadable file is read again, never trusted, so a
        busy node only makes the wait longer."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            ready_unix = _read_unix_time(ready)
            if ready_unix is not None:
                return ready_unix
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(
                    f"the energy sampler exited with code {code} before sampling (see the job log)"
                )
            if time.monotonic() > deadline:
                self.process.terminate()
                raise RuntimeError(
                    f"the energy sampler did not sample within {READY_TIMEOUT_S:.0f} s "
                    "(see the job log)"
                )
            time.sleep(0.02)

    def poke(self, mark: str | None = None) -> None:
        """Ask the sampler for every counter now (the job just stamped ``mark``); at the start
        and end of an evaluation, also to read NVML's counter densely until its end. Harmless
        once the sampler is gone; it blocks the signals from its start, never dies of them."""
        sig = DENSE_ON if mark in DENSE_FROM else DENSE_OFF if mark in DENSE_UNTIL else MARK_SIGNAL
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def rotate(self) -> None:
        """Close the traces' current part and open the next, and return once the sampler has
        rewritten its status with the part finished: the part is then a complete file that a
        later kill of the job cannot take (a model job, after each cell)."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the energy sampler exited with code {self.process.returncode}: "
                "no trace part can be finished"
            )
        self.process.send_signal(ROTATE_SIGNAL)
        deadline = time.monotonic() + ROTATE_TIMEOUT_S
        while (parts := _finished_parts(self.status_file)) <= self.parts:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the energy sampler did not finish a trace part within "
                    f"{ROTATE_TIMEOUT_S:.0f} s (exit code {self.process.returncode})"
                )
            time.sleep(0.02)
        self.parts = parts

    def stop(self) -> None:
        """SIGTERM, then wait: the sampler closes its traces and writes sampler.json."""
        if self.process.poll() is None:
            self.process.terminate()
        if self.process.wait(timeout=120) != 0:
            raise RuntimeError(f"the energy sampler exited with code {self.process.returncode}")


def _finished_parts(status: Path) -> int:
    """The trace parts sampler.json says are finished; 0 while it is absent. The sampler
    writes it atomically, so a reader never sees half a file."""
    try:
        return int(json.loads(status.read_text(encoding="utf-8")).get("parts", 0))
    except FileNotFoundError:
        return 0


def _read_unix_time(path: Path) -> float | None:
    """The unix time in ``path``, or None while it is absent, empty or not yet a number."""
    try:
        value = float(path.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None
