"""The project installs and runs on a machine that never saw it.

A lock line once pointed at a wheel in /tmp of the machine that wrote it: the README's main
command failed on every other machine, and CI, run on that same machine, passed. These checks
fail on any such dependency on one machine's files.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCKS = sorted((REPO / "envs").glob("*-lock.txt"))

PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# Paths that belong to one machine. Spelt in pieces so that this file does not match itself.
MACHINE_PATH = re.compile(
    "|".join(
        [
            "file" + ":/",
            "/" + "tmp/",
            "/" + "root/",
            "/" + "home/[a-z]",
            "/" + "Users/",
            "/" + "work/",
            "/" + "opt/(pypi|wheels)",
        ]
    )
)
# Raw records of commands run on lent GPU machines, kept as they were typed there.
RECORDS = ("docs/validation/",)


def _requirements(lock: Path) -> list[tuple[str, list[str]]]:
    """(requirement, its hashes) per entry of a pip requirements file with continuations."""
    text = lock.read_text(encoding="utf-8").replace("\\\n", " ")
    entries = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        entries.append((words[0], [w for w in words[1:] if w.startswith("--hash")]))
    return entries


def test_there_are_locks() -> None:
    assert {p.name for p in LOCKS} >= {"demo-lock.txt", "vllm-lock.txt", "llamacpp-lock.txt"}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_lock_line_is_a_registry_pin_with_its_hash(lock: Path) -> None:
    entries = _requirements(lock)
    assert len(entries) >= 5  # a lock with no entries, or one, would pass vacuously
    for requirement, hashes in entries:
        assert PIN.fullmatch(requirement), f"{lock.name}: {requirement!r} is not name==version"
        assert hashes, f"{lock.name}: {requirement} has no --hash"
        assert all(HASH.fullmatch(h) for h in hashes), f"{lock.name}: {requirement}: {hashes}"


@pytest.mark.parametrize("env", sorted((REPO / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_conda_envs_install_from_the_hashed_locks(env: Path) -> None:
    text = env.read_text(encoding="utf-8")
    locks = re.findall(r"^\s*- -r (\S+)$", text, flags=re.M)
    assert locks, f"{env.name}: its pip section names no hashed lock"
    for name in locks:
        assert (env.parent / name).is_file(), f"{env.name}: {name} is missing"
    pip_section = text.split("- pip:", 1)[1]
    stray = [ln for ln in pip_section.splitlines() if "==" in ln and "-r " not in ln]
    assert not stray, f"{env.name}: pins outside the lock: {stray}"


def test_no_tracked_file_names_a_path_of_one_machine() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, (t.decode() for t in tracked)):
        path = REPO / name
        if name.startswith(RECORDS) or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (Parquet traces)
        found += [
            f"{name}:{no}: {line.strip()}"
            for no, line in enumerate(text.splitlines(), start=1)
            if MACHINE_PATH.search(line)
        ]
    assert not found, "machine-specific paths:\n" + "\n".join(found)
