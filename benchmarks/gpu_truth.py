#!/usr/bin/env python3
"""The real rendered jobs on a real GPU, checked against the GPU's own energy counter.

Plans a small matrix with the ``hf`` backend (``transformers serve`` with continuous
batching), renders its cell and load-only baseline jobs exactly as the workflow does
(``resolve_job`` + ``render_script``) and runs each ``job.sbatch`` with bash, as the job rule
does: runtime, sampler, server, Inspect, marks, padding, nothing imitated. Beside each job a
reference process reads the NVML energy counter at 100 Hz. The model is either random weights
of a real shape (``--shape``: written first by evalwatt.runtime.random_weights, answers of
exactly ``max_tokens``, the synthetic prompts) or real weights (``--weights``: a folder or a
GGUF file, HumanEval, scored by its unit tests). It prints:

1. the sampler's cost: CPU share of one core and share of expected samples, per interval;
2. phase-resolved generation energy (sampled trace, interpolated at the marks) against the
   reference counter at the same marks;
3. each whole-job method's error against phase-resolved, over every (answer length x padding
   window) cell, with the phase durations that explain it;
4. idle power with no CUDA context (before loading) and with the model loaded;
5. (with --busy-gpu) that only the job's GPU is counted, with CUDA_VISIBLE_DEVICES given as an
   index or as a UUID, while another GPU of the node is busy;
6. the error of window energies when the trace is reduced to power samples every 10 s and
   integrated as CEEMS does (sum of power x scrape interval);
7. the regime: the GPU's power limit (NVML), average and peak power during the generation,
   tokens per second, joules per output token and per question, and the score.

Raw traces, timelines, results and the report are kept under ``--out``.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/gpu_truth.py --out results/gpu-truth \
        --shape llama-8b --tokens 256 --samples 256 --max-connections 128 --windows 90

``--models DIR`` keeps the random weights for the next run (two regimes of one model in one
device call: docs/validation/h200-transformers-serve/busy/command.sh); ``--hf-python`` lets a
CPU dry run take the job's packages and ``transformers serve`` from two environments.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from evalwatt.base.atomic import write_text
from evalwatt.base.layout import TRACE_FILES, Layout
from evalwatt.config.checks import check_environment
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.energy.readings import job_sources
from evalwatt.energy.terms import cell_terms, method_comparison
from evalwatt.energy.trace_files import read_trace
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.backends import HF_SERVE_MODULE
from evalwatt.runtime.random_weights import SHAPES, WRITTEN

REPO = Path(__file__).resolve().parents[1]
REFERENCE_HZ = 100.0
CEEMS_SCRAPE_S = 10.0

# Expectations (issue 10). A check that cannot run is reported as such, never as passed.
PHASE_VS_COUNTER_PCT = 0.5
CORRECTED_VS_PHASE_PCT = 2.0
# Issue 18: a regime counts as busy from half the GPU's power limit on, and batched inference
# on this class of GPU is published at 0.05-0.5 J per output token.
BUSY_SHARE_OF_LIMIT = 0.5
J_PER_TOKEN_RANGE = (0.05, 0.5)


# --- the reference: the counter read directly, at 100 Hz, in its own process ------------------

REFERENCE_CODE = """
import json, sys, time, pynvml
pynvml.nvmlInit()
entries = [e for e in sys.argv[2].split(",") if e]
hs = [pynvml.nvmlDeviceGetHandleByUUID(e) if e.startswith("GPU-")
      else pynvml.nvmlDeviceGetHandleByIndex(int(e)) for e in entries]
out = open(sys.argv[1], "w")
period = 1.0 / float(sys.argv[3])
while True:
    for e, h in zip(entries, hs):
        t0 = time.time(); mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h); t1 = time.time()
        out.write(json.dumps([e, (t0 + t1) / 2, mj]) + "\\n")
    out.flush()
    time.sleep(period)
