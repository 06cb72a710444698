"""The sampler starts on a busy node: every core loaded, many starts, never a failed job.

A demo cell once died with ``could not convert string to float: ''``: the job read the
sampler's ready file between its creation and its write. The sampler now writes it atomically
and the job re-reads anything that is not yet a time.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalwatt.sampling.process import SamplerProcess, _read_unix_time

STARTS = 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),  # not written yet
        ("", None),  # created, not yet written (what the old job read)
        ("17", 17.0),
        ("1763780000.25\n", 1763780000.25),
        ("1763780000.", 1763780000.0),
        ("17637800", 17637800.0),
        ("nan\n", None),
        ("inf\n", None),
        ("-5\n", None),
        ("17x", None),  # half a write of something else
    ],
)
def test_ready_file_reader_waits_for_a_time(tmp_path: Path, text: str | None, expected):
    path = tmp_path / "ready"
    if text is not None:
        path.write_text(text)
    assert _read_unix_time(path) == expected


@pytest.fixture
def busy_cores():
    """Busy loops on every core, twice over, for the length of the test."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        yield len(hogs)
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def test_sampler_starts_every_time_under_cpu_load(tmp_path: Path, busy_cores: int):
    assert busy_cores >= 2
    for attempt in range(STARTS):
        out = tmp_path / f"job-{attempt}"
        sampler = SamplerProcess(out, interval_s=0.02)
        assert math.isfinite(sampler.ready_unix) and sampler.ready_unix > 0
        sampler.stop()  # raises unless the sampler exits 0
        assert (out / "sampler.json").exists()
        assert not list(out.glob("*.partial"))
        assert not list(out.glob(".*.tmp"))  # no atomic-write leftovers
        assert not (out / ".sampler-ready").exists()


def test_sampler_refuses_a_non_finite_interval(tmp_path: Path):
    for bad in ("nan", "inf", "0", "-1", "fast"):
        run = subprocess.run(
            [
                *(sys.executable, "-m", "evalwatt.sampling", "--out-dir", str(tmp_path / bad)),
                *("--pid", str(os.getpid()), "--interval-s", bad),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2, run.stderr
        assert "--interval-s" in run.stderr and bad in run.stderr
        assert "Traceback" not in run.stderr
        assert not (tmp_path / bad).exists()
