"""The job runtime: what one rendered job does, whoever started it.

The same code runs under ``bash job.sbatch``, ``sbatch job.sbatch``, a Snakemake rule (local
or through the Slurm executor) or submitit: it reads ``spec.json`` and nothing from the
executor. The phases, each stamped in ``timeline.json`` (unix seconds)::

    job_start  load_start  ready  [inference_start  (generation_start  generation_end)
               inference_end]  exit  [scoring_start  scoring_end]  pad_start  pad_end  job_end

* a *cell* runs its Inspect evaluation between ``inference_start`` and ``inference_end``;
  the model generates between ``generation_start`` (first request sent) and
  ``generation_end`` (last response received), read from Inspect's log once the server has
  stopped and stamped at the times the log gives (the headline window);
* a *baseline* (load-only) has no inference: it measures loading and shutdown;
* a *judge* job scores a cell's log with the judge model between ``judging_start`` and
  ``judging_end`` (in place of the inference marks), the judge generating between its own
  ``generation_*`` marks.

The energy sampler runs for the whole job in its own process. If the job would end before
the cluster's accounting window (plus a margin), it sleeps the rest *after* the server has
stopped, between ``pad_start`` and ``pad_end``, so that the padding is measured like any other
phase and can be subtracted. ``result.json`` is written last, atomically: its presence means
the job finished.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from evalwatt import __version__
from evalwatt.base.layout import JOB_SCRIPT, JOB_SPEC, SERVER_LOG, JobFiles
from evalwatt.base.model_path import resolve_model_path
from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import (
    EvalSummary,
    GenerationWindow,
    JobResult,
    ServerMetrics,
    ServerRun,
)
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.contracts.spec import JobSpec
from evalwatt.contracts.timeline import TimelineFile
from evalwatt.runtime import inspect_steps
from evalwatt.runtime.backends import Backend, ServerPaths, backend
from evalwatt.runtime.offline import require_staged
from evalwatt.runtime.server import Server, free_port, server_temp
from evalwatt.runtime.vllm_metrics import WindowCounters
from evalwatt.sampling.process import SamplerProcess

SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "SLURM_CPUS_PER_TASK",
    "SLURM_GPUS",
    "SLURM_JOB_GPUS",
    "SLURM_STEP_ID",
    "SLURM_CLUSTER_NAME",
)


@dataclass
class Timeline:
    """Phase marks of one job, rewritten atomically after each mark."""

    path: Path
    marks: dict[Mark, float] = field(default_factory=dict)
    # called after each mark stamped now: the sampler reads the energy counter at once
    on_mark: Callable[[str], None] | None = None

    def mark(self, name: Mark | str, at: float | None = None) -> float:
        mark = Mark(name)
        if mark in self.marks:
            raise ValueError(f"mark {mark.value!r} set twice")
        self.marks[mark] = time.time() if at is None else at
        if at is None and self.on_mark is not None:
            self.on_mark(mark.value)
        write_contract(self.path, TimelineFile(marks=self.marks))
        return self.marks[mark]


# Seconds into the pad after which the GPUs are at cold idle: after the server exits, an H100's
# power decays for a few seconds (88-92 W over the first 5 s, 74 W after: docs/validation.md),
# so the cold-idle power is measured from ``pad_settled`` on.
PAD_SETTLE_S = 3.0
# Seconds a baseline holds its loaded model idle after Inspect's import: about what a cell's
# evaluation spends around its generation (task and dataset loading, log writing: 2.5-3.5 s
# on the H100 runs), so that the two jobs' loaded seconds match and the corrected whole-job
# method takes the baseline's shutdown and load overheads from the cell whole (its error is
# overhead x (1 - cell's loaded s / baseline's loaded s): evalwatt.energy.corrected).
BASELINE_HOLD_S = 3.0


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"evalwatt": __version__, "python": platform.python_version()}
    for dist in ("inspect-ai", "inspect-evals", "vllm", "llama-cpp-python", "nvidia-ml-py"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _set_aside_previous_attempt(files: JobFiles) -> None:
    """Keep what a failed earlier attempt left, for the record, out of this attempt's way."""
    if files.root.exists() and any(files.root.iterdir()):
        files.root.rename(files.attempt(time.strftime("%Y%m%dT%H%M%S")))


