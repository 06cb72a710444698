"""The in-job energy sampler: its own process, sampling every probe at a fixed period.

Run as ``python -m evalwatt.sampling --out-dir DIR --pid PID``. It writes one Parquet trace
per probe that could open (``trace-gpu.parquet``, ``trace-cpu.parquet``,
``trace-cpu-est.parquet``) and ``sampler.json`` with what ran, what could not and why.
Traces are written to ``*.partial`` in row groups while sampling and renamed when the sampler
stops cleanly (SIGTERM or SIGINT): a killed sampler leaves no file that looks complete.

A job that runs several cells (a model job, a judge pass) asks for a new trace part after each
cell (``ROTATE_SIGNAL``): every counter is read at once, each trace is closed (footer written,
renamed) and the next part opened (``trace-gpu.part-0001.parquet``...), and ``sampler.json`` is
rewritten with the parts finished so far (``final`` false), so that a cell's energy survives a
later kill of the job. A job that never asks has one part, the files named as always.

It writes ``--ready-file`` (the unix time, atomically: a poller never reads it half-written)
after the first round of samples, so that the job's first mark falls inside the trace.

With ``--counter-period-s`` NVML's energy counter is read about once per that period (every
``counter_every_rounds`` rounds, recorded in the trace metadata and sampler.json; by default
every round), on the first round and on the last sample; power is read every round. A counter
read costs ~400 times a power read (benchmarks/sampler_cost.py), and the reader needs power
only to place window edges between counter reads, the counter fixing the total
(evalwatt.energy.trace).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evalwatt.base.atomic import write_text
from evalwatt.base.layout import SAMPLER_STATUS, trace_part_name
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.sampling.probes import (
    CpuTimeModelProbe,
    NvmlProbe,
    Probe,
    ProbeUnavailable,
    RaplProbe,
    parse_visible_devices,
)

_F = pa.float64()
_S = pa.string()
SCHEMAS = {
    "nvml": pa.schema(
        [
            ("t_unix", _F),
            ("device", _S),
            ("gpu_uuid", _S),
            ("energy_mj", _F),
            ("power_mw", _F),
            ("temp_c", _F),
            ("sm_mhz", _F),
            ("mem_mhz", _F),
            ("mem_used_mib", _F),
            ("util_gpu", _F),
        ]
    ),
    "rapl": pa.schema([("t_unix", _F), ("device", _S), ("energy_mj", _F), ("power_mw", _F)]),
    "cpu-model": pa.schema(
        [("t_unix", _F), ("device", _S), ("cpu_time_s", _F), ("est_energy_mj", _F)]
    ),
}
FLUSH_ROWS = 2000


@dataclass
class TraceWriter:
    """Buffers one probe's rows and appends them to a Parquet file in row groups."""

    path: Path
    schema: pa.Schema
    rows: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.writer = pq.ParquetWriter(self.partial, self.schema)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        self.count += len(rows)
        if len(self.rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows.clear()

    def close(self, metadata: dict[str, Any]) -> None:
        """Finish the file; the metadata lands in its footer, then the file gets its name."""
        self.flush()
        self.writer.add_key_value_metadata({"evalwatt.trace": json.dumps(metadata)})
        self.writer.close()
        os.replace(self.partial, self.path)


@dataclass
class PartedTrace:
    """One probe's trace, written in parts: each part a finished Parquet file (part 0 under
    the trace's usual name), the next opened when one is closed."""

    out_dir: Path
    source: str
    schema: pa.Schema
    finished: list[str] = field(default_factory=list)
    finished_rows: int = 0

    def __post_init__(self) -> None:
        self.current = self._open()

    def _open(self) -> TraceWriter:
        name = trace_part_name(self.source, len(self.finished))
        return TraceWriter(self.out_dir / name, self.schema)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.current.add(rows)

    def close_part(self, metadata: dict[str, Any], *, reopen: bool) -> None:
        """Finish the current part (its index in the footer), and open the next."""
        self.current.close({**metadata, "part": len(self.finished)})
        self.finished.append(self.current.path.name)
        self.finished_rows += self.current.count
        if reopen:
            self.current = self._open()

    def info(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """Its entry of sampler.json: the finished parts and their rows."""
        parts = {"parts": list(self.finished)} if len(self.finished) > 1 else {}
        return {"file": self.finished[0], **parts, "rows": self.finished_rows, **metadata}


# Seconds between samples of what explains a trace rather than measures it (GPU temperature,
# clocks, memory, utilisation): sampled every round they were most of the sampler's CPU
# (benchmarks/sampler_cost.py).
SLOW_PERIOD_S = 1.0
# Seconds between samples of the CPU-time model, whose process-tree walk (psutil reads the
# stat file of every process of the node) costs ~4 ms on an H100 node: the largest part of the
# sampler's CPU at one walk a second (docs/validation.md). Like every cumulative probe it is
# also sampled at each of the job's marks, so window edges stay exact.
CPU_MODEL_PERIOD_S = 5.0
# Seconds between scheduled reads of NVML's energy counter: one read costs ~4 ms of CPU on an
# H100, ~400 times a power read (docs/validation/h100-gpu-truth/nvml_calls.txt), so power is
# read every round and the counter about every COUNTER_PERIOD_S, plus once at each of the
# job's marks (``MARK_SIGNAL``): every window edge has a counter read within milliseconds, and
# power only has to place those milliseconds (docs/methodology.md). Reading the counter once a
# second without the reads at marks was off by up to 1 % on 4-5 s phases
# (tests/unit/test_counter_thinning.py): NVML's power lags the counter's steps.
COUNTER_PERIOD_S: float | None = 2.0
# Seconds between counter reads while the job evaluates (between DENSE_ON and DENSE_OFF): the
# generation window's marks come from Inspect's log afterwards, so no read is made at them and
# power places them between reads, NVML's power lagging the counter by 0.5-1 s. On the H100,
# reads every 0.5 s left the generation window 0.57 % off the counter (docs/validation.md);
# every 0.2 s costs ~2 % of a core while the job evaluates, every round 3.8 %.
DENSE_COUNTER_PERIOD_S = 0.2
# The signals a job sends the sampler when it stamps a mark (SamplerProcess.poke): read every
# counter now; and read now, then read the counter every DENSE_COUNTER_PERIOD_S (evaluation
# starts) or every COUNTER_PERIOD_S again (it ends).
MARK_SIGNAL = signal.SIGUSR1
DENSE_ON = signal.SIGRTMIN
DENSE_OFF = signal.SIGRTMIN + 1
# The signal a job sends to close the traces' current part and open the next one (a model
# job, after each cell: module docstring). Like the others, blocked from the sampler's first
# line and taken by its loop only.
ROTATE_SIGNAL = signal.SIGUSR2
SIGNALS = (MARK_SIGNAL, DENSE_ON, DENSE_OFF, ROTATE_SIGNAL)


def rounds_per(period_s: float, interval_s: float) -> int:
    """How many sampling rounds make ``period_s`` (at least one)."""
    return max(1, round(period_s / interval_s))


def open_probes(
    pid: int,
    watts_per_core: float,
    interval_s: float = 0.1,
    counter_period_s: float | None = COUNTER_PERIOD_S,
) -> tuple[list[Probe], dict[str, str]]:
    """Open every probe this machine supports; return them and the reasons for the others."""
    visible = parse_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    candidates: list[Probe] = [
        NvmlProbe(
            visible=visible,
            aux_every=rounds_per(SLOW_PERIOD_S, interval_s),
            counter_every=1
            if counter_period_s is None
            else rounds_per(counter_period_s, interval_s),
            dense_every=rounds_per(DENSE_COUNTER_PERIOD_S, interval_s),
        ),
        RaplProbe(),
        CpuTimeModelProbe(pid=pid, watts_per_core=watts_per_core),
    ]
    opened: list[Probe] = []
    unavailable: dict[str, str] = {}
    for probe in candidates:
        try:
            probe.open()
            opened.append(probe)
        except ProbeUnavailable as exc:
            unavailable[probe.source] = str(exc)
    return opened, unavailable


class _Stop:
    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_: Any) -> None:
        self.requested = True


@dataclass
class _Rounds:
    """What the sampler's status counts: its rounds, how late they were, reads on marks."""

    started: float = field(default_factory=time.time)
    count: int = 0
    lateness: list[float] = field(default_factory=list)
    on_mark: int = 0
    parts: int = 0


def _trace_metadata(probe: Probe, interval_s: float, every: int) -> dict[str, Any]:
    return {
        "source": probe.source,
        "domain": probe.domain,
        "is_estimate": probe.is_estimate,
        "interval_s": interval_s * every,
        **probe.metadata(),
    }


def _write_status(
    out_dir: Path,
    rounds: _Rounds,
    interval_s: float,
    traces: dict[str, dict[str, Any]],
    unavailable: dict[str, str],
    *,
    final: bool,
) -> dict[str, Any]:
    """Write sampler.json (atomically), checked through its model: a new metadata key fails
    here, in the sampler's own tests, not in a job."""
    status: dict[str, Any] = {
        "started_unix": rounds.started,
        "stopped_unix": time.time(),
        "final": final,
        "parts": rounds.parts,
        "interval_s": interval_s,
        "rounds": rounds.count,
        "late_rounds": len(rounds.lateness),
        "counter_reads_on_mark": rounds.on_mark,
        "max_late_s": max(rounds.lateness, default=0.0),
        "median_late_s": statistics.median(rounds.lateness) if rounds.lateness else 0.0,
        "traces": traces,
        "unavailable": unavailable,
    }
    checked = SamplerStatus.model_validate(status)
    write_text(out_dir / SAMPLER_STATUS, checked.model_dump_json(indent=2) + "\n")
    return status


def run(
    out_dir: Path,
    pid: int,
    interval_s: float,
    watts_per_core: float,
    ready_file: Path | None,
    counter_period_s: float | None = COUNTER_PERIOD_S,
) -> dict[str, Any]:
    """Sample until SIGTERM/SIGINT or until process ``pid`` is gone; NVML's energy counter
    about every ``counter_period_s`` (None: every round)."""
    stop = _Stop()
    # held pending until the loop waits for it: a mark during set-up is read at the first wait
    # (``python -m evalwatt.sampling`` blocks it before any thread starts); a no-op handler in
    # case a thread that does not block it takes it, so that it never ends the sampler
    for sig in SIGNALS:
        signal.signal(sig, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNALS))
    out_dir.mkdir(parents=True, exist_ok=True)
    probes, unavailable = open_probes(pid, watts_per_core, interval_s, counter_period_s)
    # the CPU-time model every CPU_MODEL_PERIOD_S, other probes every round (NVML reads its
    # energy counter every COUNTER_PERIOD_S itself, power every round); all at each mark
    every = {
        p.source: rounds_per(CPU_MODEL_PERIOD_S, interval_s) if p.source == "cpu-model" else 1
        for p in probes
    }
    writers = {p.source: PartedTrace(out_dir, p.source, SCHEMAS[p.source]) for p in probes}
    _warm_parquet_writer()

    def close_parts(final: bool) -> dict[str, Any]:
        meta = {p.source: _trace_metadata(p, interval_s, every[p.source]) for p in probes}
        for probe in probes:
            writers[probe.source].close_part(meta[probe.source], reopen=not final)
        traces = {p.source: writers[p.source].info(meta[p.source]) for p in probes}
        rounds.parts += 1
        return _write_status(out_dir, rounds, interval_s, traces, unavailable, final=final)

    rounds = _Rounds()
    next_t = time.monotonic()
    while not stop.requested:
        for probe in probes:
            if rounds.count % every[probe.source] == 0:
                writers[probe.source].add(probe.sample())
        rounds.count += 1
        if rounds.count == 1 and ready_file is not None:
            write_text(ready_file, f"{time.time()!r}\n")
        if rounds.count % 50 == 0 and not _alive(pid):
            break
        next_t += interval_s
        delay = next_t - time.monotonic()
        if delay <= 0:
            rounds.lateness.append(-delay)
            next_t = time.monotonic()
        while delay > 0 and not stop.requested:
            # sleeps until the next round, or reads every counter at once when the job marks
            got = signal.sigtimedwait(SIGNALS, delay)
            if got is not None:
                for probe in probes:
                    writers[probe.source].add(_read_now(probe))
                    if isinstance(probe, NvmlProbe) and got.si_signo in (DENSE_ON, DENSE_OFF):
                        probe.dense = got.si_signo == DENSE_ON
                rounds.on_mark += 1
                if got.si_signo == ROTATE_SIGNAL:  # the part ends on the read just made
                    close_parts(final=False)
            delay = next_t - time.monotonic()
    for probe in probes:  # a last sample of every probe (the counter too): the trace covers
        writers[probe.source].add(probe.sample(last=True))  # the job's end
    status = close_parts(final=True)
    for probe in probes:
        probe.close()
    return status


