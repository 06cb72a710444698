"""Start the sampler as its own process, wait until it samples, stop it cleanly.

Used by the job runtime and by the GPU checks in benchmarks/, so that both measure the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

READY_TIMEOUT_S = 60.0


class SamplerProcess:
    """``python -m evalwatt.sampling`` following process ``pid`` (default: this process)."""

    def __init__(
        self,
        out_dir: Path,
        interval_s: float = 0.1,
        cpu_watts_per_core: float = 10.0,
        pid: int | None = None,
        env: Mapping[str, str] | None = None,
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
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the energy sampler did not start (see the job log)")
            time.sleep(0.02)
        self.ready_unix = float(ready.read_text())
        ready.unlink()

    def stop(self) -> None:
        """SIGTERM, then wait: the sampler closes its traces and writes sampler.json."""
        if self.process.poll() is None:
            self.process.terminate()
        if self.process.wait(timeout=120) != 0:
            raise RuntimeError(f"the energy sampler exited with code {self.process.returncode}")