"""


def start_reference(path: Path, devices: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", REFERENCE_CODE, str(path), devices, str(REFERENCE_HZ)]
    return subprocess.Popen(argv)


def reference_at(path: Path, t: float) -> float:
    """Counter energy (J, summed over devices) at unix time ``t``, linearly interpolated."""
    rows: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines():
        device, ts, mj = json.loads(line)
        rows.setdefault(device, []).append((ts, mj))
    total = 0.0
    for samples in rows.values():
        for (t0, e0), (t1, e1) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                frac = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
                total += (e0 + frac * (e1 - e0)) / 1000.0
                break
        else:
            raise ValueError(f"reference has no sample around t={t}")
    return total


# --- another GPU of the node kept busy (check 5): it must not be counted ------------------------

BUSY_CODE = """
import sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    for _ in range(20):
        a = (a @ a).clamp_(-1, 1)
    torch.cuda.synchronize()
"""


def start_busy(entry: str, seconds: float) -> subprocess.Popen[bytes]:
    """A matmul loop on GPU ``entry`` (an index or a UUID) for ``seconds``."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": entry}
    return subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(seconds)], env=env)


def uuid_of(entry: str) -> str:
    import pynvml

    pynvml.nvmlInit()
    if entry.startswith("GPU-"):
        return entry
    return str(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(int(entry))))


# --- the matrix --------------------------------------------------------------------------------


# Real models whose shapes the random weights take (hf_id, release), and the real-weights model:
# SmolLM2-135M-Instruct, the demo's GGUF (config/config.yaml).
SHAPE_MODELS = {
    "llama-1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
    "llama-8b": "meta-llama/Llama-3.1-8B",
    "tiny": "evalwatt/tiny-random-llama",
}
SMOLLM2 = {
    "hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "family": "llama",
    "total_params_b": 0.135,
    "attention_heads": 9,
    "kv_heads": 3,
    "context_tokens": 4096,
}


def random_model(models: Path, shape: str, python: str) -> dict[str, Any]:
    """Random weights of ``shape`` in ``models``, written (on the GPU when there is one) with
    ``python`` unless an earlier run wrote them there (an 8B model: 16 GB and 18 s, a 14B one
    twice that, on an H200 whose call time is counted); return the model's config entry."""
    folder = models / f"model-{shape}"
    if (
        not (folder / WRITTEN).is_file()
        or json.loads((folder / WRITTEN).read_text())["shape"] != shape
    ):
        argv = [python, "-m", "evalwatt.runtime.random_weights", "--shape", shape]
        argv += ["--out", str(folder), "--device", "cuda" if gpus_visible() else "cpu"]
        subprocess.run(argv, check=True, env={**os.environ, "PYTHONPATH": python_path()})
    written = json.loads((folder / WRITTEN).read_text())
    print(json.dumps({"random_weights": written}), flush=True)
    values = SHAPES[shape]
    return {
        "name": f"{shape}-random",
        "hf_id": SHAPE_MODELS[shape],
        "path": written["folder"],
        "family": "llama",
        "total_params_b": written["parameters"] / 1e9,
        "weight_bits": 16,
        "attention_heads": values["num_attention_heads"],
        "kv_heads": values["num_key_value_heads"],
        "context_tokens": values["max_position_embeddings"],
        "notes": f"random weights of {SHAPE_MODELS[shape]}'s shape, no end-of-sequence token",
    }


# transformers serve 5.17-5.24 cannot load a GGUF file: its model manager reads the class
# from ``config.architectures``, which a config read out of a GGUF leaves empty (TypeError;
# 5.25 falls back to the model type). So a GGUF is loaded with transformers' own GGUF loader,
# which dequantizes it as the server would, and the folder it saves is served: the conversion
# of the vLLM demo's model (workflow/scripts/bootstrap.py, CONVERT).
def convert_gguf() -> str:
    spec = importlib.util.spec_from_file_location(
        "bootstrap", REPO / "workflow/scripts/bootstrap.py"
    )
    assert spec and spec.loader
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    return str(bootstrap.CONVERT)


