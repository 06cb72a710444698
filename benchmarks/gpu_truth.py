#!/usr/bin/env python3
"""The real rendered jobs on a real GPU, checked against the GPU's own energy counter.

Plans a small matrix with the ``hf`` backend (evalwatt's transformers server, random weights
of TinyLlama-1.1B's shape), renders its cell and load-only baseline jobs exactly as the
workflow does (``resolve_job`` + ``render_script``) and runs each ``job.sbatch`` with bash, as
the job rule does: runtime, sampler, server, Inspect, marks, padding, nothing imitated. Beside
each job a reference process reads the NVML energy counter at 100 Hz. It prints:

1. the sampler's cost: CPU share of one core and share of expected samples, per interval;
2. phase-resolved generation energy (sampled trace, interpolated at the marks) against the
   reference counter at the same marks;
3. each whole-job method's error against phase-resolved, over every (answer length x padding
   window) cell, with the phase durations that explain it;
4. idle power with no CUDA context (before loading) and with the model loaded;
5. (with --busy-gpu) that only the job's GPU is counted, with CUDA_VISIBLE_DEVICES given as an
   index or as a UUID, while another GPU of the node is busy;
6. the error of window energies when the trace is reduced to power samples every 10 s and
   integrated as CEEMS does (sum of power x scrape interval).

Raw traces, timelines, results and the report are kept under ``--out``.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/gpu_truth.py --out results/gpu-truth
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from evalwatt.base.atomic import write_text
from evalwatt.base.layout import TRACE_FILES, Layout
from evalwatt.config.checks import check_environment
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import JobResult
from evalwatt.energy.readings import job_sources
from evalwatt.energy.terms import cell_terms, method_comparison
from evalwatt.energy.trace import read_trace
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.hf_server import PRESETS

REFERENCE_HZ = 100.0
CEEMS_SCRAPE_S = 10.0

# Expectations (issue 10). A check that cannot run is reported as such, never as passed.
PHASE_VS_COUNTER_PCT = 0.5
CORRECTED_VS_PHASE_PCT = 2.0


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


def model_config(out: Path, shape: str) -> Path:
    path = out / f"{shape}.config.json"
    values = dict(PRESETS[shape])
    path.write_text(json.dumps(values, indent=2) + "\n")
    return path


def config_for(
    out: Path, window_s: float, tokens: list[int], samples: int, conns: int, shape: str
) -> Any:
    gpus = len([e for e in os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",") if e])
    benchmarks = {
        f"synth_t{n}": {
            "task": "evalwatt/synthetic_prompts",
            "task_args": {"samples": samples},
            "samples": samples,
            "scorer": "exact-match",
            "max_tokens": n,
            "expected_s_per_sample": 0.1,
        }
        for n in tokens
    }
    raw = {
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
            {
                "name": "llama-1b-random",
                "hf_id": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
                "path": str(model_config(out, shape)),
                "backend": "hf",
                "family": "llama",
                "total_params_b": 1.1,
                "weight_bits": 16,
                "attention_heads": 32,
                "kv_heads": 4,
                "context_tokens": 2048,
                "server_args": [
                    "--ignore-eos",
                    "--dtype",
                    "bfloat16",
                    "--max-batch-size",
                    "64",
                    "--max-new-tokens",
                    str(max(tokens)),
                ],
                "benchmarks": sorted(benchmarks),
                "notes": "random weights of TinyLlama-1.1B's shape (energy only)",
            }
        ],
        "benchmarks": benchmarks,
        "sweeps": {"temperature": [0.0], "max_connections": [conns]},
    }
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
    """Power sampled every CEEMS_SCRAPE_S (the sample nearest each scrape), times the scrape
    interval, summed over scrapes inside [start, end): CEEMS's kWh, without PUE."""
    trace = read_trace(trace_path)
    total = 0.0
    for series in trace.series.values():
        scrape = math.ceil(series.t_unix[0] / CEEMS_SCRAPE_S) * CEEMS_SCRAPE_S
        i = 0
        while scrape < series.t_unix[-1]:
            while i + 1 < len(series.t_unix) and series.t_unix[i + 1] <= scrape:
                i += 1
            power = series.power_mw[i] if series.power_mw else None
            if start <= scrape < end and power is not None:
                total += power / 1000.0 * CEEMS_SCRAPE_S
            scrape += CEEMS_SCRAPE_S
    return total


