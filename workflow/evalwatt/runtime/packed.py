"""Jobs that measure several cells with one model load: the model job and the judge pass.

A *model job* (per-model execution) serves its model once and runs each of its cells in
turn, every cell in its own windows, as the job's folder records them::

    job_start  load_start  ready  reference_idle_start  reference_idle_end
      per cell: cooldown_start  cooldown_end  inference_start  (generation_start  steady_*
                generation_end)  inference_end  [scoring_start  scoring_end]
    exit  pad_start  pad_end  job_end

* the reference idle holds the loaded model idle (the in-job baseline, in the same CUDA state
  as the cells); the cooldown before each cell waits for the GPUs' power to come back near it
  (runtime.cooldown);
* each cell is one single-task ``eval()`` (Inspect's ``max_connections`` limiter is per
  ``eval()`` call, the first task's limit winning in a call of several);
* at loaded idle after each cell, its generation and steady windows are read from its log,
  it is scored if it is scored in-job, the sampler finishes a trace part, and the cell's
  result is written in its own folder (``cells/<cell>/``, kind ``cell``, ``packed_in`` the
  job's folder, where the traces are): a later kill of the job leaves it whole;
* a cell already done with the same spec is skipped, its files untouched; a cell that fails
  is recorded in the job's ``cells`` and the next one runs; the job exits 1 at the end when
  one failed, once its own result is written.

A *judge pass* serves a judge once and scores the logs of its cells in turn, each between
its cell's ``judging_*`` marks, writing each cell's judge result (``judges/<cell>/``, kind
``judge``, ``packed_in``) as it ends; no reference idle, no cooldown.

A cell's marks are the job's marks so far (its load and reference idle) followed by its own;
the job's own result keeps its marks (``exit``, ``pad_*``, ``job_end``) and each cell's
outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.contracts.contract import ContractError, read_contract, write_contract
from evalwatt.contracts.result import JobResult, PackedOutcome, finished_result
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.contracts.spec import JobSpec, JudgedCell, PackedCell
from evalwatt.runtime import inspect_steps
from evalwatt.runtime.backends import backend
from evalwatt.runtime.cooldown import JobGpus, cool_down, hold_reference_idle
from evalwatt.runtime.job_host import host_fields, prepare_job_dir, set_aside_previous_attempt
from evalwatt.runtime.offline import require_staged
from evalwatt.runtime.outcome import (
    Outcome,
    evaluate,
    outcome_fields,
    stamp_generation,
    stamp_steady,
)
from evalwatt.runtime.serving import Serving, pad, served
from evalwatt.runtime.timeline import Timeline
from evalwatt.sampling.process import SamplerProcess

Temperatures = dict[Mark, tuple[float, ...]]


def is_done(result_path: Path, spec: JobSpec) -> bool:
    """Whether ``result_path`` holds a finished result (``finished_result``) of exactly
    ``spec``: such a cell is not run again."""
    result = finished_result(result_path)
    return result is not None and result.spec == spec


@dataclass
class _Job:
    """What the cells of one job share: its server, folder, timeline, sampler and GPUs, and
    each cell's outcome so far."""

    serving: Serving
    files: JobFiles
    timeline: Timeline
    sampler: SamplerProcess
    gpus: JobGpus
    temperatures: Temperatures = field(default_factory=dict)
    outcomes: list[PackedOutcome] = field(default_factory=list)

    def cell_timeline(self, files: JobFiles) -> Timeline:
        """A fresh folder for a cell (an earlier attempt's files set aside) and its timeline,
        which starts with the job's marks so far."""
        set_aside_previous_attempt(files)
        files.root.mkdir(parents=True, exist_ok=True)
        return self.timeline.branch(files.timeline)

    def finish_cell(self, files: JobFiles, **fields: Any) -> None:
        """End a cell: the sampler finishes its trace part (and says so) before the cell's
        result is written, so that a result on disk always has its energy in finished
        parts; then the result, atomically."""
        self.sampler.rotate()
        result = JobResult(
            run=self.serving.spec.run,
            pad_requested_s=0.0,
            server=self.serving.record(),
            packed_in=self.files.root,
            sampler=None,
            **fields,
            **host_fields(),
        )
        write_contract(files.result, result)
        self.record(result.job_id, result.status.value, files.result)

    def record(
        self, cell_id: str, status: str, result: Path | None, error: str | None = None
    ) -> None:
        self.outcomes.append(
            PackedOutcome.model_validate(
                {"cell_id": cell_id, "status": status, "result": result, "error": error}
            )
        )

    def failed(self, cell_id: str, exc: BaseException) -> None:
        self.record(cell_id, "failed", None, f"{type(exc).__name__}: {exc}")


def _cell_folders(spec: JobSpec) -> list[Path]:
    if spec.pack is not None:
        return [cell.run_dir for cell in spec.pack.cells]
    assert spec.judging is not None
    return [cell.run_dir for cell in spec.judging.cells]