def real_model(out: Path, weights: Path, python: str) -> dict[str, Any]:
    """The config entry of real weights: SmolLM2-135M-Instruct, a folder or its GGUF (turned
    into a folder first with ``python``, convert_gguf)."""
    gguf = weights.suffix == ".gguf"
    folder = weights.resolve()
    if gguf:
        folder = out / "model-smollm2"
        subprocess.run([python, "-c", convert_gguf(), str(weights), str(folder)], check=True)
    return {
        "name": "SmolLM2-135M-Instruct",
        "path": str(folder),
        **SMOLLM2,
        "weight_bits": 16,
        "notes": "real weights" + (f", dequantized to bf16 from {weights.name}" if gguf else ""),
    }


def named(prefix: str, tokens: list[int]) -> list[tuple[str, int]]:
    """(benchmark name, answer length) of each answer length: ``{prefix}_t{n}``, and
    ``{prefix}_t{n}_{k}`` for its k-th repetition, a benchmark of the same questions under
    another name (a model job then runs the same cell twice: on a fresh server, then on one
    that has served it)."""
    names = []
    for i, n in enumerate(tokens):
        k = tokens[: i + 1].count(n)
        names.append((f"{prefix}_t{n}" + (f"_{k}" if k > 1 else ""), n))
    return names


def synthetic_benchmarks(tokens: list[int], samples: int, words: int) -> dict[str, Any]:
    return {
        name: {
            "task": "evalwatt/synthetic_prompts",
            "task_args": {"samples": samples, "words": words},
            "samples": samples,
            "scorer": "exact-match",
            "max_tokens": n,
            "expected_s_per_sample": 0.1,
        }
        for name, n in named("synth", tokens)
    }


def humaneval_benchmarks(tokens: list[int], limit: int | None) -> dict[str, Any]:
    return {
        name: {
            "task": "evalwatt/humaneval_offline",
            "task_args": {"timeout_s": 10, "memory_mb": 1024},
            "samples": 164,
            "limit": limit,
            "scorer": "unit-tests",
            "max_tokens": n,
            "expected_s_per_sample": 0.5,
        }
        for name, n in named("humaneval", tokens)
    }


def python_path() -> str:
    """This checkout's package first, then what the caller's PYTHONPATH holds."""
    return os.pathsep.join(filter(None, [str(REPO / "workflow"), os.environ.get("PYTHONPATH")]))


