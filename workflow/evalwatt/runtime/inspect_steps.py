"""The Inspect steps of a job: generate answers, score them, summarise the log.

Generation runs with ``score=False`` so that the inference window holds generation only;
scoring runs afterwards with ``inspect score`` on the log: in the same job for unit tests and
exact match, in a separate judge job for LLM-as-a-judge benchmarks, so that the judge's energy
never lands in the cell.

Every knob that changes energy is pinned and recorded: ``max_connections`` (with adaptive
concurrency off), temperature, top-p, top-k, max tokens and the sample limit.

The job stamps ``inference_start``/``inference_end`` (``judging_*``) around the Inspect call,
which also loads the task and its dataset and writes the log. ``generation_window`` reads the
log's model events afterwards for the model's own work inside that window: the first request
sent and the last response received (``generation_start``/``generation_end``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.result import EvalSummary, GenerationWindow, SteadyWindow
from evalwatt.contracts.spec import EvaluationSpec, JudgingSpec, ModelSpec
from evalwatt.runtime.backends import backend


@dataclass(frozen=True)
class JudgeModel:
    """The judge, as a judge job or pass serves it."""

    judging: JudgingSpec
    model: ModelSpec
    base_url: str


def generate_config(evaluation: EvaluationSpec, server: str) -> dict[str, Any]:
    """Inspect GenerateConfig arguments of a cell served by backend ``server``, with nothing
    left to a default."""
    config: dict[str, Any] = {
        "max_connections": evaluation.max_connections,
        "adaptive_connections": False,
        **evaluation.request_sampling(),
    }
    if evaluation.max_tokens is not None:
        config["max_tokens"] = evaluation.max_tokens
    body: dict[str, Any] = {}
    if evaluation.top_k is not None:
        # OpenAI-compatible providers drop top_k; vLLM and llama.cpp read it from the body.
        body["top_k"] = evaluation.top_k
    if backend(server).cache_salt:  # no prefix cache shared with another cell of the job
        body["cache_salt"] = evaluation.cache_salt
    if body:
        config["extra_body"] = body
    return config


def _inspect_model(model: ModelSpec) -> str:
    engine = backend(model.backend)
    if engine.api_key_variable:
        os.environ.setdefault(engine.api_key_variable, "none")
    return f"{engine.inspect_provider}/{model.served_name}"


def run_generation(
    evaluation: EvaluationSpec, model: ModelSpec, base_url: str, log_dir: Path
) -> Path:
    """Run the Inspect task against the running server; return the .eval log path."""
    from inspect_ai import eval as inspect_eval

    logs = inspect_eval(
        evaluation.task,
        model=_inspect_model(model),
        model_base_url=base_url,
        task_args=evaluation.task_args,
        limit=evaluation.limit,
        log_dir=str(log_dir),
        log_format="eval",
        score=False,
        display="plain",
        **generate_config(evaluation, model.backend),
    )
    log = logs[0]
    if log.status != "success":
        error = log.error.message if log.error else "no error recorded"
        raise RuntimeError(f"Inspect evaluation ended with status {log.status}: {error}")
    return Path(log.location)


def _grader_roles(judge: JudgeModel, cache_salt: str | None = None) -> dict[str, Any]:
    """The judge bound to the ``grader`` role, for one log. Its server URL is also given to
    its Inspect provider's environment variable for tasks that build the judge from a task
    argument (``judge_model=vllm/...``). On a server that takes a ``cache_salt`` (vLLM), the
    requests carry ``cache_salt``: a judged cell's own (``JudgedCell.cache_salt``) in a pass."""
    from inspect_ai.model import GenerateConfig, get_model

    engine = backend(judge.model.backend)
    os.environ[engine.base_url_variable] = judge.base_url
    salted = cache_salt is not None and engine.cache_salt
    config = GenerateConfig(
        temperature=judge.judging.temperature,
        max_connections=judge.judging.max_connections,
        adaptive_connections=False,
        max_tokens=judge.judging.max_tokens,
        extra_body={"cache_salt": cache_salt} if salted else None,
    )
    return {
        "grader": get_model(_inspect_model(judge.model), base_url=judge.base_url, config=config)
    }


