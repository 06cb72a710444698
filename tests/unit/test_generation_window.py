"""The generation window: the marks read from a real Inspect log, and the terms cut by them
on the shared H100 trace.

Inspect's own work inside the evaluation window (loading the task and its dataset before the
first request, writing the log after the last response) is not generation: the headline
``inference`` term covers ``generation_start``..``generation_end``, ``evaluation`` the whole
``inference_start``..``inference_end``.
"""

from __future__ import annotations

import csv
import json
import time
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from evalwatt.base.vocabulary import Mark
from evalwatt.energy.corrected import JobTotal, corrected_whole_job, phase_durations
from evalwatt.energy.sources import TraceSource, with_generation_marks
from evalwatt.energy.terms import (
    HARNESS_WINDOW_NOTE,
    cell_terms,
    headline_window,
    judge_terms,
    method_comparison,
)
from evalwatt.energy.trace_files import read_trace
from evalwatt.runtime import inspect_steps
from evalwatt.runtime.outcome import Outcome, problems_of, stamp_generation
from evalwatt.runtime.timeline import Timeline

WITHIN = (Mark.INFERENCE_START, Mark.INFERENCE_END)


# --- a real Inspect log ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_log(tmp_path_factory):
    """A real Inspect run of 4 samples against Inspect's mock model, bracketed by two marks
    stamped as the job runtime stamps them; Inspect in the test's process (the job's clock)."""
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage
    from inspect_ai.solver import generate

    async def reply(*args: object) -> ModelOutput:
        """50 ms per answer, its usage given (the mock model would count tokens with
        tiktoken, which downloads its encoding)."""
        import anyio

        await anyio.sleep(0.05)
        out = ModelOutput.from_content(model="mockllm", content="answer")
        out.usage = ModelUsage(input_tokens=3, output_tokens=1, total_tokens=4)
        return out

    folder = tmp_path_factory.mktemp("inspect")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(folder / "data"))
        task = Task(dataset=[Sample(input=f"question {i}", target="x") for i in range(4)])
        task.solver = generate()
        start = time.time()
        (log,) = inspect_eval(
            task,
            model="mockllm/model",
            model_args={"custom_outputs": reply},
            log_dir=str(folder / "logs"),
            log_format="eval",
            score=False,
            display="none",
            max_connections=2,
        )
        end = time.time()
    assert log.status == "success"
    return Path(log.location), {WITHIN[0]: start, WITHIN[1]: end}