def gpus_visible() -> int:
    """GPUs the jobs get: those of CUDA_VISIBLE_DEVICES where NVML answers, else 0."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver: a CPU dry run
        return 0
    return len([e for e in os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",") if e])


# A CPU dry run's KV cache and batch: on a CPU the library sizes them from the machine's
# memory (90 %, 22 GB on a 24 GB machine), its attention mask with them.
CPU_CACHE_ARGS = ["--cb-num-blocks", "64", "--cb-block-size", "32", "--cb-max-batch-tokens", "256"]


def config_for(
    args: argparse.Namespace, window_s: float, model: dict[str, Any], benchmarks: dict[str, Any]
) -> Any:
    # the hf backend needs a GPU in the plan; a CPU dry run plans one and its server computes
    # on the CPU (``--device auto``)
    gpus = max(gpus_visible(), 1)
    out: Path = args.out
    server_args = [*args.server_arg, *([] if gpus_visible() else CPU_CACHE_ARGS)]
    raw: dict[str, Any] = {
        "run": f"w{int(window_s)}",
        "results_dir": str(out / "results"),
        "cluster": {
            "name": "gpu-truth",
            "gpu_model": "probed",
            "gpus_per_node": gpus,
            "gpu_memory_gb": 80,
            "cpus_per_gpu": 4,
            "accounting_window_s": window_s,
            "pad_margin_s": 2,
            "time_limit_min": 30,
        },
        "job": {"ready_timeout_s": 600, "sample_interval_s": 0.1},
        "models": [
            {**model, "backend": "hf", "benchmarks": sorted(benchmarks), "server_args": server_args}
        ],
        "benchmarks": benchmarks,
        "sweeps": {"temperature": [0.0], "max_connections": [args.max_connections]},
    }
    if args.hf_python:  # a CPU dry run: the job's packages and transformers serve's apart
        raw["job"]["python"] = two_pythons(out / "bin", hf_server(args.hf_python))
    return check_environment(from_dict(raw, out, origin=f"gpu_truth window {window_s}"))


def run_job(config: Any, plan: Any, layout: Layout, kind: str, job_id: str, devices: str) -> Path:
    job = resolve_job(config, plan, layout, kind, job_id)  # type: ignore[arg-type]
    write_contract(job.spec_path, job.spec)
    write_text(job.script, render_script(job))
    reference = job.files.root.parent / f"{job_id}.reference.jsonl"
    job.files.root.parent.mkdir(parents=True, exist_ok=True)
    ref = start_reference(reference, devices)
    try:
        log = layout.log("run_job", f"{kind}-{job_id}")
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            code = subprocess.run(["bash", str(job.script)], stdout=fh, stderr=fh).returncode
    finally:
        ref.terminate()
        ref.wait()
    if code != 0:
        raise SystemExit(f"{kind} {job_id} failed ({code}); see {log}")
    return job.files.root


# --- figures ---------------------------------------------------------------------------------


def trace_file(run_dir: Path) -> Path:
    """The job's GPU trace; on a machine without NVML (a dry run) its CPU estimate."""
    gpu = run_dir / TRACE_FILES["nvml"]
    return gpu if gpu.exists() else run_dir / TRACE_FILES["cpu-model"]