def _pointed_at(spec: JobSpec) -> bool:
    """Whether a cell result of this job on disk points into its folder (``packed_in``): an
    earlier attempt finished that cell, whose energy is in that attempt's files."""
    root = Path(spec.run_dir)
    for folder in _cell_folders(spec):
        try:
            packed_in = read_contract(JobResult, JobFiles(folder).result).packed_in
        except ContractError:
            continue
        if packed_in is not None and (packed_in == root or root in packed_in.parents):
            return True
    return False


def _job_files(spec: JobSpec) -> JobFiles:
    """This attempt's folder: the job's own, an earlier attempt set aside as in every job;
    or, where cells kept from an earlier attempt point at its files, a ``rerun-<time>/``
    inside it, so that nothing they point at moves."""
    files = JobFiles(spec.run_dir)
    if not _pointed_at(spec):
        prepare_job_dir(files)
        return files
    rerun = files.rerun(time.strftime("%Y%m%dT%H%M%S"))
    prepare_job_dir(rerun)
    return rerun


def _run(spec: JobSpec, cells: Callable[[_Job], None]) -> JobResult:
    """A job of several cells: sampler, server once, ``cells`` at loaded idle (after
    Inspect's import, outside every window), server stop, pad; its own result."""
    files = _job_files(spec)
    timeline = Timeline(files.timeline)
    sampler = SamplerProcess(files.root, spec.sampler.interval_s, spec.sampler.cpu_watts_per_core)
    timeline.on_mark = sampler.poke
    gpus = JobGpus.open()
    try:
        timeline.mark(Mark.JOB_START)
        with served(spec, files, timeline) as serving:
            job = _Job(serving, files, timeline, sampler, gpus)
            import inspect_ai  # noqa: F401

            cells(job)
        pad_s = pad(spec.pad, timeline)
        timeline.mark(Mark.JOB_END)
    finally:
        sampler.stop()
        gpus.close()
    return _job_result(job, pad_s)


def _job_result(job: _Job, pad_s: float) -> JobResult:
    """The job's own result: its marks, each cell's outcome, its sampler's final status."""
    problems = tuple(f"cell {o.cell_id} failed: {o.error}" for o in job.outcomes if o.error)
    spec = job.serving.spec
    own = JobFiles(spec.run_dir)
    result = JobResult(
        kind=spec.kind,
        job_id=spec.job_id,
        run=spec.run,
        status=JobStatus.INCOMPLETE if problems else JobStatus.OK,
        problems=problems,
        marks=job.timeline.marks,
        pad_requested_s=pad_s,
        server=job.serving.record(),
        generation=None,
        scoring=None,
        temperatures_c=job.temperatures,
        cells=tuple(job.outcomes),
        packed_in=None if job.files.root == own.root else job.files.root,
        sampler=SamplerStatus.model_validate_json(job.files.sampler_status.read_text("utf-8")),
        spec=spec,
        **host_fields(),
    )
    write_contract(own.result, result)
    return result


def run_model_job(spec: JobSpec) -> JobResult:
    """Run a model job (module docstring); return (and write) its own result."""
    pack = spec.pack
    assert pack is not None
    _require_one_sampling(spec)
    for cell in pack.cells:  # every cell's dataset staged, before anything starts
        require_staged(spec.packed_cell_spec(cell))

    def cells(job: _Job) -> None:
        reference_w = hold_reference_idle(
            job.gpus, pack.reference_idle_s, job.timeline, job.temperatures
        )
        for cell in pack.cells:
            _run_cell(job, cell, reference_w)

    return _run(spec, cells)


def _require_one_sampling(spec: JobSpec) -> None:
    """Refuse, before the server starts, a model job whose cells differ in sampling settings
    on a server that keeps its first request's (the planner never packs them so): all but
    the first setting would be measured and scored at the first one's."""
    assert spec.pack is not None
    if not backend(spec.model.backend).keeps_first_sampling:
        return
    settings = {c.evaluation.sampling_key for c in spec.pack.cells}
    if len(settings) > 1:
        raise ValueError(
            f"model job {spec.job_id}: its cells have sampling settings (temperature, top_p) "
            f"{sorted(settings, key=str)}, and backend {spec.model.backend}'s server "
            "applies its first request's to every request: one setting per model job"
        )