def _server_argv(spec: JobSpec, port: int, path: str) -> list[str]:
    argv = [w.replace("{port}", str(port)).replace("{model_path}", path) for w in spec.server.argv]
    # The executable may name a variable (vllm.executable: $VENV/bin/vllm), as weights may.
    executable = os.path.expandvars(argv[0])
    if shutil.which(executable) is None:  # at once, with its name, not a bare traceback
        raise FileNotFoundError(
            f"{spec.server.argv[0]}: no server executable at {executable!r} on this node"
            + (" (vllm.executable in the config)" if spec.server.settings.executable else "")
        )
    return [executable, *argv[1:]]


@dataclass
class _Outcome:
    generation: EvalSummary | None = None
    scoring: EvalSummary | None = None
    server_metrics: ServerMetrics | None = None
    # the Inspect log whose model calls bound the generation, and the window they fall in
    calls_log: Path | None = None
    calls_within: tuple[Mark, Mark] | None = None
    generation_window: GenerationWindow | None = None


def _work(
    spec: JobSpec, timeline: Timeline, server: Server, files: JobFiles, engine: Backend
) -> _Outcome:
    """The job's middle: generation (cell) or judging (judge); nothing for a baseline."""
    # Inspect's import (~3 s on an H100 node) at loaded idle, outside the inference window, in
    # every kind of job: a baseline then differs from its cell by the generation alone (the
    # corrected whole-job method subtracts like with like).
    import inspect_ai  # noqa: F401

    if spec.evaluation is not None:
        counters = WindowCounters(
            engine.prometheus_metrics, engine.name, server.url, files, spec.model.served_name
        )
        counters.read("before")  # outside the window, like the import
        timeline.mark(Mark.INFERENCE_START)
        log = inspect_steps.run_generation(spec.evaluation, spec.model, server.url, files.eval_dir)
        timeline.mark(Mark.INFERENCE_END)
        counters.read("after")
        return _Outcome(
            generation=inspect_steps.summarize_log(log),
            server_metrics=counters.result(),
            calls_log=log,
            calls_within=(Mark.INFERENCE_START, Mark.INFERENCE_END),
        )
    if spec.judging is not None:
        cell = read_contract(JobResult, spec.judging.cell_result)
        if cell.generation is None:
            raise ValueError(f"{spec.judging.cell_result}: the cell job recorded no generation")
        timeline.mark(Mark.JUDGING_START)
        judged = inspect_steps.run_scoring(
            cell.generation.log,
            files.judged_log,
            judge=inspect_steps.JudgeModel(spec.judging, spec.model, server.url),
        )
        timeline.mark(Mark.JUDGING_END)
        return _Outcome(
            scoring=inspect_steps.summarize_log(judged),
            calls_log=judged,
            calls_within=(Mark.JUDGING_START, Mark.JUDGING_END),
        )
    time.sleep(BASELINE_HOLD_S)  # a baseline: as long loaded and idle as a cell's Inspect work
    return _Outcome()


def _stamp_generation(timeline: Timeline, outcome: _Outcome) -> GenerationWindow | None:
    """Stamp ``generation_start`` and ``generation_end`` from the Inspect log's model calls
    (inspect_steps.generation_window); absent, with the reason kept in the result, where the
    log gives none. None for a baseline."""
    if outcome.calls_log is None or outcome.calls_within is None:
        return None
    window = inspect_steps.generation_window(
        outcome.calls_log, outcome.calls_within, timeline.marks
    )
    if window.start is not None and window.end is not None:
        timeline.mark(Mark.GENERATION_START, window.start)
        timeline.mark(Mark.GENERATION_END, window.end)
    return window


def _problems(outcome: _Outcome, exit_code: int) -> list[str]:
    """What a reader must know before using this job's numbers."""
    problems = []
    gen = outcome.generation
    if gen is not None and gen.samples_completed != gen.samples_total:
        problems.append(f"{gen.samples_completed} of {gen.samples_total} samples completed")
    window = outcome.generation_window
    if window is not None and window.null_reason is not None:
        problems.append(f"no generation window, so no headline energy: {window.null_reason}")
    if exit_code == -signal.SIGKILL:
        problems.append("the server ignored SIGTERM and was killed: its shutdown is not typical")
    return problems


