#!/usr/bin/env python3
"""Per-model against per-cell execution on one GPU: the same cells, measured both ways.

Plans the cells of one model (each answer length x each ``max_connections``: 4 cells by
default; ``--tokens 64,64,64 --max-connections 64``, one cell three times) with the ``hf``
backend (``transformers serve``, continuous batching) and runs the workflow's own rendered
jobs (``RunJobs`` + ``render_script``, each ``job.sbatch`` run with bash, as the job rule does)
in each execution mode, ``--repeats`` times, the modes interleaved within each repeat:

* ``per-cell``: the load-only baseline, then one job per cell (the study's layout);
* ``per-model``: one model job (load, reference idle, the cells each after a cooldown);
* ``per-model-nocool`` (in ``--modes``): the same with ``cooldown_max_s: 0``.

Beside every job, gpu_truth.py's reference process reads the NVML energy counter at 100 Hz,
and another reads each GPU's temperature at 2 Hz. For every cell, mode and repeat it takes the
generation energy as the workflow's energy step computes it (``table.cells.build_record``: the
GPU family's ``inference`` term, phase-resolved over the generation window) and compares it:

1. with the 100 Hz counter over the same window (goal: within 0.5 %);
2. per-model against per-cell mode, mean over the repeats (goal: within 2 %), with the
   coefficient of variation over the repeats of each cell and mode;
3. the GPU temperature at the start of each window (reference idle, cooldown, evaluation,
   generation) and each cooldown's length and end;
4. per mode, the GPU-seconds of its jobs outside the cells' generation windows;
5. per job kind, the cost preview (``plan.estimate``) against the measured GPU-seconds
   (``report.preview_check``: goal within +-25 %), from the throughput table as shipped, and
   calibrated on the first repeat (``preview-check --write-calibration``).

It writes ``report.json`` under ``--out`` (after every run; the raw results, traces, logs and
probe readings under ``results/``) and prints a compact summary. ``--merge`` analyses kept
folders again (e.g. those of two device calls, ``--first-repeat`` numbering their repeats
apart) as one report; ``--budget-s`` keeps a device call inside its time. It exits 1 when a
job failed, and with ``--strict`` also when a goal is missed; a figure that could not be taken
(no NVML on a CPU) is reported as not checked, never as passed.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/gpu_modes.py --out "$OUT/modes" \\
        --shape llama-1b --tokens 32,64 --max-connections 16,32 --samples 64 --repeats 3

(docs/validation/h200-per-model/command.sh: the H200 runs, docs/validation.md: their figures.)
``--short`` runs both modes on a CPU in one to two minutes (a stand-in server, the CPU-time
sampler, one repeat): tests/test_benchmarks.py runs it so that it cannot break silently.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(BENCHMARKS))

import gpu_truth as truth  # noqa: E402

from evalwatt.base.atomic import write_text  # noqa: E402
from evalwatt.base.layout import Layout  # noqa: E402
from evalwatt.base.vocabulary import Family  # noqa: E402
from evalwatt.config.checks import check_environment  # noqa: E402
from evalwatt.config.load import Config, from_dict  # noqa: E402
from evalwatt.contracts.contract import read_contract, write_contract  # noqa: E402
from evalwatt.contracts.record import FamilyEnergy  # noqa: E402
from evalwatt.contracts.result import JobResult  # noqa: E402
from evalwatt.jobs.render import render_script  # noqa: E402
from evalwatt.jobs.run import RunJobs  # noqa: E402
from evalwatt.plan.matrix import Plan, plan_run  # noqa: E402
from evalwatt.report import preview_check  # noqa: E402
from evalwatt.table.cells import build_record  # noqa: E402

# Goals (issue 17). A figure that could not be taken is "not checked", never passed.
COUNTER_GOAL_PCT = 0.5
MODES_GOAL_PCT = 2.0
PREVIEW_GOAL_PCT = 25.0
TEMPERATURE_HZ = 2.0
# per-model-nocool: per-model with cooldown_max_s 0 (no wait before a cell's evaluation)
MODES = ("per-cell", "per-model", "per-model-nocool")

# --- the GPUs' temperature, read beside the jobs -----------------------------------------------

TEMPERATURE_CODE = """
import json, sys, time, pynvml
pynvml.nvmlInit()
entries = [e for e in sys.argv[2].split(",") if e]
hs = [pynvml.nvmlDeviceGetHandleByUUID(e) if e.startswith("GPU-")
      else pynvml.nvmlDeviceGetHandleByIndex(int(e)) for e in entries]
out = open(sys.argv[1], "w")
while True:
    now = time.time()
    out.write(json.dumps([now, [pynvml.nvmlDeviceGetTemperature(h, 0) for h in hs]]) + "\\n")
    out.flush()
    time.sleep(1.0 / float(sys.argv[3]))