def _run_cell(job: _Job, cell: PackedCell, reference_w: tuple[float, ...] | None) -> None:
    """One cell of a model job, from its cooldown to its result (module docstring)."""
    spec = job.serving.spec.packed_cell_spec(cell)
    files = JobFiles(cell.run_dir)
    if is_done(files.result, spec):
        job.record(cell.cell_id, "skipped_done", files.result)
        return
    pack, evaluation = job.serving.spec.pack, cell.evaluation
    assert pack is not None
    temperatures = dict(job.temperatures)
    try:
        timeline = job.cell_timeline(files)
        cooldown = cool_down(job.gpus, reference_w, pack.cooldown, timeline, temperatures)
        job.gpus.note_temperature(Mark.INFERENCE_START, temperatures)
        serving = job.serving
        outcome = evaluate(evaluation, spec.model, timeline, serving.url, files, serving.engine)
        outcome.generation_window = stamp_generation(timeline, outcome)
        assert outcome.generation is not None
        log = outcome.generation.log
        outcome.steady_window = stamp_steady(timeline, log, evaluation.max_connections)
        if evaluation.score_in_job:
            timeline.mark(Mark.SCORING_START)
            outcome.scoring = inspect_steps.summarize_log(
                inspect_steps.run_scoring(log, files.scored_log)
            )
            timeline.mark(Mark.SCORING_END)
        job.finish_cell(
            files,
            kind="cell",
            job_id=cell.cell_id,
            **outcome_fields(outcome, timeline.marks, None),
            cooldown=cooldown,
            temperatures_c=temperatures,
            spec=spec,
        )
    except Exception as exc:  # this cell failed: recorded, and the next one runs
        job.failed(cell.cell_id, exc)


def run_judge_pass(spec: JobSpec) -> JobResult:
    """Run a judge pass (module docstring); return (and write) its own result."""
    judging = spec.judging
    assert judging is not None

    def cells(job: _Job) -> None:
        steps = _JudgeSteps(job)
        logs = steps.plan()
        if logs:
            model, url = job.serving.spec.model, job.serving.url
            inspect_steps.score_logs(logs, inspect_steps.JudgeModel(judging, model, url), steps)
        job.outcomes = steps.in_order()

    return _run(spec, cells)


@dataclass
class _JudgeSteps:
    """A judge pass's cells: which to score, and what to do around each scoring
    (inspect_steps.ScoringSteps)."""

    job: _Job
    todo: list[tuple[JudgedCell, Path]] = field(default_factory=list)
    timelines: dict[int, Timeline] = field(default_factory=dict)
    temperatures: dict[int, Temperatures] = field(default_factory=dict)

    def plan(self) -> list[inspect_steps.ToScore]:
        """(cell's log, judged log, salt) of every cell to score; the others' outcomes
        recorded (done with the same spec, or no log to score)."""
        spec = self.job.serving.spec
        assert spec.judging is not None
        for cell in spec.judging.cells:
            files = JobFiles(cell.run_dir)
            if is_done(files.result, spec.judged_cell_spec(cell)):
                self.job.record(cell.cell_id, "skipped_done", files.result)
                continue
            try:
                answers = read_contract(JobResult, cell.cell_result).generation
                if answers is None:
                    raise ValueError(f"{cell.cell_result}: the cell recorded no generation")
            except (ContractError, ValueError) as exc:
                self.job.failed(cell.cell_id, exc)
                continue
            self.todo.append((cell, answers.log))
        return [
            inspect_steps.ToScore(log, JobFiles(cell.run_dir).judged_log, cell.cache_salt)
            for cell, log in self.todo
        ]

    def started(self, index: int) -> None:
        cell, _ = self.todo[index]
        self.timelines[index] = timeline = self.job.cell_timeline(JobFiles(cell.run_dir))
        self.temperatures[index] = temperatures = dict(self.job.temperatures)
        self.job.gpus.stamp(timeline, Mark.JUDGING_START, temperatures)

    def ended(self, index: int, scored: Path | None, error: Exception | None) -> None:
        cell, _ = self.todo[index]
        timeline = self.timelines[index]
        try:
            timeline.mark(Mark.JUDGING_END)
            if error is not None:
                raise error
            assert scored is not None
            outcome = Outcome(
                scoring=inspect_steps.summarize_log(scored),
                calls_log=scored,
                calls_within=(Mark.JUDGING_START, Mark.JUDGING_END),
            )
            outcome.generation_window = stamp_generation(timeline, outcome)
            self.job.finish_cell(
                JobFiles(cell.run_dir),
                kind="judge",
                job_id=cell.cell_id,
                **outcome_fields(outcome, timeline.marks, None),
                temperatures_c=self.temperatures[index],
                spec=self.job.serving.spec.judged_cell_spec(cell),
            )
        except Exception as exc:  # this cell's judging failed: recorded, the pass goes on
            self.job.failed(cell.cell_id, exc)

    def in_order(self) -> list[PackedOutcome]:
        """The outcomes in the order of the pass's cells."""
        spec = self.job.serving.spec
        assert spec.judging is not None
        order = {cell.cell_id: i for i, cell in enumerate(spec.judging.cells)}
        return sorted(self.job.outcomes, key=lambda o: order[o.cell_id])
