"""The cluster tests: a real single-node Slurm (tests/cluster/slurm-up.sh, with slurmdbd so
that sacct works). Marked ``cluster``; never skipped in CI (CI=true), skipped elsewhere only
when not root (the script installs and starts Slurm)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SLURM_UP = Path(__file__).resolve().parent / "slurm-up.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the real test Slurm of slurm-up.sh")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Start the test cluster once per session (idempotent: at once when it is up)."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the test cluster needs root (tests/cluster/slurm-up.sh); CI runs it")
    done = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
