"""The package's architecture, as CI enforces it (docs/architecture.md).

* ``lint-imports`` (import-linter, configured in pyproject.toml): the stages import only
  downward, every top-level module belongs to a stage, and no two sibling modules import each
  other, at any depth. Imports inside functions count: grimp reads every import statement.
* the contract is live: with two stages swapped it fails;
* an evalwatt import inside a function is only for a module that needs an optional heavy
  dependency (matplotlib, JAX, torch), listed below with the reason; never to dodge a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "workflow" / "evalwatt"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

# An evalwatt module imported inside a function, and why it may not be imported at the top.
OPTIONAL_HEAVY = {
    "evalwatt.report.figures": "matplotlib (the figures extra)",
    "evalwatt.report.figures.timeline": "matplotlib (the figures extra)",
    "evalwatt.report.figures.tables": "matplotlib (the figures extra)",
    "evalwatt.report.figures.report": "matplotlib, imported by the rules that draw, not while "
    "Snakemake builds its DAG (smk/report.py)",
    "evalwatt.report.glmm": "NumPy, JAX and NumPyro (the glmm extra, .venv-glmm): its `main`",
    "evalwatt.runtime.tasks": "inspect-ai (the job's environment; scorers register on import)",
}


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=REPO / "workflow",
        capture_output=True,
        text=True,
        check=False,
    )


def test_import_contracts_are_kept() -> None:
    done = lint_imports(REPO / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_import_contract_fails_when_two_stages_swap(tmp_path: Path) -> None:
    """The contract is not vacuous: base above contracts must break it."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    layers = tomllib.loads(text)["tool"]["importlinter"]["contracts"][0]["layers"]
    assert layers[-2:] == ["contracts", "base"]
    swapped = text.replace('  "contracts",\n  "base",\n', '  "base",\n  "contracts",\n')
    assert swapped != text
    config = tmp_path / "pyproject.toml"
    config.write_text(swapped, encoding="utf-8")
    done = lint_imports(config)
    assert done.returncode != 0
    assert "evalwatt.contracts" in done.stdout and "BROKEN" in done.stdout


def _imports_inside_functions(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom) and inside and child.level == 0:
                module = child.module or ""
                if module == "evalwatt" or module.startswith("evalwatt."):
                    found.append((child.lineno, module))
            elif isinstance(child, ast.Import) and inside:
                found.extend(
                    (child.lineno, a.name) for a in child.names if a.name.startswith("evalwatt")
                )
            visit(child, inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_evalwatt_imports_inside_functions_are_for_optional_dependencies() -> None:
    bad = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, module in _imports_inside_functions(path)
        if module not in OPTIONAL_HEAVY
    ]
    assert not bad, "evalwatt imports inside functions (move them to the top):\n" + "\n".join(bad)


def test_no_relative_imports() -> None:
    """Absolute imports only: the contract, grep and readers all see the same names."""
    bad = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not bad, bad
