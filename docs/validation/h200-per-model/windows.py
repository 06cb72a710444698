"""Each generation window of gpu_modes.py runs from their kept traces: duration, mean power,
SM clock and utilisation (NVML, 10 Hz, the job's own sampler), power by quarter of the
window; then, from each cell's Inspect log, when its requests were sent and answered (seconds
after the window's start): whether the client or the server made a window longer. Where the
servers logged each scheduling step (EVALWATT_HF_BATCHING_LOG=DEBUG, from the sixth session
of 2026-12-05 on), last the steps inside each window: how many, prefill and decode, and the
median time of a decode step at the cell's full batch (the time from one step's line to the
next), then the CUDA allocator's segments asked for and given back inside the window.

Run from the repository root with the gpu_modes.py --out folders, once their tgz files are
unpacked (`tar xzf F -C /` puts each back at /tmp/gpm-LABEL), e.g. busy2/windows.txt:
`.venv/bin/python docs/validation/h200-per-model/windows.py /tmp/gpm-busy2`. A cell's name
keeps its copy number (t64_2: the second copy of the t64 cell, `gpu_modes.py --tokens 64,64`).
"""

import datetime
import glob
import itertools
import json
import re
import statistics
import sys
from pathlib import Path
from statistics import fmean

import pyarrow.parquet as pq
from inspect_ai.log import read_eval_log


def trace(paths: list[str]) -> list[dict]:
    rows = [r for p in paths for r in pq.read_table(p).to_pylist()]
    return sorted(rows, key=lambda r: r["t_unix"])


def mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r[key] is not None]
    return fmean(values) if values else float("nan")


def cell_name(folder: str) -> str:
    """``llama-8b-random__synth_t64_2__t0__c64`` -> ``t64_2 c64`` (answer tokens and copy,
    connections); ``SmolLM2-135M-Instruct__humaneval_t64__t0__c16`` -> ``t64 c16``."""
    parts = folder.rsplit("/", 1)[1].split("__")
    return f"{parts[1].split('_', 1)[1]} {parts[3]}"


def run_name(run: str) -> str:
    """``/tmp/gpm-twin-pm/results/per-model-r1`` -> ``twin-pm per-model-r1``."""
    out, _, name = run.rsplit("/", 2)
    return f"{Path(out).name.removeprefix('gpm-')} {name}"


def cells() -> list[tuple[str, str, dict[str, float]]]:
    """(run folder, cell folder, the cell's marks) of every cell, run by run, each run's cells
    in the order they ran (a model job's order is what the twin cells are about); a cell
    whose job was stopped before its generation ended (a run cut at its time) is left out."""
    found = [
        (run, cell, json.loads(Path(f"{cell}/timeline.json").read_text())["marks"])
        for out in sys.argv[1:]
        for run in sorted(glob.glob(f"{out}/results/*-r*"))
        for cell in glob.glob(f"{run}/cells/*")
    ]
    ended = [c for c in found if "generation_end" in c[2]]
    return sorted(ended, key=lambda c: (c[0], c[2]["generation_start"]))


def requests() -> None:
    print("run / cell: requests sent from .. to, first / median / last answer (s after start)")
    for run, cell, marks in cells():
        logs = glob.glob(f"{cell}/eval/2*.eval")
        log = read_eval_log(logs[0]) if logs else None
        calls = [
            e for s in (log.samples or [] if log else []) for e in s.events if e.event == "model"
        ]
        if not calls:
            print(f"{run_name(run):22s} {cell_name(cell)}: no Inspect log with model calls")
            continue
        g0 = marks["generation_start"]
        sent = sorted(e.timestamp.timestamp() - g0 for e in calls)
        done = sorted(e.completed.timestamp() - g0 for e in calls if e.completed)
        print(
            f"{run_name(run):22s} {cell_name(cell)}: {sent[0]:5.2f} .. {sent[-1]:5.2f}, "
            f"{done[0]:5.2f} / {done[len(done) // 2]:5.2f} / {done[-1]:5.2f}"
        )


