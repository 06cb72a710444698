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
import signal
import threading
import time
from pathlib import Path
from typing import Any

from evalwatt.base.layout import JOB_SCRIPT, JOB_SPEC, JobFiles
from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.contracts.spec import JobSpec
from evalwatt.runtime import inspect_steps, packed
from evalwatt.runtime.backends import Backend
from evalwatt.runtime.job_host import host_fields, prepare_job_dir
from evalwatt.runtime.offline import require_staged
from evalwatt.runtime.outcome import (
    Outcome,
    evaluate,
    outcome_fields,
    stamp_generation,
    stamp_steady,
)
from evalwatt.runtime.server import Server, kill_live_servers
from evalwatt.runtime.serving import pad, served
from evalwatt.runtime.timeline import Timeline
from evalwatt.sampling.process import SamplerProcess

__all__ = ["BASELINE_HOLD_S", "Timeline", "main", "run_job"]

# Seconds a baseline holds its loaded model idle after Inspect's import: about what a cell's
# evaluation spends around its generation (task and dataset loading, log writing: 2.5-3.5 s
# on the H100 runs), so that the two jobs' loaded seconds match and the corrected whole-job
# method takes the baseline's shutdown and load overheads from the cell whole (its error is
# overhead x (1 - cell's loaded s / baseline's loaded s): evalwatt.energy.corrected).
BASELINE_HOLD_S = 3.0


def _work(
    spec: JobSpec, timeline: Timeline, server: Server, files: JobFiles, engine: Backend
) -> Outcome:
    """The job's middle: generation (cell) or judging (judge); nothing for a baseline."""
    # Inspect's import (~3 s on an H100 node) at loaded idle, outside the inference window, in
    # every kind of job: a baseline then differs from its cell by the generation alone (the
    # corrected whole-job method subtracts like with like).
    import inspect_ai  # noqa: F401

    if spec.evaluation is not None:
        return evaluate(spec.evaluation, spec.model, timeline, server.url, files, engine)
    if spec.judging is not None:
        (target,) = spec.judging.cells  # a cell's judge job: one cell, in its own folder
        cell = read_contract(JobResult, target.cell_result)
        if cell.generation is None:
            raise ValueError(f"{target.cell_result}: the cell job recorded no generation")
        timeline.mark(Mark.JUDGING_START)
        judged = inspect_steps.run_scoring(
            cell.generation.log,
            files.judged_log,
            judge=inspect_steps.JudgeModel(spec.judging, spec.model, server.url),
        )
        timeline.mark(Mark.JUDGING_END)
        return Outcome(
            scoring=inspect_steps.summarize_log(judged),
            calls_log=judged,
            calls_within=(Mark.JUDGING_START, Mark.JUDGING_END),
        )
    time.sleep(BASELINE_HOLD_S)  # a baseline: as long loaded and idle as a cell's Inspect work
    return Outcome()


def run_job(spec: JobSpec) -> JobResult:
    """Run one job described by a spec; return (and write) its result. A model job and a
    judge pass run their cells in turn (runtime.packed); a cell's judge job, a judge pass of
    that one cell in the cell's judged folder, runs here and writes that cell's result."""
    if spec.kind == "model":
        return packed.run_model_job(spec)
    if spec.judging is not None and not _judge_job(spec):
        return packed.run_judge_pass(spec)
    # before anything is moved or started: an unstaged dataset fails now, with the command to
    # run, not after the libraries' offline retries (about 5 minutes)
    require_staged(spec)
    files = JobFiles(spec.run_dir)
    prepare_job_dir(files)
    timeline = Timeline(files.timeline)
    sampler = SamplerProcess(files.root, spec.sampler.interval_s, spec.sampler.cpu_watts_per_core)
    timeline.on_mark = sampler.poke
    outcome = Outcome()
    try:
        timeline.mark(Mark.JOB_START)
        with served(spec, files, timeline) as serving:
            spec = serving.spec
            outcome = _work(spec, timeline, serving.server, files, serving.engine)
        # read once the server has stopped, at cold idle: the cell's model calls, stamped at
        # the times Inspect recorded (no counter read asked: these marks are in the past)
        outcome.generation_window = stamp_generation(timeline, outcome)
        if spec.evaluation is not None:
            assert outcome.generation is not None
            outcome.steady_window = stamp_steady(
                timeline, outcome.generation.log, spec.evaluation.max_connections
            )
            if spec.evaluation.score_in_job:
                timeline.mark(Mark.SCORING_START)
                scored = inspect_steps.run_scoring(outcome.generation.log, files.scored_log)
                timeline.mark(Mark.SCORING_END)
                outcome.scoring = inspect_steps.summarize_log(scored)
        pad_s = pad(spec.pad, timeline)
        timeline.mark(Mark.JOB_END)
    finally:
        sampler.stop()
    result = JobResult(
        kind="judge" if spec.kind == "judge-pass" else spec.kind,
        job_id=spec.job_id,
        run=spec.run,
        **outcome_fields(outcome, timeline.marks, serving.exit_code),
        pad_requested_s=pad_s,
        server=serving.record(),
        sampler=SamplerStatus.model_validate_json(files.sampler_status.read_text("utf-8")),
        spec=spec,
        **host_fields(),
    )
    write_contract(files.result, result)
    return result


def _judge_job(spec: JobSpec) -> bool:
    """A cell's judge job: a judge pass of one cell whose judged folder is its own."""
    assert spec.judging is not None
    cells = spec.judging.cells
    return len(cells) == 1 and cells[0].run_dir == spec.run_dir


SIGTERM_GRACE_S = 20.0
"""How long a job stopped by SIGTERM may take to unwind before it ends at once: under Slurm's
default KillWait (30 s), after which Slurm would SIGKILL it anyway."""


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """Slurm (time limit, scancel) and Snakemake stop jobs with SIGTERM: unwind, so that the
    server (its own process group) and the sampler are stopped by the ``finally`` blocks.

    A SystemExit raised inside Inspect's event loop can leave the loop waiting forever for a
    task it interrupted (seen once in a model job, between two cells): a watchdog then kills
    the server and ends the process. Finished cells' results are already on disk (written
    atomically), and the sampler ends with the job's process (it watches its pid)."""
    watchdog = threading.Timer(SIGTERM_GRACE_S, _end_now, args=(128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    raise SystemExit(128 + signum)


def _end_now(code: int) -> None:
    kill_live_servers()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    import argparse

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(prog="evalwatt job", description=__doc__)
    parser.add_argument("spec", type=Path, help=f"{JOB_SPEC} written next to {JOB_SCRIPT}")
    args = parser.parse_args(argv)
    result = run_job(read_contract(JobSpec, args.spec))
    # a model job or judge pass whose cell failed: its other cells' results are kept, and
    # Snakemake and Slurm see the failure
    return 1 if any(cell.status == "failed" for cell in result.cells) else 0