def pct(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return 100.0 * (value - reference) / reference


def ceems_like_j(trace_path: Path, start: float, end: float) -> float:
    """Power sampled every CEEMS_SCRAPE_S (the last power sample at or before each scrape,
    counter read or not), times the scrape interval, summed over scrapes inside [start, end):
    CEEMS's kWh, without PUE."""
    trace = read_trace(trace_path)
    total = 0.0
    for series in trace.series.values():
        times, powers = series.power_samples()
        if not times:
            continue
        scrape = math.ceil(times[0] / CEEMS_SCRAPE_S) * CEEMS_SCRAPE_S
        i = 0
        while scrape < times[-1]:
            while i + 1 < len(times) and times[i + 1] <= scrape:
                i += 1
            if start <= scrape < end:
                total += powers[i] / 1000.0 * CEEMS_SCRAPE_S
            scrape += CEEMS_SCRAPE_S
    return total


def peak_power_w(trace_path: Path, start: float, end: float) -> float | None:
    """The highest power sample inside [start, end], summed over devices sample by sample
    (one device here); None when no sample falls inside."""
    trace = read_trace(trace_path)
    peaks = []
    for series in trace.series.values():
        times, powers = series.power_samples()
        inside = [p for t, p in zip(times, powers, strict=True) if start <= t <= end]
        if inside:
            peaks.append(max(inside) / 1000.0)
    return sum(peaks) if peaks else None


def power_limit_w() -> dict[str, Any]:
    """The enforced power limit of the job's GPU(s), from NVML (null with the reason)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        entries = [e for e in os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",") if e]
        handles = [
            pynvml.nvmlDeviceGetHandleByUUID(e)
            if e.startswith("GPU-")
            else pynvml.nvmlDeviceGetHandleByIndex(int(e))
            for e in entries
        ]
        limits = [pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0 for h in handles]
        names = [str(pynvml.nvmlDeviceGetName(h)) for h in handles]
    except Exception as exc:  # no driver: a CPU dry run
        return {"power_limit_w": None, "reason": f"NVML: {exc}"}
    return {"power_limit_w": sum(limits), "gpus": names}


def per(value: float | None, count: float | None) -> float | None:
    return value / count if value is not None and count else None


def regime(result: JobResult, trace: Path, phase_j: float | None, window: Any) -> dict[str, Any]:
    """How hard the generation drove the GPU, and what it cost per token and per question."""
    start, end = window
    seconds = end - start
    gen, scored = result.generation, result.scoring
    tokens = gen.output_tokens if gen else None
    samples = gen.samples_completed if gen else None
    return {
        "generation_s": seconds,
        "average_power_w": per(phase_j, seconds),
        "peak_power_w": peak_power_w(trace, start, end),
        "tokens_per_s": per(tokens, seconds),
        "j_per_token": per(phase_j, tokens),
        "samples": samples,
        "j_per_sample": per(phase_j, samples),
        "score": scored.score if scored else None,
        "score_metric": scored.score_metric if scored else None,
        "score_stderr": scored.score_stderr if scored else None,
    }


def cell_figures(cell_dir: Path, base_dir: Path) -> dict[str, Any]:
    result = read_contract(JobResult, cell_dir / "result.json")
    if result.sampler is None:  # the job's sampler never reported: nothing here to compare
        raise SystemExit(f"{cell_dir}: the job's result has no sampler status (sampler.json)")
    sampler = result.sampler
    marks = {str(k): v for k, v in result.marks.items()}
    sources, _ = job_sources(cell_dir)
    base_sources, _ = job_sources(base_dir)
    family = "gpu" if "gpu" in sources else "cpu_est"  # cpu_est: a dry run without NVML
    gpu, base_gpu = sources.get(family), base_sources.get(family)  # type: ignore[call-overload]
    gen = result.generation
    energy = cell_terms(
        gpu,
        base_gpu,
        None,
        gen.samples_completed if gen else None,
        gen.output_tokens if gen else None,
    )
    headline = energy.terms["inference"]
    phase = headline.energy_j
    # the headline window as the terms measured it (generation, when the marks exist)
    start, end = headline.window or (marks["inference_start"], marks["inference_end"])
    reference = cell_dir.parent / f"{result.job_id}.reference.jsonl"
    try:
        direct: float | None = reference_at(reference, end) - reference_at(reference, start)
    except (OSError, ValueError) as exc:  # no NVML (a CPU dry run): the check did not run
        print(f"reference counter unavailable: {exc}", file=sys.stderr)
        direct = None
    trace = trace_file(cell_dir)
    figures = regime(result, trace, phase, (start, end))
    ceems = ceems_like_j(trace, start, end)
    job_ceems = ceems_like_j(trace, marks["job_start"], marks["job_end"])
    return {
        "cell": result.job_id,
        "output_tokens": gen.output_tokens if gen else None,
        "inference_s": end - start,
        "headline_formula": headline.formula,
        "evaluation_s": marks["inference_end"] - marks["inference_start"],
        "devices_summed": sorted(headline.per_device_j),
        "sampler_devices": [d.uuid for d in _nvml_devices(sampler)],
        "counter_reads_on_mark": sampler.counter_reads_on_mark,
        "phase_resolved_j": phase,
        "reference_counter_j": direct,
        "phase_vs_counter_pct": pct(phase, direct),
        "methods": {k: asdict(m) for k, m in method_comparison(energy).items()},
        "ceems_10s_inference_j": ceems,
        "ceems_10s_inference_err_pct": pct(ceems, phase),
        "ceems_10s_job_err_pct": pct(job_ceems, energy.terms["job"].energy_j),
        "pad_s": marks.get("pad_end", 0) - marks.get("pad_start", 0),
        **figures,
    }


def _nvml_devices(sampler: SamplerStatus) -> list[Any]:
    info = sampler.traces.get("nvml")
    return list(info.devices or ()) if info is not None else []


def idle_powers(base_dir: Path, cell_dir: Path) -> dict[str, float | None]:
    """GPU power with no CUDA context (the baseline's pad, after its server exited) and with
    the model loaded but no request (the cell between ready and its first request)."""

    def watts(run_dir: Path, a: str, b: str) -> float | None:
        result = read_contract(JobResult, run_dir / "result.json")
        marks = {str(k): v for k, v in result.marks.items()}
        if a not in marks or b not in marks or marks[b] - marks[a] < 1:
            return None
        trace = read_trace(trace_file(run_dir))
        return trace.window(marks[a], marks[b]).energy_j / (marks[b] - marks[a])

    return {
        "cold_idle_w": watts(base_dir, "pad_settled", "pad_end"),
        "pad_first_s_w": watts(base_dir, "pad_start", "pad_settled"),
        "loaded_idle_w": watts(cell_dir, "ready", "inference_start"),
        "baseline_loaded_w": watts(base_dir, "ready", "exit"),
        "baseline_load_w": watts(base_dir, "load_start", "ready"),
        "cell_load_w": watts(cell_dir, "load_start", "ready"),
    }


def sampler_cost(out: Path) -> str:
    bench = Path(__file__).with_name("sampler_cost.py")
    done = subprocess.run(
        [sys.executable, str(bench), "--seconds", "20", "--json", str(out / "sampler_cost.json")],
        capture_output=True,
        text=True,
    )
    return done.stdout + done.stderr


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", default="", help="the regime's name in the report")
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--shape", choices=sorted(SHAPES), default="llama-1b", help="random weights (tiny: CPU)"
    )
    model.add_argument("--weights", type=Path, help="real weights (folder or .gguf): HumanEval")
    parser.add_argument(
        "--weights-python",
        default=sys.executable,
        help="the Python (with torch and transformers) that writes random weights or reads a GGUF",
    )
    parser.add_argument(
        "--models", type=Path, help="where random weights are written and reused (default: --out)"
    )
    parser.add_argument(
        "--hf-python",
        help="a Python with transformers' serving packages that runs the server while this one "
        "runs the jobs (a CPU dry run; default: this Python runs both)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="one more argument of `transformers serve` (repeatable: --server-arg=--compile)",
    )
    parser.add_argument("--tokens", default="32,128,512", help="answer lengths (tokens)")
    parser.add_argument("--windows", default="0,60", help="accounting windows (s): padding")
    parser.add_argument("--samples", type=int, default=64, help="synthetic prompts")
    parser.add_argument("--prompt-words", type=int, default=12, help="synthetic prompt length")
    parser.add_argument("--limit", type=int, help="HumanEval questions (default: all 164)")
    parser.add_argument("--max-connections", type=int, default=32)
    parser.add_argument(
        "--expect-busy",
        action="store_true",
        help=f"check average generation power >= {BUSY_SHARE_OF_LIMIT:.0%} of the power limit "
        f"and J/token in {J_PER_TOKEN_RANGE}",
    )
    parser.add_argument("--skip-sampler-cost", action="store_true")
    parser.add_argument(
        "--busy-gpu",
        help="keep this other GPU (index or UUID) busy during the jobs: it must not be counted",
    )
    return parser.parse_args(argv)


def two_pythons(folder: Path, server: list[str]) -> str:
    """The jobs' Python for a run whose server needs another environment (a CPU dry run: the
    job's packages in .venv, transformers' in .venv-vllm): a script that runs the jobs with
    this Python and the hf server's command (``python -m evalwatt.runtime.hf_serve ...``,
    runtime/backends.py) with ``server`` and the command's arguments after the module."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python"
    run_server = " ".join(shlex.quote(word) for word in server)
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = {HF_SERVE_MODULE} ]; then\n'
        f'  shift 2; exec {run_server} "$@"\n'
        "fi\n"
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def hf_server(python: str) -> list[str]:
    """``--hf-python``'s command for the hf server: evalwatt's module, with workflow/ on its
    path (that environment has transformers, not evalwatt)."""
    return ["env", f"PYTHONPATH={REPO / 'workflow'}", python, "-m", HF_SERVE_MODULE]