def run_scoring(log_path: Path, out_path: Path, judge: JudgeModel | None = None) -> Path:
    """Score ``log_path`` with its task's own scorers and write the scored log to ``out_path``.

    This is what ``inspect score`` does, run in this process so that the scorers of every
    installed task package (evalwatt's included) are registered first. With a judge, the
    judge is bound to the ``grader`` role (``_grader_roles``).
    """
    from inspect_ai import score
    from inspect_ai._eval.score import resolve_scorers  # the resolution `inspect score` uses
    from inspect_ai.log import read_eval_log, write_eval_log

    import evalwatt.runtime.tasks  # noqa: F401  (registers evalwatt's scorers; needs inspect-ai)

    roles = _grader_roles(judge) if judge is not None else None
    log = read_eval_log(str(log_path))
    _qualify_scorer_names(log)
    scored = score(log, resolve_scorers(log), model_roles=roles, action="overwrite", display="none")
    write_eval_log(scored, str(out_path))
    return out_path


class ScoringSteps(Protocol):
    """What a judge pass does around each log it scores (``score_logs``)."""

    def started(self, index: int) -> None:
        """Just before log ``index`` is read and scored."""

    def ended(self, index: int, scored: Path | None, error: Exception | None) -> None:
        """Its scored log written (``scored``), or why it could not be (``error``)."""


@dataclass(frozen=True)
class ToScore:
    """One log a judge pass scores."""

    log: Path
    scored: Path
    """Where its scored log is written."""
    cache_salt: str
    """The judge's requests' salt for it (``JudgedCell.cache_salt``; vLLM only)."""


def score_logs(logs: Sequence[ToScore], judge: JudgeModel, steps: ScoringSteps) -> None:
    """Score each log in turn with one judge server, in one event loop (a model's HTTP
    client belongs to the loop it was made in), as ``run_scoring`` scores one, the judge
    bound with the log's own cache salt. A log that cannot be scored is passed to
    ``steps.ended`` with its error and the next one is scored."""
    import anyio
    from inspect_ai import score_async
    from inspect_ai._eval.score import resolve_scorers
    from inspect_ai._util.platform import platform_init
    from inspect_ai.log import read_eval_log_async, write_eval_log_async
    from inspect_ai.util._display import init_display_type

    import evalwatt.runtime.tasks  # noqa: F401  (registers evalwatt's scorers; needs inspect-ai)

    platform_init()  # what inspect's own score() does before its event loop
    init_display_type("none")

    async def each() -> None:
        for index, target in enumerate(logs):
            steps.started(index)
            try:
                roles = _grader_roles(judge, target.cache_salt)
                log = await read_eval_log_async(str(target.log))
                _qualify_scorer_names(log)
                scored = await score_async(
                    log, resolve_scorers(log), model_roles=roles, action="overwrite"
                )
                await write_eval_log_async(scored, str(target.scored))
            except Exception as exc:  # this cell's judging failed; the pass goes on
                steps.ended(index, None, exc)
                continue
            steps.ended(index, target.scored, None)

    anyio.run(each)


def _qualify_scorer_names(log: Any) -> None:
    """Logs record a packaged task's scorers without their package (``verify_limited``,
    not ``evalwatt/verify_limited``), and the registry cannot find them so. Prefix them
    with the task's package when the bare name is unknown (inspect-ai 0.3.285)."""
    from inspect_ai._util.registry import registry_lookup

    package = log.eval.task.split("/")[0] if "/" in log.eval.task else None
    for entry in log.eval.scorers or []:
        if package and "/" not in entry.name and registry_lookup("scorer", entry.name) is None:
            entry.name = f"{package}/{entry.name}"


_SCORE_METRICS = ("accuracy", "mean")