def cell_figures(cell_dir: Path, base_dir: Path) -> dict[str, Any]:
    result = read_contract(JobResult, cell_dir / "result.json")
    marks = {str(k): v for k, v in result.marks.items()}
    sources, _ = job_sources(cell_dir)
    base_sources, _ = job_sources(base_dir)
    family = "gpu" if "gpu" in sources else "cpu_est"  # cpu_est: a dry run without NVML
    gpu, base_gpu = sources.get(family), base_sources.get(family)  # type: ignore[call-overload]
    gen = result.generation
    terms = cell_terms(
        gpu,
        base_gpu,
        None,
        gen.samples_completed if gen else None,
        gen.output_tokens if gen else None,
    )
    headline = terms["terms"]["inference"]
    phase = headline["energy_j"]
    # the headline window as the terms measured it (generation, when the marks exist)
    start, end = headline["window"] or (marks["inference_start"], marks["inference_end"])
    reference = cell_dir.parent / f"{result.job_id}.reference.jsonl"
    try:
        direct: float | None = reference_at(reference, end) - reference_at(reference, start)
    except (OSError, ValueError) as exc:  # no NVML (a CPU dry run): the check did not run
        print(f"reference counter unavailable: {exc}", file=sys.stderr)
        direct = None
    trace = trace_file(cell_dir)
    ceems = ceems_like_j(trace, start, end)
    job_ceems = ceems_like_j(trace, marks["job_start"], marks["job_end"])
    return {
        "cell": result.job_id,
        "output_tokens": gen.output_tokens if gen else None,
        "inference_s": end - start,
        "headline_formula": headline["formula"],
        "evaluation_s": marks["inference_end"] - marks["inference_start"],
        "devices_summed": sorted(headline.get("per_device_j") or {}),
        "sampler_devices": [d.uuid for d in _nvml_devices(result)],
        "counter_reads_on_mark": result.sampler.counter_reads_on_mark,
        "phase_resolved_j": phase,
        "reference_counter_j": direct,
        "phase_vs_counter_pct": pct(phase, direct),
        "methods": method_comparison(terms),
        "ceems_10s_inference_j": ceems,
        "ceems_10s_inference_err_pct": pct(ceems, phase),
        "ceems_10s_job_err_pct": pct(job_ceems, terms["terms"]["job"]["energy_j"]),
        "pad_s": marks.get("pad_end", 0) - marks.get("pad_start", 0),
    }


def _nvml_devices(result: JobResult) -> list[Any]:
    info = result.sampler.traces.get("nvml")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokens", default="32,128,512", help="answer lengths (tokens)")
    parser.add_argument("--windows", default="0,60", help="accounting windows (s): padding")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-connections", type=int, default=32)
    parser.add_argument("--skip-sampler-cost", action="store_true")
    parser.add_argument("--shape", default="llama-1b", help="model shape (tiny: a CPU dry run)")
    parser.add_argument(
        "--busy-gpu",
        help="keep this other GPU (index or UUID) busy during the jobs: it must not be counted",
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    report: dict[str, Any] = {"devices": devices, "cells": [], "idle": {}}
    if not args.skip_sampler_cost:
        report["sampler_cost"] = sampler_cost(out)
        print(report["sampler_cost"], flush=True)
    tokens = [int(t) for t in args.tokens.split(",")]
    busy = start_busy(args.busy_gpu, 3600.0) if args.busy_gpu else None
    job_uuids = sorted(uuid_of(e) for e in devices.split(",") if e) if busy else []
    report["job_gpus"] = job_uuids
    report["busy_gpu"] = uuid_of(args.busy_gpu) if args.busy_gpu else None
    for window in (float(w) for w in args.windows.split(",")):
        config = config_for(out, window, tokens, args.samples, args.max_connections, args.shape)
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
    if busy is not None:
        busy.terminate()
        busy.wait()
    failures = []
    for c in report["cells"]:
        name = f"{c['cell']} w{c['window_s']:g}"
        if job_uuids and (c["sampler_devices"] != job_uuids or report["busy_gpu"] in job_uuids):
            failures.append(f"{name}: sampled {c['sampler_devices']}, the job's GPUs {job_uuids}")
        phase = c["phase_vs_counter_pct"]
        if phase is None or abs(phase) > PHASE_VS_COUNTER_PCT:
            failures.append(f"{name}: phase-resolved vs counter {phase} %")
        corrected = c["methods"]["corrected_whole_job"]["gap_pct"]
        if corrected is None or abs(corrected) > CORRECTED_VS_PHASE_PCT:
            failures.append(f"{name}: corrected whole-job vs phase-resolved {corrected} %")
    report["failures"] = failures
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({"idle": report["idle"], "failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