def run_job(spec: JobSpec) -> JobResult:
    """Run one job described by a spec; return (and write) its result."""
    # before anything is moved or started: an unstaged dataset fails now, with the command to
    # run, not after the libraries' offline retries (about 5 minutes)
    require_staged(spec)
    files = JobFiles(spec.run_dir)
    _set_aside_previous_attempt(files)
    # Inspect writes its traces and sample buffer under XDG_DATA_HOME (platformdirs): keep
    # them with the job, never in the home directory (unless the user chose a place)
    os.environ.setdefault("XDG_DATA_HOME", str(files.inspect_data))
    files.root.mkdir(parents=True, exist_ok=True)
    timeline = Timeline(files.timeline)
    sampler = SamplerProcess(files.root, spec.sampler.interval_s, spec.sampler.cpu_watts_per_core)
    timeline.on_mark = sampler.poke
    outcome = _Outcome()
    try:
        timeline.mark(Mark.JOB_START)
        port = free_port()
        engine = backend(spec.model.backend)
        # a server pinned to its weights (hf) is named by their id, by its command and clients
        model, weights = engine.on_node(spec.model, resolve_model_path(spec.model.path))
        spec = spec.model_copy(update={"model": model})
        argv = _server_argv(spec, port, weights)
        # Everything the server writes stays in the job's folder or the run's cache: nothing
        # in /tmp or the home directory (backends.ServerPaths).
        with server_temp(files.server_tmp) as tmp:
            paths = ServerPaths(tmp=tmp, cache=files.run_cache)
            server_env = engine.server_env(spec.server.settings, paths)
            timeline.mark(Mark.LOAD_START)
            server = Server.start(argv, "127.0.0.1", port, files.server_log, env=server_env)
            try:
                ready = server.wait_ready(
                    spec.ready_timeout_s, spec.model.served_name, listed=engine.lists_model
                )
                timeline.mark(Mark.READY, ready)
                outcome = _work(spec, timeline, server, files, engine)
            finally:
                code = server.stop()
                timeline.mark(Mark.EXIT)
        # read once the server has stopped, at cold idle: the cell's model calls, stamped at
        # the times Inspect recorded (no counter read asked: these marks are in the past)
        outcome.generation_window = _stamp_generation(timeline, outcome)
        if spec.evaluation is not None and spec.evaluation.score_in_job:
            assert outcome.generation is not None
            timeline.mark(Mark.SCORING_START)
            scored = inspect_steps.run_scoring(outcome.generation.log, files.scored_log)
            timeline.mark(Mark.SCORING_END)
            outcome.scoring = inspect_steps.summarize_log(scored)
        pad = spec.pad.sleep_s(time.time() - timeline.marks[Mark.JOB_START])
        timeline.mark(Mark.PAD_START)
        settle = min(pad, PAD_SETTLE_S)
        time.sleep(settle)
        if pad > settle:
            timeline.mark(Mark.PAD_SETTLED)
            time.sleep(pad - settle)
        timeline.mark(Mark.PAD_END)
        timeline.mark(Mark.JOB_END)
    finally:
        sampler.stop()
    problems = _problems(outcome, code)
    result = JobResult(
        kind=spec.kind,
        job_id=spec.job_id,
        run=spec.run,
        status=JobStatus.INCOMPLETE if problems else JobStatus.OK,
        problems=tuple(problems),
        marks=timeline.marks,
        pad_requested_s=pad,
        server=ServerRun(
            argv=tuple(argv), env=server_env, port=port, exit_code=code, log_file=SERVER_LOG
        ),
        generation=outcome.generation,
        scoring=outcome.scoring,
        server_metrics=outcome.server_metrics,
        generation_window=outcome.generation_window,
        sampler=SamplerStatus.model_validate_json(files.sampler_status.read_text("utf-8")),
        host=socket.gethostname(),
        scheduler_job_id=os.environ.get("SLURM_JOB_ID"),
        slurm={k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        versions=_versions(),
        spec=spec,
    )
    write_contract(files.result, result)
    return result


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """Slurm (time limit, scancel) and Snakemake stop jobs with SIGTERM: unwind, so that the
    server (its own process group) and the sampler are stopped by the ``finally`` blocks."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    import argparse

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="evalwatt job", description=__doc__)
    parser.add_argument("spec", type=Path, help=f"{JOB_SPEC} written next to {JOB_SCRIPT}")
    args = parser.parse_args(argv)
    run_job(read_contract(JobSpec, args.spec))
    return 0