def _warm_parquet_writer() -> None:
    """Write one empty table to memory before sampling: pyarrow sets up its Parquet writing
    on the first table written (~0.8 s on a busy node), and the sampler's first write is
    otherwise at the first trace part's end, where it would hold the loop and leave a gap
    in the power samples right after a cell."""
    pq.write_table(pa.Table.from_pylist([], schema=SCHEMAS["nvml"]), pa.BufferOutputStream())


def _read_now(probe: Probe) -> list[dict[str, Any]]:
    """A cumulative reading of ``probe`` outside its schedule (NVML: the energy counter)."""
    if isinstance(probe, NvmlProbe):
        return probe.read_counter_now()
    return probe.sample()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _positive_seconds(text: str) -> float:
    """A finite, positive number: NaN would busy-loop the sampler, infinity never sample."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evalwatt.sampling", description=__doc__)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--pid", type=int, required=True, help="process tree to follow")
    parser.add_argument("--interval-s", type=_positive_seconds, default=0.1)
    parser.add_argument("--cpu-watts-per-core", type=_positive_seconds, default=10.0)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument(
        "--counter-period-s",
        type=_positive_seconds,
        default=COUNTER_PERIOD_S,
        help="read NVML's energy counter about this often (and at each mark the job "
        f"signals), power every round (default: {COUNTER_PERIOD_S} s)",
    )
    args = parser.parse_args(argv)
    run(
        args.out_dir,
        args.pid,
        args.interval_s,
        args.cpu_watts_per_core,
        args.ready_file,
        args.counter_period_s,
    )
    return 0
