"""bootstrap.py checks the disk before installing anything: a disk that fills half-way through
.venv-vllm's 3.4 GB fails after minutes with pip's bare "No space left on device" (CI of
2026-12-05); the check says it at once, naming what would be set up, where, and the figures."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bootstrap_under_test", REPO / "workflow/scripts/bootstrap.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_a_short_disk_is_named_with_its_figures() -> None:
    boot = load_bootstrap()
    short = boot.disk_shortfall([".venv", ".venv-vllm"], int(2.5e9), Path("/data/clone"))
    assert short is not None
    assert ".venv (~1.5 GB)" in short and ".venv-vllm (~3.6 GB)" in short
    assert "about 6.1 GB" in short and "/data/clone" in short and "2.5 GB are free" in short


def test_enough_disk_or_nothing_to_set_up_passes() -> None:
    boot = load_bootstrap()
    assert boot.disk_shortfall([".venv", ".venv-vllm"], int(6.2e9), Path("/x")) is None
    assert boot.disk_shortfall([], 0, Path("/x")) is None
    # a temporary folder on another disk only needs room for pip's unpacking
    assert boot.disk_shortfall([".venv-vllm"], int(1.1e9), Path("/tmp"), temp=True) is None
    assert boot.disk_shortfall([".venv-vllm"], int(0.5e9), Path("/tmp"), temp=True) is not None


def test_only_environments_not_set_up_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot = load_bootstrap()
    monkeypatch.setattr(boot, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(boot, "STAMP", tmp_path / ".venv" / ".evalwatt-setup")
    monkeypatch.setattr(boot, "vllm_supported", lambda: "not here")
    assert boot.pending("setup", with_vllm=False) == [".venv"]
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    (tmp_path / ".venv" / ".evalwatt-setup").write_text(boot.fingerprint() + "\n")
    assert boot.pending("setup", with_vllm=False) == []
    (tmp_path / ".venv" / ".evalwatt-setup").write_text("an older lock\n")
    assert boot.pending("setup", with_vllm=False) == [".venv"]


def test_setup_on_a_full_disk_stops_before_creating_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = load_bootstrap()
    monkeypatch.setattr(boot, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(boot, "STAMP", tmp_path / ".venv" / ".evalwatt-setup")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 10**8, 10**8))
    assert boot.main(["setup"]) == 2
    assert not (tmp_path / ".venv").exists()
    out = capsys.readouterr().out
    assert "not enough disk space: setting up .venv (~1.5 GB)" in out and "0.1 GB are free" in out