"""


def start_probes(folder: Path, devices: str) -> list[subprocess.Popen[bytes]]:
    """gpu_truth's 100 Hz energy counter reader and a 2 Hz temperature reader, in their own
    processes, for the whole of one mode's run (every job of it, and the gaps between)."""
    folder.mkdir(parents=True, exist_ok=True)
    readings = Readings(folder)
    code = [sys.executable, "-c", TEMPERATURE_CODE, str(readings.temperature), devices]
    return [
        truth.start_reference(readings.counter, devices),
        subprocess.Popen([*code, str(TEMPERATURE_HZ)], stderr=subprocess.DEVNULL),
    ]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
        process.wait()


class Readings:
    """What the probes of one run wrote, in the run's folder (kept with its results)."""

    def __init__(self, folder: Path) -> None:
        self.counter = folder / "reference.jsonl"
        self.temperature = folder / "temperature.jsonl"

    def energy_j(self, start: float, end: float) -> tuple[float | None, str | None]:
        """The counter's joules over [start, end] (summed over devices), or why none."""
        try:
            at_end = truth.reference_at(self.counter, end)
            return at_end - truth.reference_at(self.counter, start), None
        except (OSError, ValueError) as exc:  # no NVML (a CPU run): the check did not run
            read = self.counter.is_file() and self.counter.stat().st_size > 0
            return None, f"100 Hz counter: {exc}" if read else "100 Hz counter: no reading"

    def temperature_c(self, t: float) -> list[float] | None:
        """Each GPU's temperature read last at or before ``t`` (None: no reading)."""
        try:
            rows = [json.loads(x) for x in self.temperature.read_text().splitlines() if x]
        except (OSError, json.JSONDecodeError):
            return None
        before = [temps for ts, temps in rows if ts <= t]
        return before[-1] if before else None


# --- the plan ----------------------------------------------------------------------------------


# ``--short`` without ``--hf-python``: a stand-in for ``transformers serve`` that answers as the
# hf backend's server does (health, models, chat completions of exactly max_tokens tokens with
# their usage), in a fraction of a second, so that CI runs both modes end to end in about two
# minutes; its energy figures mean nothing (the CPU-time model of an idle CPU).
FAKE_SERVE = """
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

argv = sys.argv[1:]
model = argv[argv.index("serve") + 1]  # after hf_serve's own flag
host, port = argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        listed = {"object": "list", "data": [{"id": model, "object": "model"}]}
        self._send({"status": "ok"} if self.path == "/health" else listed)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        tokens = int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)
        prompt = len(str(request["messages"][-1]["content"]).split())
        time.sleep(0.02 * tokens)
        self._send({
            "id": "x", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": " ".join(["go"] * tokens)}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": tokens,
                      "total_tokens": prompt + tokens},
        })

    def log_message(self, *args):
        pass


ThreadingHTTPServer((host, port), Handler).serve_forever()
"""


def job_python(args: argparse.Namespace) -> str | None:
    """The jobs' Python, which also runs the hf server (``python -m evalwatt.runtime.hf_serve
    --cudnn-attention=off serve ...``, runtime/backends.py). None: this Python, which has
    transformers (the GPU machine). Else a wrapper (gpu_truth.two_pythons) that runs the jobs
    with this Python and the server with ``--hf-python`` (a CPU run: the job's packages in
    .venv, the server's in .venv-vllm) or, in ``--short`` mode without it, the stand-in
    FAKE_SERVE."""
    if args.hf_python is None and not args.short:
        return None
    folder = args.out / "bin"
    if args.hf_python is not None:
        return truth.two_pythons(folder, truth.hf_server(args.hf_python))
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "fake_serve.py"
    fake.write_text(FAKE_SERVE)
    return truth.two_pythons(folder, [sys.executable, str(fake)])


def fake_model(out: Path) -> dict[str, Any]:
    """The config entry of the stand-in server's model: a folder that only has to exist."""
    folder = out / "model-fake"
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "name": "fake",
        "hf_id": "evalwatt/fake",
        "path": str(folder),
        "family": "llama",
        "total_params_b": 0.001,
        "weight_bits": 16,
        "attention_heads": 4,
        "kv_heads": 2,
        "context_tokens": 1024,
        "notes": "no weights: benchmarks/gpu_modes.py's stand-in server (--short)",
    }


def benchmarks_of(args: argparse.Namespace) -> dict[str, Any]:
    """The answer lengths, with what the estimate needs to know of them."""
    tokens = [int(t) for t in args.tokens.split(",")]
    if args.weights is not None:
        found = truth.humaneval_benchmarks(tokens, args.limit)
        extra = {"expected_input_tokens": 170}
    else:
        found = truth.synthetic_benchmarks(tokens, args.samples, args.prompt_words)
        extra = {"expected_input_tokens": args.prompt_words + 12}
    for bench in found.values():  # fixed-length answers: exactly max_tokens
        bench.update(extra, expected_output_tokens=bench["max_tokens"])
    return found


