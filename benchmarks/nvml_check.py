#!/usr/bin/env python3
"""Check the in-job NVML sampler against direct reads of the energy counter, on a real GPU.

A job is imitated with known phases: idle, a CUDA context with memory held (like a loaded
model), a burst of bf16 matrix products (like inference), idle again, exit of the GPU process,
and a padding sleep. The evalwatt sampler runs in its own process, as in a job. At every phase
mark this script also reads ``nvmlDeviceGetTotalEnergyConsumption`` itself. For each phase it
prints:

* the energy evalwatt computes from the sampled trace (counter interpolated at the marks);
* the energy from the direct counter reads at the marks (the reference);
* the trapezoidal integral of sampled power over the same window;

and their relative differences, then the sampler's timing (achieved period, late rounds).
The trace, the marks and the printed report are written to ``--out`` so the figures can be
traced back to raw readings.

    CUDA_VISIBLE_DEVICES=0 python3 benchmarks/nvml_check.py --out results/nvml-check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from evalwatt.energy.trace import read_trace
from evalwatt.sampling.probes import NvmlProbe, parse_visible_devices
from evalwatt.sampling.process import SamplerProcess

PHASES = ("cold_idle", "context", "compute", "post_idle")


def gpu_work(seconds: dict[str, float], marks_path: Path) -> None:
    """The imitated job: runs in a child process so that its exit frees the GPU."""
    import torch

    probe = NvmlProbe(visible=parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES")))
    probe.open()

    def counter_mj() -> float:
        return sum(r["energy_mj"] for r in probe.sample())

    marks: dict[str, float] = {}
    direct: dict[str, float] = {}

    def mark(name: str) -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        direct[name] = counter_mj()
        marks[name] = time.time()

    mark("cold_idle_start")
    time.sleep(seconds["cold_idle"])
    mark("context_start")
    held = torch.empty(8 * 2**30, dtype=torch.uint8, device="cuda")  # 8 GiB, like weights
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
    torch.cuda.synchronize()
    time.sleep(seconds["context"])
    mark("compute_start")
    end = time.monotonic() + seconds["compute"]
    products = 0
    while time.monotonic() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
        products += 20
    mark("post_idle_start")
    time.sleep(seconds["post_idle"])
    mark("exit")
    del held, a, b
    marks_path.write_text(
        json.dumps({"marks": marks, "direct_mj": direct, "matmuls_8192_bf16": products}, indent=1)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval-s", type=float, default=0.1)
    parser.add_argument(
        "--seconds",
        type=float,
        nargs=4,
        default=[10, 10, 20, 10],
        metavar=("COLD", "CONTEXT", "COMPUTE", "POST"),
    )
    parser.add_argument("--pad-s", type=float, default=10)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = dict(zip(PHASES, args.seconds, strict=True))
    if args.child:
        gpu_work(seconds, args.out / "child-marks.json")
        return 0

    workflow = str(Path(__file__).resolve().parents[1] / "workflow")
    sampler = SamplerProcess(
        args.out, interval_s=args.interval_s, env={**os.environ, "PYTHONPATH": workflow}
    )
    probe = NvmlProbe(visible=parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES")))
    probe.open()
    job_start_mj, job_start = sum(r["energy_mj"] for r in probe.sample()), time.time()
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--out",
            str(args.out),
            "--seconds",
            *map(str, args.seconds),
        ],
        check=True,
    )
    pad_start_mj, pad_start = sum(r["energy_mj"] for r in probe.sample()), time.time()
    time.sleep(args.pad_s)
    pad_end_mj, pad_end = sum(r["energy_mj"] for r in probe.sample()), time.time()
    time.sleep(0.3)
    sampler.stop()

    child = json.loads((args.out / "child-marks.json").read_text())
    marks = {**child["marks"], "job_start": job_start, "pad_start": pad_start, "pad_end": pad_end}
    direct = {
        **child["direct_mj"],
        "job_start": job_start_mj,
        "pad_start": pad_start_mj,
        "pad_end": pad_end_mj,
    }
    (args.out / "marks.json").write_text(
        json.dumps({"marks": marks, "direct_mj": direct}, indent=1)
    )
    trace = read_trace(args.out / "trace-gpu.parquet")
    windows = [
        ("cold idle", "cold_idle_start", "context_start"),
        ("context held, idle", "context_start", "compute_start"),
        ("bf16 matmul burst", "compute_start", "post_idle_start"),
        ("post idle", "post_idle_start", "exit"),
        ("process exit to pad", "exit", "pad_start"),
        ("pad (sleep)", "pad_start", "pad_end"),
        ("whole job", "job_start", "pad_end"),
    ]
    lines = [
        f"devices: {json.dumps(probe.info)}",
        f"sampler interval {args.interval_s} s; matmuls {child['matmuls_8192_bf16']}",
        f"{'window':22} {'s':>7} {'trace J':>11} {'direct J':>11} {'diff %':>8} "
        f"{'P-integral J':>13} {'diff %':>8} {'mean W':>8}",
    ]
    for label, a, b in windows:
        w = trace.window(marks[a], marks[b])
        ref = (direct[b] - direct[a]) / 1000
        pint = w.power_integral_j
        lines.append(
            f"{label:22} {w.duration_s:7.2f} {w.energy_j:11.2f} {ref:11.2f} "
            f"{100 * (w.energy_j - ref) / ref:8.3f} "
            f"{(pint or float('nan')):13.2f} {100 * ((pint or 0) - ref) / ref:8.3f} "
            f"{w.energy_j / w.duration_s:8.1f}"
        )
    status = json.loads((args.out / "sampler.json").read_text())
    period = (status["stopped_unix"] - status["started_unix"]) / max(status["rounds"], 1)
    lines.append(
        f"sampler: {status['rounds']} rounds, {status['late_rounds']} late, "
        f"max late {status['max_late_s']:.4f} s, "
        f"achieved period {period:.4f} s"
    )
    report = "\n".join(lines)
    print(report)
    (args.out / "report.txt").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