def summarize_log(path: Path) -> EvalSummary:
    """What the results need from an Inspect log: samples, score, tokens, times."""
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(path), header_only=True)
    results = log.results
    score: dict[str, Any] = {"score": None, "score_stderr": None, "score_metric": None}
    scorer = None
    reason: str | None = "not scored in this log"
    if results and results.scores:
        first = results.scores[0]
        scorer = first.name
        reason = f"{scorer} reports none of {', '.join(_SCORE_METRICS)}"
        for name in _SCORE_METRICS:
            if name in first.metrics:
                score["score_metric"] = name
                value = first.metrics[name].value
                if math.isfinite(value):
                    score["score"], reason = value, None
                else:  # Inspect's mean of no valid score (e.g. a judge's answer with no grade)
                    reason = f"{scorer} {name} is {value}: a sample's score could not be read"
                break
        stderr = first.metrics.get("stderr")
        if stderr is not None and math.isfinite(stderr.value) and reason is None:
            score["score_stderr"] = stderr.value
    usage = list(log.stats.model_usage.values())
    return EvalSummary(
        log=path,
        status=log.status,
        task=log.eval.task,
        samples_total=results.total_samples if results else None,
        samples_completed=results.completed_samples if results else None,
        scorer=scorer,
        score_null_reason=reason,
        started_at=log.stats.started_at or None,
        completed_at=log.stats.completed_at or None,
        input_tokens=sum(u.input_tokens for u in usage) if usage else None,
        output_tokens=sum(u.output_tokens for u in usage) if usage else None,
        **score,
    )


# What a sample read for its model events can leave out: its messages (the events repeat
# them), its store and attachments.
_HEAVY_SAMPLE_FIELDS = {"messages", "store", "attachments"}


def generation_window(
    log_path: Path, within: tuple[Mark, Mark], marks: dict[Mark, float]
) -> GenerationWindow:
    """The model's calls of ``log_path`` inside the job's window ``within`` (its two marks):
    the first request sent and the last response received, unix seconds.

    Inspect stamps each model call's ``timestamp`` just before it waits for a connection slot
    and ``completed`` just after the server's reply (inspect_ai.model._model.Model.generate,
    0.3.285): at the window's first call no slot is taken yet, so its timestamp is when the
    first request went out, and the latest ``completed`` is when the last reply came back.
    Only calls inside ``within`` count (a judged log also holds the cell's calls), never a
    cache read (no request sent). A call without ``completed`` (it failed after its retries)
    ends at its sample's ``completed_at``. Where no call can be read, the marks are absent
    and ``null_reason`` says why.
    """
    from inspect_ai.event import ModelEvent
    from inspect_ai.log import read_eval_log_samples

    t0, t1 = marks[within[0]], marks[within[1]]
    starts: list[float] = []
    ends: list[float] = []
    samples = ended_by_sample = 0
    reason: str | None = None
    try:
        for sample in read_eval_log_samples(
            str(log_path), all_samples_required=False, exclude_fields=_HEAVY_SAMPLE_FIELDS
        ):
            calls = [
                e
                for e in sample.events
                if isinstance(e, ModelEvent)
                and e.cache != "read"
                and t0 <= e.timestamp.timestamp() <= t1
            ]
            samples += bool(calls)
            for call in calls:
                starts.append(call.timestamp.timestamp())
                if call.completed is not None:
                    ends.append(call.completed.timestamp())
                elif sample.completed_at:
                    ends.append(_unix(sample.completed_at))
                    ended_by_sample += 1
                else:
                    reason = f"a model call of sample {sample.id!r} has no end time"
    except Exception as exc:  # the answers stand whatever the reader raises: only the marks go
        reason = f"cannot read the model events of {log_path}: {type(exc).__name__}: {exc}"
    if reason is None and not starts:
        reason = f"{log_path} has no model call between {within[0]} and {within[1]}"
    start = min(starts) if reason is None else None
    end = max(ends) if reason is None else None
    if start is not None and end is not None and not t0 <= start <= end <= t1:
        reason = (
            f"model calls from {start:.3f} to {end:.3f} do not fit in {within[0]}..{within[1]} "
            f"({t0:.3f}..{t1:.3f})"
        )
        start = end = None
    return GenerationWindow(
        log=log_path,
        within=within,
        start=start,
        end=end,
        model_calls=len(starts),
        samples=samples,
        ended_by_sample=ended_by_sample,
        null_reason=reason,
    )


