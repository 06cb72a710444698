"""Render job specs and sbatch scripts (jinja2) from the plan.

``spec.json`` says everything the job runtime does (server command, evaluation settings,
padding, sampling); ``job.sbatch`` gives the job its resources and runs the runtime on the
spec. Every value interpolated into shell is quoted with ``shlex.quote``; ``#SBATCH`` values
come from schema-checked fields and are checked again here.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import jinja2

from evalwatt.errors import UserError
from evalwatt.config import Config
from evalwatt.layout import JobKind, Layout
from evalwatt.paths import TEMPLATE_DIR
from evalwatt.plan import Plan, baseline_id, server_settings

SPEC_VERSION = 1
_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9._,:@%&|()=+-]+$")


class RenderError(UserError):
    """A value that cannot be written into a job script safely."""


def _sbatch_value(value: Any) -> str:
    text = str(value)
    if not _SBATCH_SAFE.match(text):
        raise RenderError(f"unsafe value for an #SBATCH line: {text!r}")
    return text


def _comment(value: Any) -> str:
    """A value shown in a comment: one line, no way out of the comment."""
    return " ".join(str(value).split())


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["sbatch"] = _sbatch_value
    env.filters["comment"] = _comment
    return env


def slurm_time(minutes: int) -> str:
    """Minutes as Slurm's [D-]HH:MM:SS."""
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def model_path(model: dict[str, Any], config: Config) -> str:
    if model["path"]:
        return str(model["path"])
    root = config.raw["model_root"]
    if not root:
        raise RenderError(f"model {model['name']}: no `path` and no `model_root` in the config")
    return f"{root}/{model['hf_id']}"


def server_argv(model: dict[str, Any], server: dict[str, Any]) -> list[str]:
    """The inference server's command; ``{port}`` and ``{model_path}`` are filled in the job."""
    if server["backend"] == "vllm":
        argv = [
            "vllm",
            "serve",
            "{model_path}",
            "--served-model-name",
            model["name"],
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--tensor-parallel-size",
            str(server["gpus"]),
            "--gpu-memory-utilization",
            str(server["gpu_memory_utilization"]),
        ]
        if server["quantization"] not in ("none", "gguf"):
            argv += ["--quantization", server["quantization"]]
        if server["context_tokens"]:
            argv += ["--max-model-len", str(server["context_tokens"])]
    else:
        argv = [
            "python",
            "-m",
            "llama_cpp.server",
            "--model",
            "{model_path}",
            "--model_alias",
            model["name"],
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--n_threads",
            str(server["cpus"]),
        ]
        if server["context_tokens"]:
            argv += ["--n_ctx", str(server["context_tokens"])]
    return argv + list(server["server_args"])


def _job_model(kind: JobKind, job_id: str, config: Config, plan: Plan) -> str:
    if kind == "baseline":
        return plan.baselines[job_id].model
    cell = plan.cells[job_id]
    if kind == "judge":
        if not cell.judge:
            raise RenderError(f"cell {job_id} has no judge")
        return str(config.raw["judges"][cell.judge]["model"])
    return cell.model


def job_spec(
    kind: JobKind,
    job_id: str,
    config: Config,
    plan: Plan,
    layout: Layout,
    python: str | None = None,
) -> dict[str, Any]:
    """What the job runtime does for one job (written as spec.json)."""
    name = _job_model(kind, job_id, config, plan)
    model = config.model(name)
    server = server_settings(model, plan.models[name], config)
    interpreter = python or config.raw["job"]["python"] or sys.executable
    argv = server_argv(model, server)
    if argv[0] == "python":
        argv[0] = interpreter
    elif argv[0] == "vllm" and Path(interpreter).is_absolute():
        argv[0] = str(Path(interpreter).parent / "vllm")  # the vllm of the job's environment
    job = config.raw["job"]
    spec: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "kind": kind,
        "id": job_id,
        "run": config.run,
        "run_dir": str(layout.run_dir(kind, job_id).resolve()),
        "model": {
            "name": name,
            "served_name": name,
            "backend": model["backend"],
            "path": model_path(model, config),
            "hf_id": model["hf_id"],
        },
        "server": {"argv": argv, "settings": server, "settings_id": baseline_id(model, server)},
        "ready_timeout_s": job["ready_timeout_s"],
        "pad": {
            "accounting_window_s": config.cluster["accounting_window_s"],
            "margin_s": config.cluster["pad_margin_s"],
        },
        "sampler": {
            "interval_s": job["sample_interval_s"],
            "cpu_watts_per_core": job["cpu_watts_per_core"],
        },
    }
    if kind == "cell":
        cell = plan.cells[job_id]
        bench = config.benchmarks[cell.benchmark]
        spec["evaluation"] = {
            "benchmark": cell.benchmark,
            "task": bench["task"],
            "task_args": bench["task_args"],
            "limit": bench["limit"],
            "max_connections": cell.max_connections,
            "temperature": cell.temperature,
            **cell.sampling,
            "score_in_job": not cell.judge,
        }
    elif kind == "judge":
        cell = plan.cells[job_id]
        judge = config.raw["judges"][cell.judge]
        spec["judging"] = {
            "cell": job_id,
            "cell_result": str(layout.run_result("cell", job_id).resolve()),
            "temperature": judge["temperature"],
            "max_connections": judge["max_connections"],
            "max_tokens": judge["max_tokens"],
        }
    return spec


def render_script(
    spec: dict[str, Any], config: Config, plan: Plan, spec_path: Path, python: str | None = None
) -> str:
    """The sbatch script of one job."""
    kind, job_id = spec["kind"], spec["id"]
    mplan = plan.models[spec["model"]["name"]]
    cluster = config.cluster
    job = config.raw["job"]
    context = {
        "kind": kind,
        "job_id": job_id,
        "job_name": f"ew-{kind}-{job_id}"[:120],
        "model": spec["model"]["name"],
        "backend": spec["model"]["backend"],
        "gpus": mplan.gpus,
        "cpus": mplan.cpus,
        "time": slurm_time(cluster["time_limit_min"]),
        "partition": cluster["partition"],
        "account": cluster["account"],
        "qos": cluster["qos"],
        "constraint": cluster["constraint"],
        "modules": cluster["modules"],
        "env": sorted(job["env"].items()),
        "server_command": shlex.join(spec["server"]["argv"]),
        "python": python or job["python"] or sys.executable,
        "spec_path": str(spec_path.resolve()),
        "evaluation": spec.get("evaluation"),
    }
    return _environment().get_template("job.sbatch.j2").render(**context)