def config_for(
    args: argparse.Namespace,
    mode: str,
    repeat: int,
    setup: dict[str, Any],
    cal: Path | None,
    checked: bool = True,
) -> Config:
    """One run's configuration: the model and its cells, this run's execution mode and
    cooldown, the planner's calibration (None: the throughput table only). A CPU run plans a
    GPU (the hf backend needs one) and its server computes on the CPU, with gpu_truth's small
    KV cache."""
    model = {**setup["model"], "backend": "hf"}
    per_model = {
        "reference_idle_s": args.reference_idle_s,
        "cooldown_max_s": 0.0 if mode == "per-model-nocool" else args.cooldown_max_s,
        "cooldown_margin_w": args.cooldown_margin_w,
    }
    raw: dict[str, Any] = {
        "run": f"{mode}-r{repeat}",
        "results_dir": str(args.out / "results"),
        "execution": "per-cell" if mode == "per-cell" else "per-model",
        "per_model": per_model,
        "cluster": {
            "name": "gpu-modes",
            "gpu_model": args.gpu_model,
            "gpus_per_node": max(truth.gpus_visible(), 1),
            "gpu_memory_gb": 141,
            "cpus_per_gpu": 4,
            "accounting_window_s": args.window,
            "pad_margin_s": 2,
            "time_limit_min": 60,
        },
        "job": {"ready_timeout_s": 600, "sample_interval_s": 0.1},
        "hf": {"cudnn_attention": args.hf_cudnn_attention},
        "planner": {"calibration": str(cal)} if cal else {},
        "models": [{**model, "benchmarks": sorted(setup["benchmarks"])}],
        "benchmarks": setup["benchmarks"],
        "sweeps": {
            "temperature": [0.0],
            "max_connections": [int(c) for c in args.max_connections.split(",")],
        },
    }
    if args.job_python:
        raw["job"]["python"] = args.job_python
    config = from_dict(raw, args.out, origin=f"gpu_modes {mode} r{repeat}")
    # checked: here, before running; not when a run's results are analysed elsewhere (its
    # weights and interpreters stayed on the machine that ran it)
    return check_environment(config) if checked else config


# --- one mode's run ----------------------------------------------------------------------------


def run_jobs(jobs: RunJobs) -> list[dict[str, Any]]:
    """Every job of the run, rendered as the workflow renders it and run with bash."""
    done = []
    for kind, job_id in jobs.jobs():
        job = jobs.job(kind, job_id)
        write_contract(job.spec_path, job.spec)
        write_text(job.script, render_script(job))
        log = jobs.layout.log("run_job", f"{kind}-{job_id}")
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.time()
        with open(log, "w") as fh:
            code = subprocess.run(["bash", str(job.script)], stdout=fh, stderr=fh).returncode
        done.append({"kind": kind, "job": job_id, "rc": code, "process_s": time.time() - started})
        print(json.dumps({"ran": done[-1]}), flush=True)
        if code != 0:
            print(log.read_text()[-3000:], file=sys.stderr)
    return done


def gpu_family(record: Any) -> tuple[str, FamilyEnergy | None, str | None]:
    """The GPU family's terms; on a machine without NVML the CPU estimate's (a CPU run)."""
    for family in (Family.GPU, Family.CPU_EST):
        info = record.energy.get(family)
        if isinstance(info, FamilyEnergy):
            return str(family), info, None
    return "gpu", None, str(record.energy.get(Family.GPU))


def at_starts(probes: Readings, marks: dict[str, float]) -> dict[str, list[float] | None]:
    """The 2 Hz reader's temperature at the start of each window the cell has."""
    starts = ("reference_idle_start", "cooldown_start", "inference_start", "generation_start")
    return {m: probes.temperature_c(marks[m]) for m in starts if m in marks}


def cell_figures(
    config: Config, plan: Plan, layout: Layout, cell_id: str, probes: Readings
) -> dict[str, Any]:
    """One cell's generation energy from the workflow's energy step, and what checks it."""
    record = build_record(config, plan, layout, cell_id)
    result = read_contract(JobResult, layout.run_result("cell", cell_id))
    marks = {str(k): v for k, v in result.marks.items()}
    family, info, why = gpu_family(record)
    term = info.terms["inference"] if info else None
    energy = term.energy_j if term else None
    counter, counter_why = (None, why or (term.null_reason if term else None))
    window = term.window if term else None
    if window is not None:
        counter, counter_why = probes.energy_j(*window)
    gen, cool = result.generation, result.cooldown
    tokens = gen.output_tokens if gen else None
    steady = info.steady if info else None
    return {
        "cell": cell_id,
        "family": family,
        "generation_j": energy,
        "generation_null_reason": term.null_reason if term else why,
        "formula": term.formula if term else None,
        "generation_s": window[1] - window[0] if window else None,
        "counter_j": counter,
        "counter_null_reason": counter_why,
        "vs_counter_pct": truth.pct(energy, counter),
        "output_tokens": tokens,
        "j_per_token": truth.per(energy, tokens),
        "steady_j_per_token": steady.energy_per_output_token_j if steady else None,
        "steady_null_reason": steady.null_reason if steady else None,
        "temperature_c": at_starts(probes, marks),
        "runtime_temperature_c": {str(k): list(v) for k, v in result.temperatures_c.items()},
        "cooldown_s": cool.ended - cool.started if cool else None,
        "cooldown_ended_by": cool.ended_by if cool else None,
        "score": result.scoring.score if result.scoring else None,
    }


