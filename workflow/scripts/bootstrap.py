#!/usr/bin/env python3
"""Set up evalwatt from nothing but python3, then run the demo or the tests.

    python3 workflow/scripts/bootstrap.py demo [snakemake args...]   # the CPU demo
    python3 workflow/scripts/bootstrap.py test [pytest args...]      # the test suite
    python3 workflow/scripts/bootstrap.py setup                      # only the set-up

The set-up is idempotent and fast once done: a virtual environment in ``.venv`` with the
exact versions of ``envs/demo-lock.txt`` (registry pins checked against their sha256,
installed without dependency resolution, so the environment is the same everywhere),
llama-cpp-python built once from its hash-checked sdist with CPU flags that work on any
x86-64 (the default native build crashed at the first generation on our machines) and cached
in ``$XDG_CACHE_HOME/evalwatt/wheels`` (default ``~/.cache``; CI uses a fresh one), and
evalwatt itself installed in editable mode.
A stamp records what was installed; a changed lock file or pyproject re-runs the set-up.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
LOCK = REPO / "envs" / "demo-lock.txt"
STAMP = VENV / ".evalwatt-setup"

LLAMA_CPP = "llama-cpp-python==0.3.36"
# The registry's sha256 of that sdist: the build starts from exactly the published source.
LLAMA_CPP_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AMX=OFF -DGGML_AVX512=OFF"
# A build cache only: rebuilt when absent, keyed by the sdist's hash and the build flags.
WHEEL_CACHE = Path(
    os.environ.get("EVALWATT_WHEEL_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evalwatt" / "wheels"
)


def log(message: str) -> None:
    print(f"[evalwatt setup] {message}", flush=True)


def run(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, REPO / "pyproject.toml", Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(f"{sys.version_info[:2]}{LLAMA_CPP}{LLAMA_CPP_CMAKE_ARGS}".encode())
    digest.update(LLAMA_CPP_SHA256.encode())
    return digest.hexdigest()


def llama_cpp_wheel(python: Path) -> Path:
    """Build llama-cpp-python once per flag set; pip's own cache ignores CMAKE_ARGS."""
    key = hashlib.sha256(
        f"{LLAMA_CPP} {LLAMA_CPP_SHA256} {LLAMA_CPP_CMAKE_ARGS} {sys.version_info[:2]}".encode()
    )
    folder = WHEEL_CACHE / key.hexdigest()[:16]
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[-1]
    log(f"building {LLAMA_CPP} for the CPU (a few minutes, once; cached in {folder})")
    folder.mkdir(parents=True, exist_ok=True)
    pinned = folder / "requirement.txt"
    pinned.write_text(f"{LLAMA_CPP} --hash=sha256:{LLAMA_CPP_SHA256}\n")
    env = {**os.environ, "CMAKE_ARGS": LLAMA_CPP_CMAKE_ARGS, "FORCE_CMAKE": "1"}
    pip_wheel = [str(python), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir"]
    run([*pip_wheel, "--require-hashes", "-w", str(folder), "-r", str(pinned)], env=env)
    return sorted(folder.glob("llama_cpp_python-*.whl"))[-1]


def setup() -> Path:
    """Create or refresh the environment; return its python."""
    python = venv_python()
    wanted = fingerprint()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        return python
    started = time.monotonic()
    if not python.exists():
        log(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    log(f"installing the pinned environment ({LOCK.relative_to(REPO)})")
    run([*pip, "install", "-qq", "--no-deps", "--require-hashes", "-r", str(LOCK)])
    run([*pip, "install", "-qq", "--no-deps", str(llama_cpp_wheel(python))])
    run([*pip, "install", "-qq", "--no-deps", "--no-build-isolation", "--editable", str(REPO)])
    STAMP.write_text(wanted + "\n")
    log(f"ready in {time.monotonic() - started:.0f} s")
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    python = setup()
    bin_dir = str(VENV / "bin")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV),
    }
    if command == "setup":
        return 0
    if command == "demo":
        started = time.monotonic()
        argv_run = [str(VENV / "bin" / "snakemake"), "--profile", "profiles/local", *rest]
        code = subprocess.run(argv_run, cwd=REPO, env=env, check=False).returncode
        log(
            f"demo finished with code {code} in {time.monotonic() - started:.0f} s; "
            "results in results/demo/final/"
        )
        return code
    argv_test = [str(python), "-m", "pytest", *(rest or ["tests"])]
    return subprocess.run(argv_test, cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
