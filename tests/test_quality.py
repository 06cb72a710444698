"""Code quality checks that CI enforces: lint, format, types, Snakemake lint, generated docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "argv",
    [
        ("ruff", "check", "workflow", "tests", "benchmarks"),
        ("ruff", "format", "--check", "workflow", "tests", "benchmarks"),
        ("mypy",),
        ("mypy", "benchmarks"),  # the scripts that make the published figures
    ],
    ids=["ruff-check", "ruff-format", "mypy", "mypy-benchmarks"],
)
def test_tool_is_clean(argv: tuple[str, ...]) -> None:
    done = run(str(BIN / argv[0]), *argv[1:])
    assert done.returncode == 0, done.stdout + done.stderr


def test_snakemake_lint_is_clean() -> None:
    done = run(str(BIN / "snakemake"), "--lint")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "good condition" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("doc", "what"), [("docs/config.md", "config"), ("docs/outputs.md", "table")]
)
def test_generated_reference_is_up_to_date(doc: str, what: str) -> None:
    """docs/ embeds `evalwatt schema ...`: a schema change must update the docs."""
    generated = run(str(BIN / "evalwatt"), "schema", what)
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout in (REPO / doc).read_text(encoding="utf-8")