def _model_events(path: Path) -> list[tuple[float, float]]:
    """(started, completed) of every model call, read from the .eval zip with the json module
    (not through Inspect's reader)."""

    def unix(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    calls = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.startswith("samples/"):
                sample = json.loads(archive.read(name))
                calls += [
                    (unix(e["timestamp"]), unix(e["completed"]))
                    for e in sample["events"]
                    if e["event"] == "model"
                ]
    return calls


def test_the_marks_come_from_the_logs_model_calls(mock_log):
    path, marks = mock_log
    window = inspect_steps.generation_window(path, WITHIN, marks)
    calls = _model_events(path)
    assert len(calls) == 4
    assert window.null_reason is None
    assert (window.model_calls, window.samples, window.ended_by_sample) == (4, 4, 0)
    assert window.start == pytest.approx(min(c[0] for c in calls), abs=1e-6)
    assert window.end == pytest.approx(max(c[1] for c in calls), abs=1e-6)
    # inside the evaluation window, which also holds Inspect's task loading and log writing
    assert marks[WITHIN[0]] < window.start <= window.end < marks[WITHIN[1]]


def test_calls_outside_the_window_do_not_count(mock_log):
    """A judged log holds the cell's calls too: only the calls inside the job's own window
    count; none there is a null with the reason, never the whole window."""
    path, marks = mock_log
    calls = sorted(_model_events(path))
    later = {WITHIN[0]: calls[2][0] - 1e-4, WITHIN[1]: marks[WITHIN[1]]}
    window = inspect_steps.generation_window(path, WITHIN, later)
    assert window.model_calls == 2 and window.start == pytest.approx(calls[2][0], abs=1e-6)
    before = {WITHIN[0]: marks[WITHIN[0]] - 10, WITHIN[1]: marks[WITHIN[0]]}
    empty = inspect_steps.generation_window(path, WITHIN, before)
    assert empty.start is None and empty.end is None and empty.model_calls == 0
    assert (
        empty.null_reason == f"{path} has no model call between inference_start and inference_end"
    )


def test_an_unreadable_log_gives_no_marks_and_says_why(tmp_path, mock_log):
    _, marks = mock_log
    window = inspect_steps.generation_window(tmp_path / "gone.eval", WITHIN, marks)
    assert window.start is None and window.null_reason is not None
    assert window.null_reason.startswith(f"cannot read the model events of {tmp_path}")


def test_the_job_stamps_the_marks_at_the_logs_times(tmp_path, mock_log):
    """The runtime's step: the two marks at the times the log gives (after the server has
    stopped, so never ``now``), or no marks and a problem in the result with the reason."""
    path, marks = mock_log
    timeline = Timeline(tmp_path / "timeline.json")
    for mark, t in marks.items():
        timeline.mark(mark, t)
    window = stamp_generation(timeline, Outcome(calls_log=path, calls_within=WITHIN))
    assert window is not None
    assert timeline.marks[Mark.GENERATION_START] == window.start
    assert timeline.marks[Mark.GENERATION_END] == window.end
    on_disk = json.loads((tmp_path / "timeline.json").read_text())["marks"]
    assert on_disk["generation_start"] == window.start
    assert problems_of(Outcome(generation_window=window), 0) == []

    bare = Timeline(tmp_path / "bare.json")
    for mark, t in marks.items():
        bare.mark(mark, t)
    gone = stamp_generation(bare, Outcome(calls_log=tmp_path / "x.eval", calls_within=WITHIN))
    assert gone is not None and Mark.GENERATION_START not in bare.marks
    (problem,) = problems_of(Outcome(generation_window=gone), 0)
    assert problem.startswith("no generation window, so no headline energy: cannot read")
    # a baseline reads no log
    assert stamp_generation(bare, Outcome()) is None


# --- the terms on the shared H100 trace -----------------------------------------------------
#
# The harness of the shared trace stamped inference_start/inference_end around its generate
# calls. Here its timeline is made an evalwatt one: those marks become generation_*, and the
# evaluation window opens 3 s earlier (in its 10 s of loaded idle after ready) and closes 3 s
# later (in its 5 s of loaded idle after generation), as Inspect's task loading and log
# writing would.

SHIFT_S = 3.0


def _rows(path: Path) -> list[tuple[float, float]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return sorted((float(r["t_unix"]), float(r["energy_mj"])) for r in csv.DictReader(fh))


def _joules(rows: list[tuple[float, float]], a: float, b: float) -> float:
    """Counter difference between two times inside the trace, linear between samples."""

    def at(t: float) -> float:
        i = next(i for i in range(len(rows) - 1) if rows[i][0] <= t <= rows[i + 1][0])
        (ta, ea), (tb, eb) = rows[i], rows[i + 1]
        return ea + (eb - ea) * (t - ta) / (tb - ta)

    return (at(b) - at(a)) / 1000.0


@pytest.fixture(scope="module")
def evalwatt_like(llama1b_dir):
    harness = json.loads((llama1b_dir / "cell.marks.json").read_text())
    marks = {k: v for k, v in harness.items() if k != "output_tokens"}
    marks["generation_start"] = marks["inference_start"]
    marks["generation_end"] = marks["inference_end"]
    marks["inference_start"] -= SHIFT_S
    marks["inference_end"] += SHIFT_S
    base_marks = json.loads((llama1b_dir / "baseline.marks.json").read_text())
    cell = TraceSource(read_trace(llama1b_dir / "cell.csv"), marks)
    base = TraceSource(read_trace(llama1b_dir / "baseline.csv"), base_marks)
    return harness, marks, cell, base, _rows(llama1b_dir / "cell.csv")


def test_generation_is_the_headline_and_evaluation_the_wider_window(evalwatt_like):
    harness, marks, cell, base, rows = evalwatt_like
    out = cell_terms(cell, base, None, 96, 69120, generation_null_reason="never read")
    t = {name: term.energy_j for name, term in out.terms.items()}
    generation = _joules(rows, marks["generation_start"], marks["generation_end"])
    evaluation = _joules(rows, marks["inference_start"], marks["inference_end"])
    assert t["inference"] == pytest.approx(generation, rel=1e-9)
    assert t["inference"] == pytest.approx(10_285.0, abs=0.05)  # docs/methodology.md
    assert t["evaluation"] == pytest.approx(evaluation, rel=1e-9)
    # 6 s at loaded idle (~120 W on this H100) around the generation
    assert t["evaluation_overhead"] == pytest.approx(evaluation - generation, rel=1e-9)
    assert 6 * 110 < t["evaluation_overhead"] < 6 * 130
    assert out.terms["inference"].formula == "E(generation_end) - E(generation_start) [cell]"
    assert out.per_unit["inference_per_question"].value_wh == pytest.approx(generation / 3600 / 96)
    # the harness's own timeline (no generation marks, no reason): its inference window is
    # its generation window, and the figures are the same
    harness_marks = {k: v for k, v in harness.items() if k != "output_tokens"}
    plain = cell_terms(TraceSource(cell.trace, harness_marks), base, None, 96, 69120)
    assert plain.terms["inference"].energy_j == pytest.approx(t["inference"], rel=1e-12)
    assert HARNESS_WINDOW_NOTE in plain.terms["inference"].formula
    assert plain.terms["evaluation_overhead"].energy_j == 0.0


def test_the_whole_job_methods_see_inspects_overhead_as_what_it_is(evalwatt_like):
    """The 6 s were loaded idle before and are loaded idle now: the corrected method (which
    counts inference_start..generation_start and generation_end..inference_end as loaded)
    and the study's method give exactly what they gave on the harness's timeline."""
    harness, marks, cell, base, _ = evalwatt_like
    harness_marks = {k: v for k, v in harness.items() if k != "output_tokens"}
    new = method_comparison(cell_terms(cell, base, None, 96, None))
    old = method_comparison(
        cell_terms(TraceSource(cell.trace, harness_marks), base, None, 96, None)
    )
    for method in ("phase_resolved", "whole_job", "corrected_whole_job"):
        assert new[method].energy_j == pytest.approx(old[method].energy_j, rel=1e-12)
    p_new, p_old = phase_durations(marks), phase_durations(with_generation_marks(harness_marks))
    assert p_new.work_s == pytest.approx(p_old.work_s, abs=1e-9)
    assert p_new.work_s == pytest.approx(marks["generation_end"] - marks["generation_start"])
    assert p_new.loaded_s == pytest.approx(p_old.loaded_s, abs=1e-9)


def test_job_totals_recover_the_generation_not_the_evaluation():
    """A job-total source with both timelines: Inspect's seconds before the first request and
    after the last response are loaded idle, taken away at the loaded power."""
    cell = {
        "job_start": 0.0,
        "load_start": 2.0,
        "ready": 62.0,
        "inference_start": 70.0,
        "generation_start": 75.0,  # 5 s of task and dataset loading
        "generation_end": 665.0,
        "inference_end": 670.0,  # 5 s of log writing
        "exit": 680.0,
        "pad_start": 680.0,
        "pad_end": 700.0,
        "job_end": 700.0,
    }
    base = {
        "job_start": 0.0,
        "load_start": 1.0,
        "ready": 41.0,
        "exit": 45.0,
        "pad_start": 45.0,
        "pad_end": 305.0,
        "job_end": 305.0,
    }
    levels = {"cold": 72.0, "load": 72.0, "loaded": 120.0, "work": 650.0}

    def total(marks: dict[str, float]) -> float:
        p = phase_durations(marks)
        return sum(levels[s] * getattr(p, f"{s}_s") for s in levels)

    p = phase_durations(cell)
    assert p.work_s == pytest.approx(590.0) and p.loaded_s == pytest.approx(8 + 10 + 10)
    out = corrected_whole_job(
        JobTotal(total(cell), cell, cold_idle_j=72.0 * 20),
        JobTotal(total(base), base, cold_idle_j=72.0 * 260),
    )
    assert out.energy_j == pytest.approx(650.0 * 590, rel=1e-12)
    # a cell with a steady state (ML.ENERGY's, inside its generation) counts the same
    steady = {**cell, "steady_start": 100.0, "steady_end": 600.0}
    assert phase_durations(steady) == p
    again = corrected_whole_job(
        JobTotal(total(cell), steady, cold_idle_j=72.0 * 20),
        JobTotal(total(base), base, cold_idle_j=72.0 * 260),
    )
    assert again.energy_j == pytest.approx(out.energy_j, rel=1e-12)


@pytest.mark.parametrize(
    ("marks", "reason", "expected"),
    [
        ({"generation_start": 1.0, "generation_end": 2.0}, "x", ("generation_start", None)),
        (
            {"inference_start": 0.0, "inference_end": 3.0},
            "the log had none",
            ("generation_start", "the log had none"),
        ),
        ({"inference_start": 0.0, "inference_end": 3.0}, None, ("inference_start", None)),
        (
            {"inference_start": 0.0, "generation_start": 1.0, "inference_end": 3.0},
            None,
            ("generation_start", "timeline has generation_start but no generation_end"),
        ),
        ({"job_start": 0.0}, None, ("generation_start", None)),
    ],
)
def test_the_headline_window_of_a_timeline(marks, reason, expected):
    window, why, note = headline_window(marks, reason)
    assert (window[0], why) == expected
    assert (note is not None) == (window[0] == "inference_start")


def test_the_judge_terms_cut_its_generation_and_its_scoring(evalwatt_like):
    """A judge job's timeline: judging_* around Inspect's scoring, generation_* around the
    judge model's calls (the same shared trace, cut as a judge job would be)."""
    _, marks, cell, _, rows = evalwatt_like
    judge_marks = dict(marks)
    judge_marks["judging_start"] = judge_marks.pop("inference_start")
    judge_marks["judging_end"] = judge_marks.pop("inference_end")
    terms = judge_terms(TraceSource(cell.trace, judge_marks), "no judge")
    gen = _joules(rows, marks["generation_start"], marks["generation_end"])
    assert terms["judge"].energy_j == pytest.approx(gen, rel=1e-9)
    assert terms["judge_evaluation"].energy_j == pytest.approx(
        _joules(rows, marks["inference_start"], marks["inference_end"]), rel=1e-9
    )
    without = {k: v for k, v in judge_marks.items() if not k.startswith("generation")}
    nulls = judge_terms(TraceSource(cell.trace, without), "no judge", "judged.eval: no call")
    assert nulls["judge"].energy_j is None and nulls["judge"].null_reason == "judged.eval: no call"
    assert nulls["judge_evaluation"].energy_j is not None
