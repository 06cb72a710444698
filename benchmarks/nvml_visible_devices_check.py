#!/usr/bin/env python3
"""Check, on a machine with several GPUs, that the sampler measures the job's GPUs and only them.

For each value of CUDA_VISIBLE_DEVICES given, a child process runs bf16 matrix products on
the first visible CUDA device while the evalwatt sampler runs with the same variable. The
report shows which physical GPUs (NVML index, UUID) the sampler opened, which one CUDA ran
on (its UUID, from PyTorch), and the mean power of each sampled GPU: the busy GPU must be the
one CUDA used, and a GPU outside the variable must not appear. Each case is then checked as
a list of named expectations (``case_expectations``), printed as passed, FAILED or could not
run; the script exits 1 unless every one passed (a case that could not run never passes).

    python3 benchmarks/nvml_visible_devices_check.py --out DIR 1 GPU-<uuid> 1,0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"
sys.path.insert(0, str(WORKFLOW))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nvml_check import FAILED, NOT_RUN, PASSED, Expectation, verdict  # noqa: E402

from evalwatt.energy.trace import TraceError  # noqa: E402
from evalwatt.energy.trace_files import read_trace  # noqa: E402
from evalwatt.sampling.process import SamplerProcess  # noqa: E402

# The GPU CUDA used must draw at least this many times the power of every other sampled GPU
# during the burst (two H200s: 480-580 W against 80 W, docs/methodology.md).
BUSY_OVER_IDLE = 2.0

BURN = """
import time, torch
p = torch.cuda.get_device_properties(0)
print("cuda-uuid", "GPU-" + str(p.uuid), flush=True)
a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    a @ a
torch.cuda.synchronize()
"""


def _entry_matches(entry: str, device: Mapping[str, Any]) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES entry (an index or a GPU UUID) names ``device``."""
    if entry.startswith("GPU-"):
        return str(device.get("uuid", "")).startswith(entry)
    return entry.isdigit() and device.get("nvml_index") == int(entry)


def case_expectations(case: Mapping[str, Any]) -> list[Expectation]:
    """The named expectations of one case (a result of ``check``): exactly the visible GPUs
    sampled, the GPU CUDA ran on among them and, with several, the busiest by BUSY_OVER_IDLE."""
    visible = case["CUDA_VISIBLE_DEVICES"]
    prefix = f"CUDA_VISIBLE_DEVICES={visible}: "
    names = [
        f"{prefix}only the visible GPUs sampled",
        f"{prefix}the GPU CUDA ran on is sampled",
    ]
    if case.get("missing"):
        return [Expectation(name, NOT_RUN, case["missing"]) for name in names]
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    sampled = case["sampled"]
    unmatched = [e for e in entries if not any(_entry_matches(e, d) for d in sampled)]
    extra = [d["uuid"] for d in sampled if not any(_entry_matches(e, d) for e in entries)]
    exact = not unmatched and not extra and len(sampled) == len(entries)
    detail = f"{len(sampled)} sampled for {len(entries)} entries"
    if unmatched:
        detail += f"; not sampled: {', '.join(unmatched)}"
    if extra:
        detail += f"; sampled but not visible: {', '.join(extra)}"
    checks = [Expectation(names[0], PASSED if exact else FAILED, detail)]
    cuda = case.get("cuda_ran_on")
    busy = next((d for d in sampled if cuda and d["uuid"] == cuda), None)
    if cuda is None:
        checks.append(Expectation(names[1], NOT_RUN, "CUDA's device UUID is missing"))
    else:
        checks.append(Expectation(names[1], PASSED if busy else FAILED, f"CUDA ran on {cuda}"))
    others = [d for d in sampled if d is not busy]
    if busy is not None and others:
        name = f"{prefix}the GPU CUDA ran on is the busy one (>= {BUSY_OVER_IDLE:g} x the others)"
        watts = [d.get("mean_w_during_burst") for d in [busy, *others]]
        if any(w is None for w in watts):
            checks.append(Expectation(name, NOT_RUN, "a GPU's mean power is missing"))
        else:
            top = max(w for w in watts[1:] if w is not None)
            ok = watts[0] is not None and watts[0] >= BUSY_OVER_IDLE * top
            checks.append(
                Expectation(
                    name,
                    PASSED if ok else FAILED,
                    f"{watts[0]} W against at most {top} W on the others",
                )
            )
    return checks


def check(visible: str, out: Path, seconds: float) -> dict[str, Any]:
    """Run one case; a case that cannot run says why in ``missing``."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": str(WORKFLOW)}
    case: dict[str, Any] = {"CUDA_VISIBLE_DEVICES": visible}
    sampler = SamplerProcess(out, interval_s=0.1, env=env)
    start = time.time()
    burn = subprocess.run(
        [sys.executable, "-c", BURN.format(seconds=seconds)],
        env=env,
        capture_output=True,
        text=True,
    )
    end = time.time()
    sampler.stop()
    if burn.returncode != 0:
        tail = burn.stderr.strip().splitlines()[-1:] or ["no output"]
        return {**case, "missing": f"the CUDA burst failed (exit {burn.returncode}): {tail[0]}"}
    case["cuda_ran_on"] = next(
        (line.split()[1] for line in burn.stdout.splitlines() if line.startswith("cuda-uuid")),
        None,
    )
    try:
        status = json.loads((out / "sampler.json").read_text())
        nvml = status["traces"].get("nvml")
        if nvml is None:
            reason = status.get("unavailable", {}).get("nvml", "no nvml trace")
            return {**case, "missing": f"the sampler did not sample the GPUs: {reason}"}
        devices = nvml["devices"]
        window = read_trace(out / "trace-gpu.parquet").window(start + 1, end - 0.5)
    except (OSError, ValueError, KeyError, TraceError) as exc:
        return {**case, "missing": f"no sampler figures: {exc}"}
    watts = {d: j / window.duration_s for d, j in window.per_device_j.items()}
    case["sampled"] = [
        {
            "visible_as": d.get("visible_as"),
            "nvml_index": d["nvml_index"],
            "uuid": d["uuid"],
            "mean_w_during_burst": (
                round(watts[str(d["nvml_index"])], 1) if str(d["nvml_index"]) in watts else None
            ),
        }
        for d in devices
    ]
    return case


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("visible", nargs="+", help="CUDA_VISIBLE_DEVICES values to try")
    args = parser.parse_args()
    results = [check(v, args.out / f"case{i}", args.seconds) for i, v in enumerate(args.visible)]
    text = json.dumps(results, indent=1)
    print(text)
    (args.out / "report.json").write_text(text + "\n")
    report, status = verdict([e for case in results for e in case_expectations(case)])
    print(report)
    (args.out / "expectations.txt").write_text(report + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