def gpu_seconds(jobs: list[Any]) -> dict[str, Any]:
    """The mode's GPU-seconds: its jobs' wall x GPUs, and the part outside the cells'
    generation windows (loading, idle, Inspect around generation, cooldowns, exit, pad)."""
    own = [j for j in jobs if not j.packed]
    cells = [j for j in jobs if j.kind == "cell"]
    job_s = sum((j.wall_s or 0.0) * j.gpus for j in own)
    generation_s = sum((j.generation_s or 0.0) * j.gpus for j in cells)
    missing = [j.job_id for j in own if j.wall_s is None] + [
        j.job_id for j in cells if j.generation_s is None
    ]
    load_s = sum((j.load_s or 0.0) * j.gpus for j in own)
    return {
        "jobs": len(own),
        "job_gpu_s": job_s,
        "generation_gpu_s": generation_s,
        "load_gpu_s": load_s,
        "outside_generation_gpu_s": job_s - generation_s,
        "outside_share": (job_s - generation_s) / job_s if job_s > 0 else None,
        "missing_marks": missing,
    }


def _span(marks: dict[str, float], start: str, end: str) -> float | None:
    """A phase's seconds from its two marks: 0 without either (the job had no such phase),
    None with one alone (the phase was cut: its length is not known, and is not 0)."""
    if start in marks and end in marks:
        return marks[end] - marks[start]
    return 0.0 if start not in marks and end not in marks else None


def _total(values: Iterable[float | None]) -> float | None:
    """The sum of seconds, None when one of them is not known."""
    known = list(values)
    return None if any(v is None for v in known) else sum(v for v in known if v is not None)


def job_phases(config: Config, plan: Plan, jobs: list[Any]) -> list[dict[str, Any]]:
    """Each job's seconds by phase, measured (from its marks and its cells') beside the
    preview's (``plan.estimate.Estimate``): where a preview that misses misses."""
    out = []
    for job in (j for j in jobs if not j.packed):
        cells = [j for j in jobs if j.kind == "cell" and (j is job or j.job_id in job.cells)]
        cell_marks = [c.marks for c in cells]
        inference = [_span(c.marks, "inference_start", "inference_end") for c in cells]
        generation = _total(c.generation_s for c in cells)
        measured = {
            "load_s": job.load_s,
            "warm_up_s": _span(job.marks, "warm_up_start", "warm_up_end"),
            "reference_idle_s": _span(job.marks, "reference_idle_start", "reference_idle_end"),
            "cooldown_s": _total(_span(m, "cooldown_start", "cooldown_end") for m in cell_marks),
            "generation_s": generation,
            "inspect_s": _total([*inference, None if generation is None else -generation]),
            "pad_s": _span(job.marks, "pad_start", "pad_end"),
        }
        wall = job.wall_s
        known = _total(measured.values())  # the rest: Inspect's import, exit, writes
        measured["other_s"] = None if wall is None or known is None else wall - known
        estimate = preview_check.preview_of(plan, config, job)
        out.append(
            {
                "kind": job.kind,
                "job": job.job_id,
                "wall_s": wall,
                "measured": measured,
                "preview": asdict(estimate) if estimate else None,
            }
        )
    return out


def preview(config: Config, plan: Plan, jobs: list[Any]) -> dict[str, Any]:
    """Preview against measured GPU-seconds per job kind (``evalwatt preview-check``)."""
    kinds, notes = preview_check.check(plan, config, jobs)
    return {
        "kinds": {
            k.kind: {
                "jobs": k.jobs,
                "preview_gpu_s": k.preview_gpu_s,
                "measured_gpu_s": k.measured_gpu_s,
                "preview_err_pct": truth.pct(k.preview_gpu_s, k.measured_gpu_s),
            }
            for k in kinds
        },
        "notes": notes,
    }


