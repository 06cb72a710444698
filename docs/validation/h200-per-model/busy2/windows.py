"""Each generation window of the busy2 run from its kept traces: duration, mean power, SM
clock and utilisation (NVML, 10 Hz, the job's own sampler), power by quarter of the window.

Run from the repository root, after `tar xzf docs/validation/h200-per-model/busy2/gpm-busy2.tgz
-C /`: `.venv/bin/python docs/validation/h200-per-model/busy2/windows.py` (windows.txt).
"""

import glob
import json
from pathlib import Path
from statistics import fmean

import pyarrow.parquet as pq

ROOT = "/tmp/gpm-busy2/results"


def trace(paths: list[str]) -> list[dict]:
    rows = [r for p in paths for r in pq.read_table(p).to_pylist()]
    return sorted(rows, key=lambda r: r["t_unix"])


def mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r[key] is not None]
    return fmean(values) if values else float("nan")


def cell_name(folder: str) -> str:
    """``llama-8b-random__synth_t32__t0__c64`` -> ``t32 c64`` (answer tokens, connections)."""
    parts = folder.rsplit("/", 1)[1].split("__")
    return f"{parts[1].rsplit('_', 1)[1]} {parts[3]}"


def main() -> None:
    print("run / cell: generation s, mean W, SM MHz, util %, W by quarter")
    for run in sorted(glob.glob(f"{ROOT}/*-r*")):
        for cell in sorted(glob.glob(f"{run}/cells/*")):
            marks = json.loads(Path(f"{cell}/timeline.json").read_text())["marks"]
            packed = glob.glob(f"{run}/models/*/trace-gpu*.parquet")
            rows = trace(packed or [f"{cell}/trace-gpu.parquet"])
            a, b = marks["generation_start"], marks["generation_end"]
            w = [r for r in rows if a <= r["t_unix"] <= b]
            q = max(1, len(w) // 4)
            quarters = [round(mean(w[i * q : (i + 1) * q], "power_mw") / 1000) for i in range(4)]
            print(
                f"{run.rsplit('/', 1)[1]:13s} {cell_name(cell)}: {b - a:6.2f} s "
                f"{mean(w, 'power_mw') / 1000:6.1f} W {mean(w, 'sm_mhz'):5.0f} MHz "
                f"{mean(w, 'util_gpu'):5.1f} % {quarters}"
            )


if __name__ == "__main__":
    main()
