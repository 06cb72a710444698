"""Atomic writes: nothing half-written under the final name, the mode any new file gets."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from evalwatt.base.atomic import atomic_path, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json(target, {"energy_j": 1.5})
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ValueError("killed half-way")
    assert target.read_text() == '{\n  "energy_j": 1.5\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_value_json_cannot_hold_is_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"power_w": float("nan")})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_the_file_gets_the_mode_of_any_new_file(tmp_path: Path, umask: int) -> None:
    """Results are shared with the team: not mkstemp's 0600, but 0666 less the umask."""
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "table.md", "| cell |\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "table.md").stat().st_mode) == 0o666 & ~umask