def run_mode(
    args: argparse.Namespace, mode: str, repeat: int, setup: dict[str, Any], devices: str
) -> dict[str, Any]:
    """Run every job of one mode's run, with the probes beside them."""
    config = config_for(args, mode, repeat, setup, None)
    layout = Layout.of(config.results_dir, config.run)
    probes = start_probes(layout.root, devices)
    try:
        ran = run_jobs(RunJobs(config, plan_run(config), layout))
    finally:
        stop(probes)
    failed = any(j["rc"] != 0 for j in ran)
    return {"mode": mode, "repeat": repeat, "run": config.run, "jobs": ran, "failed": failed}


def analyse(
    args: argparse.Namespace, setup: dict[str, Any], run: dict[str, Any], checked: bool = True
) -> dict[str, Any]:
    """One finished run's figures, from its results, traces and probe files alone: here after
    the run, or later anywhere the folder is (``--merge``). A cell with no result (a run
    stopped by its call's time limit, kept and merged by hand) is listed as missing."""
    config = config_for(args, run["mode"], run["repeat"], setup, None, checked)
    plan = plan_run(config)
    layout = Layout.of(config.results_dir, config.run)
    readings = Readings(layout.root)
    done = [c for c in plan.cells if layout.run_result("cell", c).is_file()]
    figures: dict[str, Any] = {
        "cells": [cell_figures(config, plan, layout, c, readings) for c in done],
        "missing_cells": [c for c in plan.cells if c not in done],
    }
    measured = preview_check.measured_jobs(layout)
    figures["gpu_seconds"] = gpu_seconds(measured)
    figures["preview"] = preview(config, plan, measured)
    figures["job_phases"] = job_phases(config, plan, measured)
    figures["model_job_temperature_c"] = {
        j.job_id: at_starts(readings, j.marks) for j in measured if j.kind == "model"
    }
    print(json.dumps({run["run"]: figures["gpu_seconds"]}), flush=True)
    return figures


def calibrated_previews(
    args: argparse.Namespace, setup: dict[str, Any], runs: list[dict[str, Any]], checked: bool
) -> dict[str, Any]:
    """The preview calibrated on measured rates (load, tokens/s by max_connections, Inspect's
    overhead, cooldowns: ``preview-check --write-calibration``), against every run: those of
    ``--calibration`` (an earlier call's), else this call's first repeat (its runs in sample,
    the later repeats out of sample)."""
    path = args.calibration
    out: dict[str, Any] = {"runs": {}}
    if path is None:
        first = [r for r in runs if r["repeat"] == args.first_repeat and not r["failed"]]
        first = [r for r in first if r["mode"] != "per-model-nocool"] or first
        if not first:
            return {"null_reason": "no run of the first repeat finished", "runs": {}}
        path = args.out / "calibration.json"
        layouts = [Layout.of(args.out / "results", r["run"]) for r in first]
        jobs = [j for x in layouts for j in preview_check.measured_jobs(x)]
        preview_check.write_calibration(path, preview_check.calibration("first repeat", jobs))
        out["from_runs"] = [r["run"] for r in first]
    out["calibration"] = str(path)
    for run in (r for r in runs if not r["failed"]):
        config = config_for(args, run["mode"], run["repeat"], setup, path, checked)
        layout = Layout.of(config.results_dir, config.run)
        measured = preview_check.measured_jobs(layout)
        out["runs"][run["run"]] = preview(config, plan_run(config), measured)
    return out


# --- summary -----------------------------------------------------------------------------------


def cv_pct(values: list[float]) -> float | None:
    """Coefficient of variation over the repeats (sample standard deviation / mean), in %."""
    if len(values) < 2 or not statistics.fmean(values):
        return None
    return 100.0 * statistics.stdev(values) / statistics.fmean(values)


