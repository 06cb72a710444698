"""What a job's Inspect work gave, and the marks read from its log after the fact.

Shared by the one-cell jobs (runtime.runner) and the jobs that run several cells
(runtime.packed): the generation window (``generation_*``) and the steady state
(``steady_*``) are stamped at the times Inspect recorded, never at the time they are read.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.contracts.result import EvalSummary, GenerationWindow, ServerMetrics, SteadyWindow
from evalwatt.contracts.spec import EvaluationSpec, ModelSpec
from evalwatt.runtime import inspect_steps
from evalwatt.runtime.backends import Backend
from evalwatt.runtime.timeline import Timeline
from evalwatt.runtime.vllm_metrics import WindowCounters


@dataclass
class Outcome:
    generation: EvalSummary | None = None
    scoring: EvalSummary | None = None
    server_metrics: ServerMetrics | None = None
    # the Inspect log whose model calls bound the generation, and the window they fall in
    calls_log: Path | None = None
    calls_within: tuple[Mark, Mark] | None = None
    generation_window: GenerationWindow | None = None
    steady_window: SteadyWindow | None = None


def evaluate(
    evaluation: EvaluationSpec,
    model: ModelSpec,
    timeline: Timeline,
    url: str,
    files: JobFiles,
    engine: Backend,
) -> Outcome:
    """A cell's Inspect evaluation (one single-task ``eval()``) between ``inference_*``, the
    server's own counters read just outside it (vLLM's /metrics)."""
    counters = WindowCounters(engine.prometheus_metrics, engine.name, url, files, model.served_name)
    counters.read("before")  # outside the window, like Inspect's import
    timeline.mark(Mark.INFERENCE_START)
    log = inspect_steps.run_generation(evaluation, model, url, files.eval_dir)
    timeline.mark(Mark.INFERENCE_END)
    counters.read("after")
    return Outcome(
        generation=inspect_steps.summarize_log(log),
        server_metrics=counters.result(),
        calls_log=log,
        calls_within=(Mark.INFERENCE_START, Mark.INFERENCE_END),
    )


def stamp_generation(timeline: Timeline, outcome: Outcome) -> GenerationWindow | None:
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


def stamp_steady(timeline: Timeline, log: Path, in_flight: int) -> SteadyWindow:
    """Stamp ``steady_start`` and ``steady_end`` from a cell's log (inspect_steps.
    steady_window, inside its inference window); absent, with the reason, where it has none."""
    window = inspect_steps.steady_window(
        log, (Mark.INFERENCE_START, Mark.INFERENCE_END), timeline.marks, in_flight
    )
    if window.start is not None and window.end is not None:
        timeline.mark(Mark.STEADY_START, window.start)
        timeline.mark(Mark.STEADY_END, window.end)
    return window


def problems_of(outcome: Outcome, exit_code: int | None) -> list[str]:
    """What a reader must know before using this job's numbers (``exit_code`` None: the
    server still runs, a model job's cell)."""
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


class OutcomeFields(TypedDict):
    """The fields of a result (``contracts.result.JobResult``) that its outcome settles."""

    status: JobStatus
    problems: tuple[str, ...]
    marks: dict[Mark, float]
    generation: EvalSummary | None
    scoring: EvalSummary | None
    server_metrics: ServerMetrics | None
    generation_window: GenerationWindow | None
    steady_window: SteadyWindow | None


def outcome_fields(
    outcome: Outcome, marks: dict[Mark, float], exit_code: int | None
) -> OutcomeFields:
    """What a result records of its outcome: ok, or incomplete with the problems a reader must
    know (``problems_of``), its timeline's ``marks``, and what Inspect and the server gave.
    One rule for a one-cell job (runtime.runner) and each cell of a model job or judge pass
    (runtime.packed), so that their results cannot drift apart."""
    problems = problems_of(outcome, exit_code)
    return OutcomeFields(
        status=JobStatus.INCOMPLETE if problems else JobStatus.OK,
        problems=tuple(problems),
        marks=marks,
        generation=outcome.generation,
        scoring=outcome.scoring,
        server_metrics=outcome.server_metrics,
        generation_window=outcome.generation_window,
        steady_window=outcome.steady_window,
    )
