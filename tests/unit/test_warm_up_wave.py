"""The warm-up wave: a job whose server does not warm itself (backend hf, ``transformers
serve``) sends it one wave of concurrent requests once it serves, between ``warm_up_start`` and
``warm_up_end``, the same in every job of a model configuration.

Why (docs/validation.md, on an H100): the same cell served three times in one model job cost
6-7 % less the second and third time; the first serving grew PyTorch's caching allocator to
the card's limit and back. A wave at the configuration's largest ``max_connections`` puts the
baseline, every cell job and the model job in the same server state before their work.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from test_first_request_sampling import RECORDING_SERVER, _hf_baseline

from evalwatt.base.layout import JobFiles, Layout
from evalwatt.base.vocabulary import Mark
from evalwatt.config.load import from_dict
from evalwatt.contracts.contract import parse_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.spec import JobSpec, WarmUpSpec
from evalwatt.contracts.timeline import TimelineFile
from evalwatt.energy.corrected import (
    CORRECTED_WAVE_FORMULA,
    JobTotal,
    corrected_whole_job,
    phase_durations,
)
from evalwatt.energy.sources import Unavailable
from evalwatt.jobs.packs import same_cell
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.server import Server, ServerError, free_port, warm_up_prompt
from evalwatt.runtime.serving import served
from evalwatt.runtime.timeline import Timeline

WAVE = WarmUpSpec(requests=6, prompt_words=40, max_tokens=3)


def _posts(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def _threaded(tmp_path: Path, mode: str = "ok") -> tuple[Server, Path]:
    script, record = tmp_path / "hf_like.py", tmp_path / "posts.jsonl"
    script.write_text(RECORDING_SERVER)
    port = free_port()
    argv = [sys.executable, str(script), str(port), str(record), mode]
    server = Server.start(argv, "127.0.0.1", port, tmp_path / "server.log")
    server.wait_ready(10.0, "m", listed=False)
    return server, record


def test_the_wave_sends_its_requests_at_once_and_waits_for_every_answer(tmp_path) -> None:
    server, record = _threaded(tmp_path)
    try:
        server.warm_up_wave("m", {"temperature": 0.7}, WAVE, 20.0)
        posts = _posts(record)  # read once the wave returned: every answer came
    finally:
        server.stop(grace_s=5)
    assert len(posts) == WAVE.requests
    sent = [p["t"] for p in posts]
    assert max(sent) - min(sent) < 0.4  # all in flight together (each answer takes 0.5 s)
    bodies = [p["body"] for p in posts]
    assert {b["max_tokens"] for b in bodies} == {3}
    assert {b["temperature"] for b in bodies} == {0.7}  # the job's sampling, as its first
    prompts = [b["messages"][0]["content"] for b in bodies]
    assert len(set(prompts)) == WAVE.requests
    assert {len(p.split()) for p in prompts} == {40}
    # no two prompts start alike (a prefix cache would serve a shared start once)
    assert len({p.split()[1] for p in prompts}) == WAVE.requests


def test_a_refused_wave_request_fails_with_the_servers_answer(tmp_path) -> None:
    """At once, not once every other request has answered (they take 5 s here)."""
    server, _ = _threaded(tmp_path, "refuse-3")
    try:
        started = time.monotonic()
        with pytest.raises(
            ServerError, match=r"warm-up wave request \d/6 refused: HTTP 400.*no such"
        ):
            server.warm_up_wave("m", {}, WAVE, 20.0)
        assert time.monotonic() - started < 3.0
    finally:
        server.stop(grace_s=5)


def test_prompts_have_the_words_asked_and_differ_per_request() -> None:
    assert len(warm_up_prompt(0, 256).split()) == 256
    assert warm_up_prompt(3, 8) != warm_up_prompt(4, 8)


def test_a_job_sends_its_wave_between_its_warm_up_marks(tmp_path) -> None:
    base, record = _hf_baseline(tmp_path)
    spec = base.model_copy(update={"warm_up": WAVE})
    files = JobFiles(spec.run_dir)
    files.root.mkdir(parents=True)
    timeline = Timeline(files.timeline)
    with served(spec, files, timeline):
        marks = dict(timeline.marks)
    first, *wave = _posts(record)
    assert first["body"]["max_tokens"] == 1  # the one-token request, answered before ready
    assert first["t"] < marks[Mark.READY]
    assert len(wave) == WAVE.requests
    assert all(marks[Mark.WARM_UP_START] < p["t"] < marks[Mark.WARM_UP_END] for p in wave)
    assert marks[Mark.WARM_UP_END] - marks[Mark.WARM_UP_START] >= 0.5  # every answer waited


@pytest.fixture
def hf_config(small_config, tmp_path):
    """The small config with its first model on hf, also the judge (at 10 connections), and
    its sweeps at 4 and 16 connections."""
    small_config["models"][0].update(backend="hf", total_params_b=7.0)
    small_config["judges"]["qnext"]["model"] = small_config["models"][0]["name"]
    small_config.update(results_dir=str(tmp_path / "results"))
    small_config["sweeps"]["max_connections"] = [4, 16]
    return small_config


def _specs(raw: dict, execution: str) -> list[tuple[str, JobSpec]]:
    config = from_dict({**raw, "execution": execution}, Path("."))
    run = RunJobs(config, plan_run(config), Layout.of(config.results_dir, config.run))
    return [(kind, run.job(kind, job_id).spec) for kind, job_id in run.jobs()]


def test_every_job_of_a_configuration_sends_the_same_wave(hf_config) -> None:
    """Baseline, cell jobs and model job alike: the largest swept max_connections; judges:
    their own max_connections; vLLM and llama.cpp warm themselves: no wave."""
    specs = _specs(hf_config, "per-cell") + _specs(hf_config, "per-model")
    hf = [(k, s) for k, s in specs if s.model.backend == "hf" and s.judging is None]
    assert {k for k, _ in hf} == {"baseline", "cell", "model"}
    assert {s.warm_up for _, s in hf} == {WarmUpSpec(requests=16, prompt_words=256, max_tokens=16)}
    others = [s for _, s in specs if s.model.backend != "hf"]
    assert others and all(s.warm_up is None for s in others)
    judges = [s for k, s in specs if k in ("judge", "judge-pass") and s.model.backend == "hf"]
    assert judges
    for spec in judges:
        assert spec.judging is not None and spec.warm_up is not None
        assert spec.warm_up.requests == spec.judging.max_connections == 10


def test_the_wave_follows_the_config_or_is_turned_off(hf_config) -> None:
    hf_config["job"] = {"warm_up_prompt_words": 64, "warm_up_max_tokens": 4}
    specs = _specs(hf_config, "per-cell")
    waves = {s.warm_up for _, s in specs if s.model.backend == "hf" and s.judging is None}
    assert waves == {WarmUpSpec(requests=16, prompt_words=64, max_tokens=4)}
    hf_config["job"] = {"warm_up_wave": False}
    assert all(s.warm_up is None for _, s in _specs(hf_config, "per-model"))


def _timeline(loaded_after_wave_s: float, work_s: float, wave: bool = True) -> dict[str, float]:
    """A job: 1 s cold, 10 s load, a 3 s wave (or none), loaded idle, work, 10 s of pad."""
    marks, t = {"job_start": 0.0, "load_start": 1.0, "ready": 11.0}, 11.0
    if wave:
        marks |= {"warm_up_start": t, "warm_up_end": t + 3.0}
        t += 3.0
    if work_s:
        marks |= {"inference_start": t + 1.0, "generation_start": t + 1.0}
        marks |= {"generation_end": t + 1.0 + work_s, "inference_end": t + 1.0 + work_s}
        t += work_s
    t += loaded_after_wave_s
    return marks | {"exit": t, "pad_start": t, "pad_end": t + 10.0, "job_end": t + 10.0}


def _total(marks: dict[str, float], wave_j: float = 7600.0) -> float:
    """The job's energy at cold 70 W (cold, load, pad), loaded idle 127 W, work 650 W, and
    the wave's ``wave_j``."""
    p = phase_durations(marks)
    return 70.0 * p.cold_power_s + 127.0 * p.loaded_s + 650.0 * p.work_s + wave_j * (p.wave_s > 0)