def cell_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell in one mode over its repeats."""
    values = [r["generation_j"] for r in rows if r["generation_j"] is not None]
    errors = [abs(r["vs_counter_pct"]) for r in rows if r["vs_counter_pct"] is not None]
    return {
        "repeats": len(rows),
        "generation_j_mean": statistics.fmean(values) if values else None,
        "cv_pct": cv_pct(values),
        "max_abs_vs_counter_pct": max(errors) if errors else None,
        "generation_s_mean": _mean(rows, "generation_s"),
        "j_per_token_mean": _mean(rows, "j_per_token"),
        "steady_j_per_token_mean": _mean(rows, "steady_j_per_token"),
        "temperature_c": {
            m: [r["temperature_c"].get(m) for r in rows]
            for m in ("cooldown_start", "inference_start", "generation_start")
        },
        "cooldown_s": [r["cooldown_s"] for r in rows],
        "cooldown_ended_by": [r["cooldown_ended_by"] for r in rows],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell and mode over the repeats, with per-model against per-cell; per mode."""
    cells: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        for c in run.get("cells", []):
            cells.setdefault(c["cell"], {}).setdefault(run["mode"], []).append(c)
    table: dict[str, Any] = {}
    for cell, by_mode in cells.items():
        table[cell] = {mode: cell_summary(rows) for mode, rows in by_mode.items()}
        base = table[cell].get("per-cell", {}).get("generation_j_mean")
        for mode, row in table[cell].items():
            if mode != "per-cell":
                row["vs_per_cell_pct"] = truth.pct(row["generation_j_mean"], base)
    seconds: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if "gpu_seconds" in run:
            seconds.setdefault(run["mode"], []).append(run["gpu_seconds"])
    keys = ("job_gpu_s", "generation_gpu_s", "load_gpu_s", "outside_generation_gpu_s")
    modes = {
        mode: {key: statistics.fmean(r[key] for r in rows) for key in keys}
        for mode, rows in seconds.items()
    }
    for row in modes.values():
        row["outside_share"] = row["outside_generation_gpu_s"] / row["job_gpu_s"]
    return {"cells": table, "modes": modes}


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.fmean(values) if values else None


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal: passed (True), missed (False) or not checked (None), with its figures."""
    out = []

    def goal(name: str, value: float | None, limit: float, why: str = "") -> None:
        passed = None if value is None else abs(value) <= limit
        out.append({"goal": name, "value": value, "limit": limit, "passed": passed, "why": why})

    for run in report["runs"]:
        if run.get("failed"):
            out.append({"goal": f"{run['run']} ran", "passed": False, "value": None})
        for c in run.get("cells", []):
            name = f"{run['run']} {c['cell']}: generation vs 100 Hz counter %"
            goal(name, c["vs_counter_pct"], COUNTER_GOAL_PCT, c["counter_null_reason"] or "")
    for cell, modes in report["summary"]["cells"].items():
        for mode, row in modes.items():
            if mode != "per-cell":
                goal(f"{cell}: {mode} vs per-cell %", row.get("vs_per_cell_pct"), MODES_GOAL_PCT)
    calibrated = report["calibrated_preview"].get("runs", {})
    for run in report["runs"]:
        for label, found in (
            ("table", run.get("preview")),
            ("calibrated", calibrated.get(run["run"])),
        ):
            for kind, k in (found or {}).get("kinds", {}).items():
                name = f"{run['run']} {kind}: preview ({label}) vs measured GPU-s %"
                goal(name, k["preview_err_pct"], PREVIEW_GOAL_PCT)
    return out


def _round(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 1) for v in values]


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def phase_sums(
    jobs: list[dict[str, Any]],
) -> dict[str, tuple[dict[str, float | None], dict[str, float]]]:
    """Per job kind, the measured and previewed seconds by phase, in the preview's phases
    (idle: Inspect around generation, cooldowns and the rest of the job); a measured sum is
    None when one job's figure is."""
    out: dict[str, tuple[dict[str, float | None], dict[str, float]]] = {}
    for job in jobs:
        measured, estimated = out.setdefault(job["kind"], ({}, {}))
        m = job["measured"]
        idle = _total([m["inspect_s"], m["cooldown_s"], m["other_s"]])
        mine = {k: m[k] for k in ("load_s", "reference_idle_s", "generation_s", "pad_s")}
        for name, value in {**mine, "idle_s": idle, "wall_s": job["wall_s"]}.items():
            measured[name] = _total([measured.get(name, 0.0), value])
        est = job["preview"] or {}
        est = {**est, "total_s": sum(est.values())}
        for name, value in est.items():
            estimated[name] = estimated.get(name, 0.0) + value
    return out