def model_and_benchmarks(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    tokens = [int(t) for t in args.tokens.split(",")]
    if args.weights is not None:
        model = real_model(args.out, args.weights, args.weights_python)
        return model, humaneval_benchmarks(tokens, args.limit)
    model = random_model(args.models or args.out, args.shape, args.weights_python)
    return model, synthetic_benchmarks(tokens, args.samples, args.prompt_words)


def run_windows(args: argparse.Namespace, report: dict[str, Any], devices: str) -> None:
    """A load-only baseline and every cell, once per accounting window."""
    model, benchmarks = model_and_benchmarks(args)
    for window in (float(w) for w in args.windows.split(",")):
        config = config_for(args, window, model, benchmarks)
        plan = plan_run(config)
        layout = Layout.of(config.results_dir, config.run)
        base_id = next(iter(plan.baselines))
        base_dir = run_job(config, plan, layout, "baseline", base_id, devices)
        for cell_id in plan.cells:
            cell_dir = run_job(config, plan, layout, "cell", cell_id, devices)
            report["idle"][f"{cell_id} w{window:g}"] = idle_powers(base_dir, cell_dir)
            figures = cell_figures(cell_dir, base_dir)
            figures["window_s"] = window
            report["cells"].append(figures)
            print(json.dumps(figures, indent=1, default=str), flush=True)


def check_cell(c: dict[str, Any], report: dict[str, Any], busy: bool) -> list[str]:
    """The expectations one cell misses (a figure that could not be taken misses)."""
    name = f"{c['cell']} w{c['window_s']:g}"
    failures = []
    job_uuids = report["job_gpus"]
    if job_uuids and (c["sampler_devices"] != job_uuids or report["busy_gpu"] in job_uuids):
        failures.append(f"{name}: sampled {c['sampler_devices']}, the job's GPUs {job_uuids}")
    phase = c["phase_vs_counter_pct"]
    if phase is None or abs(phase) > PHASE_VS_COUNTER_PCT:
        failures.append(f"{name}: phase-resolved vs counter {phase} %")
    corrected = c["methods"]["corrected_whole_job"]["gap_pct"]
    if corrected is None or abs(corrected) > CORRECTED_VS_PHASE_PCT:
        failures.append(f"{name}: corrected whole-job vs phase-resolved {corrected} %")
    if busy:
        limit, power = report["power"]["power_limit_w"], c["average_power_w"]
        if limit is None or power is None or power < BUSY_SHARE_OF_LIMIT * limit:
            failures.append(f"{name}: average generation power {power} W, limit {limit} W")
        low, high = J_PER_TOKEN_RANGE
        if c["j_per_token"] is None or not low <= c["j_per_token"] <= high:
            failures.append(f"{name}: {c['j_per_token']} J per token, outside {low}-{high}")
    return failures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    report: dict[str, Any] = {"label": args.label, "devices": devices, "cells": [], "idle": {}}
    report["power"] = power_limit_w()
    print(json.dumps({"power": report["power"]}), flush=True)
    if not args.skip_sampler_cost:
        report["sampler_cost"] = sampler_cost(out)
        print(report["sampler_cost"], flush=True)
    busy = start_busy(args.busy_gpu, 3600.0) if args.busy_gpu else None
    report["job_gpus"] = sorted(uuid_of(e) for e in devices.split(",") if e) if busy else []
    report["busy_gpu"] = uuid_of(args.busy_gpu) if args.busy_gpu else None
    try:
        run_windows(args, report, devices)
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait()
    failures = [f for c in report["cells"] for f in check_cell(c, report, args.expect_busy)]
    report["failures"] = failures
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({"idle": report["idle"], "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