def warm_ups() -> None:
    """Each job's warm-up wave (``warm_up_*``, from 2026-12-05's fifth session on) and the
    stretch of its first serving: seconds, mean and peak W, the card's used memory (NVML)
    before the wave, at its peak and at its end."""
    print("run / job: warm-up s, mean W, peak W, memory MiB before / peak / end")
    for out in sys.argv[1:]:
        for run in sorted(glob.glob(f"{out}/results/*-r*")):
            own = glob.glob(f"{run}/models/*") + glob.glob(f"{run}/baselines/*")
            cell_jobs = [j for j in glob.glob(f"{run}/cells/*") if glob.glob(f"{j}/trace-gpu*")]
            for job in sorted(own) + sorted(cell_jobs):
                marks = json.loads(Path(f"{job}/timeline.json").read_text())["marks"]
                if "warm_up_start" not in marks:
                    continue
                a, b = marks["warm_up_start"], marks["warm_up_end"]
                rows = trace(glob.glob(f"{job}/trace-gpu*.parquet"))
                before = [r for r in rows if r["t_unix"] < a]
                w = [r for r in rows if a <= r["t_unix"] <= b]
                if not w or not before:
                    print(f"{run_name(run):22s} {Path(job).name[-24:]}: no samples in the wave")
                    continue
                memory = [r["mem_used_mib"] for r in w if r["mem_used_mib"] is not None]
                print(
                    f"{run_name(run):22s} {Path(job).name[-24:]}: {b - a:5.2f} s "
                    f"{mean(w, 'power_mw') / 1000:5.0f} W "
                    f"{max(r['power_mw'] for r in w) / 1000:5.0f} W "
                    f"{before[-1]['mem_used_mib']} / {max(memory, default=None)} / "
                    f"{w[-1]['mem_used_mib']}"
                )


def windows() -> None:
    print("run / cell: generation s, mean W, SM MHz, util %, W by quarter")
    for run, cell, marks in cells():
        packed = glob.glob(f"{run}/models/*/trace-gpu*.parquet")
        rows = trace(packed or [f"{cell}/trace-gpu.parquet"])
        a, b = marks["generation_start"], marks["generation_end"]
        w = [r for r in rows if a <= r["t_unix"] <= b]
        edges = [a + (b - a) * i / 4 for i in range(5)]  # by time, every row in one quarter
        quarters = ", ".join(
            f"{mean([r for r in w if lo <= r['t_unix'] <= hi], 'power_mw') / 1000:.0f}"
            for lo, hi in itertools.pairwise(edges)
        )
        print(
            f"{run_name(run):22s} {cell_name(cell)}: {b - a:6.2f} s "
            f"{mean(w, 'power_mw') / 1000:6.1f} W {mean(w, 'sm_mhz'):5.0f} MHz "
            f"{mean(w, 'util_gpu'):5.1f} % [{quarters}]"
        )


STEP = re.compile(
    r"^(\S+ \S+) - ContinuousBatchingLogger - DEBUG - Scheduled: (\d+), Waiting: (\d+), "
    r"Active: (\d+)\. cum Q: (\d+)"
)
ALLOCATOR = re.compile(
    r"^(\S+ \S+) - ContinuousBatchingLogger - DEBUG - allocator cuda:0: num_device_alloc (\d+), "
    r"num_device_free (\d+), num_alloc_retries (\d+)"
)


def log_lines(log: str, pattern: re.Pattern[str]) -> list[tuple[float, ...]]:
    """(unix time, the line's numbers...) of every line of ``log`` that ``pattern`` matches;
    the library's log times are UTC on the device machines."""
    found = []
    for line in Path(log).read_text(errors="replace").splitlines():
        if m := pattern.match(line):
            when = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f")
            utc = when.replace(tzinfo=datetime.UTC).timestamp()
            found.append((utc, *(int(x) for x in m.groups()[1:])))
    return found


def steps() -> None:
    print(
        "run / cell: steps (prefill, decode) in the window, decode s, median decode step "
        "at the full batch; allocator segments +alloc/+free/+retries in the window"
    )
    for run, cell, marks in cells():
        log = f"{cell}/server.log"
        if not Path(log).exists():
            log = glob.glob(f"{run}/models/*/server.log")[0]
        a, b = marks["generation_start"], marks["generation_end"]
        lines = [s for s in log_lines(log, STEP) if a - 0.5 <= s[0] <= b + 0.2]
        if not lines:
            print(f"{run_name(run):22s} {cell_name(cell)}: no scheduling steps logged")
            continue
        gaps = (n[0] - s[0] for s, n in itertools.pairwise(lines))
        timed = list(zip(lines, gaps, strict=False))  # the last line starts no timed step
        decode = [(s, dt) for s, dt in timed if s[4] == s[1]]  # one query token per request
        batch = int(cell.rsplit("__c", 1)[1])
        full = [dt for s, dt in decode if s[1] == batch]
        memory = [m for m in log_lines(log, ALLOCATOR) if m[0] <= b]
        inside = [m for m in memory if m[0] >= a]
        moved = "no allocator lines"
        if memory:
            start = ([m for m in memory if m[0] < a] or memory[:1])[-1]
            end = (inside or [start])[-1]
            moved = "/".join(f"+{y - x}" for x, y in zip(start[1:], end[1:], strict=True))
        print(
            f"{run_name(run):22s} {cell_name(cell)}: {len(lines):3d} "
            f"({len(timed) - len(decode):2d}, {len(decode):3d}) "
            f"{sum(dt for _, dt in decode):5.2f} s, "
            f"{statistics.median(full) * 1000 if full else float('nan'):4.0f} ms at {batch}; "
            f"allocator {moved}"
        )


if __name__ == "__main__":
    warm_ups()
    windows()
    requests()
    steps()