def print_summary(report: dict[str, Any]) -> None:
    summary = report["summary"]
    print("\ncell / mode: repeats, generation J mean, CV %, max |vs counter| %, vs per-cell %")
    for cell, modes in summary["cells"].items():
        for mode, r in modes.items():
            print(
                f"  {cell} {mode}: n={r['repeats']} {_fmt(r['generation_j_mean'], 1)} J "
                f"cv {_fmt(r['cv_pct'])} counter {_fmt(r['max_abs_vs_counter_pct'], 3)} "
                f"vs per-cell {_fmt(r.get('vs_per_cell_pct'))} "
                f"T(eval start) {r['temperature_c']['inference_start']} "
                f"cooldown {_round(r['cooldown_s'])} {r['cooldown_ended_by']}"
            )
    print("mode: job GPU-s, generation GPU-s, outside generation GPU-s (share), mean of repeats")
    for mode, r in summary["modes"].items():
        print(
            f"  {mode}: {r['job_gpu_s']:.1f} {r['generation_gpu_s']:.1f} "
            f"{r['outside_generation_gpu_s']:.1f} ({100 * r['outside_share']:.1f} %)"
        )
    print("preview vs measured GPU-s per job kind (table | calibrated on repeat 1):")
    calibrated = report["calibrated_preview"].get("runs", {})
    for run in report["runs"]:
        table = (run.get("preview") or {}).get("kinds", {})
        cal = (calibrated.get(run["run"]) or {}).get("kinds", {})
        for kind, k in table.items():
            c = cal.get(kind, {})
            print(
                f"  {run['run']} {kind}: measured {k['measured_gpu_s']:.0f}, preview "
                f"{k['preview_gpu_s']:.0f} ({_fmt(k['preview_err_pct'], 1)} %) | "
                f"{_fmt(c.get('preview_gpu_s'), 0)} ({_fmt(c.get('preview_err_pct'), 1)} %)"
            )
    print("seconds by phase, measured / preview, summed over the jobs of each kind:")
    for run in report["runs"]:
        for kind, (measured, estimated) in phase_sums(run.get("job_phases", [])).items():
            both = ", ".join(
                f"{name} {_fmt(measured.get(name), 0)}/{estimated.get(name, 0):.0f}"
                for name in ("load_s", "reference_idle_s", "generation_s", "idle_s", "pad_s")
            )
            wall = f"{_fmt(measured['wall_s'], 0)}/{estimated['total_s']:.0f}"
            print(f"  {run['run']} {kind}: wall {wall}: {both}")
    missed = [g for g in report["goals"] if g["passed"] is False]
    unchecked = [g for g in report["goals"] if g["passed"] is None]
    print(f"goals: {len(report['goals'])}, missed {len(missed)}, not checked {len(unchecked)}")
    for g in missed:
        print(f"  MISSED {g['goal']}: {g['value']} (limit {g['limit']})")


