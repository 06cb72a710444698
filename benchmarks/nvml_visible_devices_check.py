#!/usr/bin/env python3
"""Check, on a machine with several GPUs, that the sampler measures the job's GPUs and only them.

For each value of CUDA_VISIBLE_DEVICES given, a child process runs bf16 matrix products on
the first visible CUDA device while the evalwatt sampler runs with the same variable. The
report shows which physical GPUs (NVML index, UUID) the sampler opened, which one CUDA ran
on (its UUID, from PyTorch), and the mean power of each sampled GPU: the busy GPU must be the
one CUDA used, and a GPU outside the variable must not appear.

    python3 benchmarks/nvml_visible_devices_check.py --out DIR 1 GPU-<uuid> 1,0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"
sys.path.insert(0, str(WORKFLOW))

from evalwatt.energy.trace import read_trace  # noqa: E402
from evalwatt.sampling.process import SamplerProcess  # noqa: E402

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


def check(visible: str, out: Path, seconds: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "PYTHONPATH": str(WORKFLOW)}
    sampler = SamplerProcess(out, interval_s=0.1, env=env)
    start = time.time()
    burn = subprocess.run(
        [sys.executable, "-c", BURN.format(seconds=seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    end = time.time()
    sampler.stop()
    cuda_uuid = next(
        line.split()[1] for line in burn.stdout.splitlines() if line.startswith("cuda-uuid")
    )
    status = json.loads((out / "sampler.json").read_text())
    devices = status["traces"]["nvml"]["devices"]
    trace = read_trace(out / "trace-gpu.parquet")
    window = trace.window(start + 1, end - 0.5)
    watts = {d: j / window.duration_s for d, j in window.per_device_j.items()}
    return {
        "CUDA_VISIBLE_DEVICES": visible,
        "cuda_ran_on": cuda_uuid,
        "sampled": [
            {
                "nvml_index": d["nvml_index"],
                "uuid": d["uuid"],
                "mean_w_during_burst": round(watts[str(d["nvml_index"])], 1),
            }
            for d in devices
        ],
    }


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