def test_the_wave_is_a_state_of_its_own_in_the_corrected_method() -> None:
    phases = phase_durations(_timeline(6.0, 0.0))
    assert (phases.cold_s, phases.load_s, phases.loaded_s, phases.wave_s) == (11.0, 10.0, 6.0, 3.0)


@pytest.mark.parametrize("loaded_after_s", [6.0, 4.0, 9.0])
def test_the_corrected_method_takes_the_wave_out_with_the_baseline(loaded_after_s) -> None:
    """The same wave in both jobs cancels: exact when the loaded seconds match, otherwise off
    by (loaded idle - cold idle) x their difference, not by the wave's power."""
    cell, base = _timeline(loaded_after_s, 20.0), _timeline(6.0, 0.0)
    out = corrected_whole_job(
        JobTotal(_total(cell), cell, cold_idle_j=700.0),
        JobTotal(_total(base, wave_j=7650.0), base, cold_idle_j=700.0),
    )
    difference_s = phase_durations(cell).loaded_s - phase_durations(base).loaded_s
    expected = 650.0 * 20.0 - 50.0 + (127.0 - 70.0) * difference_s  # 50 J: the waves differ
    assert out.energy_j == pytest.approx(expected, rel=1e-12)
    assert out.formula == CORRECTED_WAVE_FORMULA and "waves 3.0 and 3.0 s" in out.describe()


def test_a_wave_in_one_job_only_gives_no_corrected_estimate() -> None:
    cell, base = _timeline(6.0, 20.0), _timeline(6.0, 0.0, wave=False)
    with pytest.raises(Unavailable, match="warm-up wave and the other did not"):
        corrected_whole_job(
            JobTotal(_total(cell), cell, cold_idle_j=700.0),
            JobTotal(_total(base), base, cold_idle_j=700.0),
        )


def test_a_spec_and_a_timeline_from_before_the_wave_still_read(tmp_path) -> None:
    """Version 4 specs and version 1 timelines were written by jobs that sent no wave: read as
    such; a cell such a job measured is not done for a model job that sends the wave (nor
    for a cell job: Snakemake reruns a job whose spec changed)."""
    spec, _ = _hf_baseline(tmp_path)
    old = {**spec.model_dump(mode="json", exclude={"warm_up"}), "schema_version": 4}
    read = parse_contract(JobSpec, old, "spec.json")
    assert read.warm_up is None
    waved = spec.model_copy(update={"warm_up": WAVE})
    assert not same_cell(JobResult.model_construct(kind="cell", spec=read), waved)
    assert same_cell(JobResult.model_construct(kind="cell", spec=waved), waved)
    timeline = parse_contract(TimelineFile, {"schema_version": 1, "marks": {"ready": 1.0}}, "t")
    assert timeline.marks == {Mark.READY: 1.0}