@dataclass(frozen=True)
class ServedCall:
    """One model call as the server worked on it: Inspect's ``completed`` less the HTTP
    call's ``working_time`` to ``completed`` (Inspect's ``timestamp`` is taken before the call
    waits for a connection slot, so it is not when the server started it)."""

    start: float
    end: float
    output_tokens: int


def steady_state(calls: list[ServedCall], in_flight: int) -> SteadyWindow:
    """ML.ENERGY's steady state (ml-energy/benchmark, ``RequestTracker``) of a cell's calls.
    It opens when the ``in_flight``-th request (B, the cell's ``max_connections``) has started
    and closes at the (N - B - 1)-th completion, N requests in all; each request's output
    tokens are pro-rated over its ``[start, end]`` (a uniform token rate per request, an
    approximation). Null with the reason when N < 2 B (no steady state to speak of) or the
    window is empty."""
    n, b = len(calls), in_flight

    def null(reason: str) -> SteadyWindow:
        return _no_steady(b, n, reason)

    if n < 2 * b:
        return null(f"{n} requests, fewer than twice max_connections ({b}): no steady state")
    start = sorted(c.start for c in calls)[b - 1]
    finished = n - b - 1
    end = sorted(c.end for c in calls)[finished - 1] if finished >= 1 else None
    if end is None or end <= start:
        return null(
            f"the steady state is empty: the {b}-th request started at {start:.3f}, and "
            f"{finished} requests had finished by {'then' if end is None else f'{end:.3f}'}"
        )
    tokens = 0.0
    for call in calls:
        overlap = min(call.end, end) - max(call.start, start)
        if call.end > call.start and overlap > 0:
            tokens += call.output_tokens * overlap / (call.end - call.start)
        elif call.end == call.start and start <= call.start <= end:
            tokens += call.output_tokens
    return SteadyWindow(
        start=start, end=end, in_flight=b, requests=n, output_tokens=tokens, null_reason=None
    )


def _no_steady(in_flight: int, requests: int, reason: str) -> SteadyWindow:
    return SteadyWindow(
        start=None,
        end=None,
        in_flight=in_flight,
        requests=requests,
        output_tokens=None,
        null_reason=reason,
    )


def _served_calls(log_path: Path, t0: float, t1: float) -> tuple[list[ServedCall], str | None]:
    """The model calls of a log inside ``t0..t1`` as the server worked on them, or why they
    cannot all be placed (a call without completion, working time or output usage)."""
    from inspect_ai.event import ModelEvent
    from inspect_ai.log import read_eval_log_samples

    calls: list[ServedCall] = []
    unplaced = 0
    try:
        for sample in read_eval_log_samples(
            str(log_path), all_samples_required=False, exclude_fields=_HEAVY_SAMPLE_FIELDS
        ):
            for e in sample.events:
                if not isinstance(e, ModelEvent) or e.cache == "read":
                    continue
                if not t0 <= e.timestamp.timestamp() <= t1:
                    continue
                usage = e.output.usage if e.output is not None else None
                if e.completed is None or e.working_time is None or usage is None:
                    unplaced += 1
                    continue
                end = e.completed.timestamp()
                calls.append(ServedCall(end - e.working_time, end, usage.output_tokens))
    except Exception as exc:  # the answers stand whatever the reader raises: only the marks go
        return [], f"cannot read the model events of {log_path}: {type(exc).__name__}: {exc}"
    if unplaced:
        return calls, (
            f"{unplaced} model calls of {log_path} have no completion time, working time or "
            "output usage: the requests in flight cannot be counted"
        )
    return calls, None


def steady_window(
    log_path: Path, within: tuple[Mark, Mark], marks: dict[Mark, float], in_flight: int
) -> SteadyWindow:
    """A cell's steady state (``steady_state``) from the model calls of its log inside its
    window ``within``, unix seconds; null with the reason where there is none."""
    calls, reason = _served_calls(log_path, marks[within[0]], marks[within[1]])
    if reason is not None:
        return _no_steady(in_flight, len(calls), reason)
    return steady_state(calls, in_flight)


def _unix(iso: str) -> float:
    """Unix seconds of an ISO time that Inspect wrote (UTC where it names no zone)."""
    from datetime import UTC, datetime

    at = datetime.fromisoformat(iso)
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