# --- the command -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", default="")
    parser.add_argument("--short", action="store_true", help="a CPU run of both modes, 1 repeat")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--shape", choices=sorted(truth.SHAPES), default="llama-1b")
    model.add_argument("--weights", type=Path, help="real weights (folder or .gguf): HumanEval")
    parser.add_argument("--models", type=Path, help="where random weights are kept and reused")
    parser.add_argument(
        "--hf-python",
        help="a Python whose environment has `transformers serve`, when this one has not "
        "(a CPU run: .venv-vllm/bin/python); it also writes the random weights. --short "
        "without it: a stand-in server, no weights",
    )
    parser.add_argument("--server-arg", action="append", default=[])
    parser.add_argument(
        "--hf-cudnn-attention",
        action="store_true",
        help="serve with PyTorch's cuDNN attention (hf.cudnn_attention: true); evalwatt's "
        "default is without (docs/vllm.md)",
    )
    parser.add_argument(
        "--tokens",
        default="128,256",
        help="the answer lengths; one given twice is a second benchmark of the same questions "
        "(synth_t64_2): a model job then runs that cell twice, on a fresh server and after it",
    )
    parser.add_argument(
        "--max-connections", default="16,64", help="the max_connections, one or more"
    )
    parser.add_argument("--samples", type=int, default=128, help="synthetic prompts per cell")
    parser.add_argument("--prompt-words", type=int, default=12)
    parser.add_argument("--limit", type=int, help="HumanEval questions (default: all 164)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--first-repeat",
        type=int,
        default=1,
        help="the number of the first repeat (a later "
        "call that adds repeats to an earlier one's: --merge)",
    )
    parser.add_argument(
        "--modes",
        default="per-cell,per-model",
        help=f"the modes run in each repeat, of {', '.join(MODES)}",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="start no run that would end past this many seconds from the start (each run "
        "taken as long as the last run of its mode); a run left out is listed",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="the calibration file of an earlier call, for the calibrated preview (default: "
        "written from this call's first repeat)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="no run: the report of the runs in these earlier --out folders together",
    )
    parser.add_argument("--window", type=float, default=0.0, help="accounting window (pad), s")
    parser.add_argument("--reference-idle-s", type=float, default=10.0)
    parser.add_argument("--cooldown-max-s", type=float, default=60.0)
    parser.add_argument("--cooldown-margin-w", type=float, default=10.0)
    parser.add_argument("--gpu-model", default="H200", help="cluster.gpu_model (the preview)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    args.modes = args.modes.split(",")
    if any(m not in MODES for m in args.modes):
        parser.error(f"--modes {','.join(args.modes)}: allowed {', '.join(MODES)}")
    if args.short:
        args.shape, args.weights, args.repeats = "tiny", None, 1
        args.tokens, args.max_connections, args.samples = "4,8", "1,2", 4
        args.reference_idle_s, args.cooldown_max_s = 0.5, 1.0
    args.job_python = None  # job_python() sets it once --out exists
    args.weights_python = args.hf_python or sys.executable
    return args


def model_setup(args: argparse.Namespace) -> dict[str, Any]:
    """The model's config entry (random weights written once, or real weights converted
    once) and the benchmarks, shared by every run."""
    if args.weights is not None:
        model = truth.real_model(args.out, args.weights, args.weights_python)
    elif args.short and args.hf_python is None:
        model = fake_model(args.out)
    else:
        model = truth.random_model(args.models or args.out, args.shape, args.weights_python)
    # a CPU run's server computes on the CPU, with gpu_truth's small KV cache: decided here,
    # where the runs are made, and kept with them (the server settings name the baseline)
    cpu_cache = [] if truth.gpus_visible() else truth.CPU_CACHE_ARGS
    model["server_args"] = [*args.server_arg, *cpu_cache]
    return {"model": model, "benchmarks": benchmarks_of(args)}


def planned_runs(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(mode, repeat) in the order they run: the modes interleaved and alternated from one
    repeat to the next, so that a drift of the machine (its temperature) reaches all alike."""
    runs = []
    for repeat in range(args.first_repeat, args.first_repeat + args.repeats):
        runs += [(m, repeat) for m in (args.modes if repeat % 2 else args.modes[::-1])]
    return runs


def fits(args: argparse.Namespace, mode: str, runs: list[dict[str, Any]], t0: float) -> bool:
    """Whether a run of ``mode`` should end inside ``--budget-s`` (always, without one), taken
    as long as the last run of that mode. A mode not run yet is started: its length is not
    known (a per-cell run takes several times a per-model one), and `timeout` bounds the call."""
    same = [r["seconds"] for r in runs if r["mode"] == mode]
    if args.budget_s is None or not same:
        return True
    return time.time() - t0 + same[-1] <= args.budget_s


def finish(out: Path, report: dict[str, Any]) -> None:
    """Summary, goals and report.json of the runs so far (written after every run, so that a
    call killed at its time limit keeps what it measured)."""
    runs = report["runs"]
    report["summary"] = summarize(runs)
    report["goals"] = goals(report)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every planned run, each analysed once it ended, then the calibrated preview."""
    args.job_python = job_python(args)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    setup = model_setup(args)
    report: dict[str, Any] = {"label": args.label, "devices": devices, "args": vars(args)}
    report.update(setup=setup, power=truth.power_limit_w(), runs=[], skipped=[])
    report["calibrated_preview"] = {}
    t0 = time.time()
    for mode, repeat in planned_runs(args):
        if not fits(args, mode, report["runs"], t0):
            report["skipped"].append({"mode": mode, "repeat": repeat, "why": "--budget-s"})
            continue
        started = time.time()
        run = run_mode(args, mode, repeat, setup, devices)
        run["seconds"] = time.time() - started
        if not run["failed"]:
            run.update(analyse(args, setup, run))
        report["runs"].append(run)
        finish(args.out, report)
    report["calibrated_preview"] = calibrated_previews(args, setup, report["runs"], True)
    return report


def args_of(part: dict[str, Any], folder: Path) -> argparse.Namespace:
    """The arguments a kept folder's runs were made with, its paths as paths."""
    args = argparse.Namespace(**part["args"])
    args.out = folder
    args.calibration = Path(args.calibration) if args.calibration else None
    return args


def merge(args: argparse.Namespace) -> dict[str, Any]:
    """The runs of several kept folders of the same model and cells (e.g. repeats made in two
    device calls, numbered apart by --first-repeat), analysed again here from their results,
    traces and probe files, as one report. A folder must be where it was made
    (a packed cell's result names its model job's folder by its absolute path)."""
    report: dict[str, Any] = {"label": args.label, "merged": [str(f) for f in args.merge]}
    report.update(runs=[], skipped=[], calibrated_preview={"runs": {}, "parts": []})
    for folder in args.merge:
        part = json.loads((folder / "report.json").read_text())
        part_args = args_of(part, folder)
        model = part["setup"]["model"]["name"]
        if report.setdefault("model", model) != model:  # cells of two models: two reports
            raise SystemExit(f"--merge: {folder} ran {model}, not {report['model']}")
        if "server_args" not in part["setup"]["model"]:  # kept before they were: a GPU's
            part["setup"]["model"]["server_args"] = part_args.server_arg
        report.setdefault("power", part["power"])
        report["skipped"] += part["skipped"]
        for run in part["runs"]:
            kept = {k: run[k] for k in ("mode", "repeat", "run", "jobs", "failed", "seconds")}
            if not run["failed"]:
                kept.update(analyse(part_args, part["setup"], kept, checked=False))
            report["runs"].append(kept)
        cal = calibrated_previews(part_args, part["setup"], part["runs"], checked=False)
        report["calibrated_preview"]["runs"].update(cal.pop("runs"))
        report["calibrated_preview"]["parts"].append({"folder": str(folder), **cal})
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    report = merge(args) if args.merge else measure(args)
    finish(out, report)
    print_summary(report)
    failed = any(r.get("failed") for r in report["runs"])
    missed = any(g["passed"] is False for g in report["goals"])
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
