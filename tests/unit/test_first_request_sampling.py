"""A server that keeps its first request's sampling settings (``transformers serve``, backend
hf: ``config.model_entry.SAMPLING_AT_FIRST_REQUEST``).

Its continuous batching is built on the first request, with that request's temperature and
top_p, and every later request gets them whatever it asks (tests/unit/test_hf_backend.py
checks this of the real server). So a job sends a one-token warm-up with its cells' settings
before ``ready`` (the batching's build is loading, not the first cell's generation), and a
model job serves one sampling setting: the planner gives each its own job, the preview counts
the same jobs, and the job runtime refuses a model job of several.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_job_runtime import _spec_dict

from evalwatt.base.layout import JobFiles, Layout
from evalwatt.base.vocabulary import Mark
from evalwatt.config.load import from_dict
from evalwatt.contracts.spec import EvaluationSpec, JobSpec
from evalwatt.jobs.packs import judge_passes, model_packs
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.estimate import per_model_preview
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.inspect_steps import generate_config
from evalwatt.runtime.packed import _require_one_sampling, run_model_job
from evalwatt.runtime.runner import run_job
from evalwatt.runtime.server import Server, ServerError, free_port
from evalwatt.runtime.serving import served
from evalwatt.runtime.timeline import Timeline

HF_MODEL = "Qwen2.5-32B-Instruct"

# Shaped like transformers serve for the job: /health answers once "loaded"; each POST's
# body is appended to a file with the time it came, and answered as a chat completion REPLY_S
# later, on its own thread (as a batching server answers the requests in flight together), or
# refused with 400 when told to ("refuse": every POST; "refuse-3": the third, at once, while
# the others take 5 s).
RECORDING_SERVER = textwrap.dedent(
    """
    import json, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    port, record, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    REPLY_S = 0.5
    lock, posts = threading.Lock(), []
    time.sleep(0.3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 500)
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                posts.append(body)
                count = len(posts)
                line = {"t": time.time(), "path": self.path, "body": body}
                with open(record, "a") as out:
                    out.write(json.dumps(line) + "\\n")
            refuse = mode == "refuse" or (mode == "refuse-3" and count == 3)
            # the batching's build: the answer comes later
            time.sleep(5.0 if mode == "refuse-3" and not refuse else 0 if refuse else REPLY_S)
            reply = {"choices": [{"message": {"role": "assistant", "content": "x"}}]}
            data = json.dumps({"detail": "no such model"} if refuse else reply).encode()
            self.send_response(400 if refuse else 200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


@pytest.fixture
def per_model_hf(small_config, tmp_path):
    """The small config in per-model execution, its first model served by hf (two
    temperatures, two max_connections, two benchmarks: 8 cells)."""
    small_config["models"][0].update(backend="hf", total_params_b=7.0)
    small_config.update(execution="per-model", results_dir=str(tmp_path / "results"))
    config = from_dict(small_config, Path("."))
    return config, plan_run(config)


def _on_vllm(config):
    """The same config, its hf model served by vLLM."""
    first = config.models[0].model_copy(update={"backend": "vllm"})
    return config.replace(models=(first, *config.models[1:]))


def test_an_hf_model_gets_one_model_job_per_sampling_setting(per_model_hf) -> None:
    config, plan = per_model_hf
    packs = model_packs(plan, config, plan.cells)
    hf = [p for p in packs if p.model == HF_MODEL]
    temperatures = [{plan.cells[c].temperature for c in p.cells} for p in hf]
    assert sorted(map(sorted, temperatures)) == [[0.0], [0.7]]
    assert sum(len(p.cells) for p in hf) == 8
    assert len({p.group for p in hf}) == 1 and len({p.id for p in hf}) == 2  # one baseline
    # the same model on vLLM, whose server takes each request's sampling: one job for both
    vllm = _on_vllm(config)
    vllm_plan = plan_run(vllm)
    (pack,) = [p for p in model_packs(vllm_plan, vllm, vllm_plan.cells) if p.model == HF_MODEL]
    assert {vllm_plan.cells[c].temperature for c in pack.cells} == {0.0, 0.7}


def test_the_preview_counts_the_jobs_the_run_submits(per_model_hf) -> None:
    config, plan = per_model_hf
    preview = per_model_preview(plan, config)
    assert preview.jobs.model == len(model_packs(plan, config, plan.cells))
    assert preview.jobs.judge_pass == len(judge_passes(plan, config, plan.cells))
    # the same study on vLLM: one model job fewer
    vllm = _on_vllm(config)
    vllm_plan = plan_run(vllm)
    assert per_model_preview(vllm_plan, vllm).jobs.model == preview.jobs.model - 1


def _job_specs(config, plan) -> Iterator[tuple[str, str, JobSpec]]:
    """(kind, job id, spec) of every job of both execution modes."""
    layout = Layout.of(config.results_dir, config.run)
    for execution in ("per-model", "per-cell"):
        run = RunJobs(config.replace(execution=execution), plan, layout)
        for kind, job_id in run.jobs():
            yield kind, job_id, run.job(kind, job_id).spec


def test_each_job_kind_sends_its_own_sampling_first(per_model_hf) -> None:
    config, plan = per_model_hf
    seen, evaluation = set(), None
    for kind, job_id, spec in _job_specs(config, plan):
        first, seen = spec.first_request_sampling(), seen | {kind}
        evaluation = evaluation or spec.evaluation
        if spec.pack is not None:
            sent = [c.evaluation.request_sampling() for c in spec.pack.cells]
            assert first == sent[0]
            if spec.model.backend == "hf":  # what every cell of the job sends
                assert all(s == first for s in sent)
        elif spec.evaluation is not None:
            cell = plan.cells[job_id]
            assert first == {"temperature": cell.temperature}
        elif spec.judging is not None:
            (judge,) = {plan.cells[c.cell_id].judge for c in spec.judging.cells}
            assert first == {"temperature": config.judges[judge].temperature}
        else:
            assert kind == "baseline" and first == {}  # the server's defaults
    assert seen == {"model", "judge-pass", "cell", "baseline"}
    assert evaluation is not None
    with_top_p = evaluation.model_copy(update={"top_p": 0.9})
    assert with_top_p.request_sampling() == {"temperature": evaluation.temperature, "top_p": 0.9}


def test_the_planner_and_the_runtime_group_by_the_same_sampling(small_config, tmp_path) -> None:
    """``Cell.sampling_key`` (the planner's groups, the preview's count) and
    ``EvaluationSpec.sampling_key`` (the runtime's refusal) are two records of one setting:
    every cell's job spec, in either mode, carries the key its plan cell has, top_p
    included."""
    small_config["models"][0].update(backend="hf", total_params_b=7.0)
    small_config.update(execution="per-model", results_dir=str(tmp_path / "results"))
    small_config["sampling"] = {small_config["models"][0]["family"]: {"top_p": 0.8}}
    config = from_dict(small_config, Path("."))
    plan = plan_run(config)
    keys = set()
    for _, job_id, spec in _job_specs(config, plan):
        evaluations = [(c.cell_id, c.evaluation) for c in spec.pack.cells] if spec.pack else []
        if spec.evaluation is not None:
            evaluations.append((job_id, spec.evaluation))
        for cell_id, evaluation in evaluations:
            assert evaluation.sampling_key == plan.cells[cell_id].sampling_key, cell_id
            keys.add(evaluation.sampling_key)
    assert {(0.0, 0.8), (0.7, 0.8), (0.0, None), (0.7, None)} <= keys


def test_a_model_job_of_two_sampling_settings_on_vllm_is_run(per_model_hf) -> None:
    """vLLM takes each request's sampling: the runtime lets its model jobs mix them."""
    config, _ = per_model_hf
    vllm = _on_vllm(config)
    run = RunJobs(vllm, plan_run(vllm), Layout.of(config.results_dir, config.run))
    (spec,) = [
        run.job("model", i).spec
        for k, i in run.jobs()
        if k == "model" and run.job("model", i).spec.model.name == HF_MODEL
    ]
    assert spec.pack is not None and len({c.evaluation.temperature for c in spec.pack.cells}) == 2
    _require_one_sampling(spec)  # no error


def test_a_model_job_of_two_sampling_settings_on_hf_is_refused(per_model_hf) -> None:
    config, plan = per_model_hf
    run = RunJobs(config, plan, Layout.of(config.results_dir, config.run))
    specs = [run.job("model", i).spec for k, i in run.jobs() if k == "model"]
    hf = [s for s in specs if s.model.backend == "hf"]
    assert len(hf) == 2 and all(s.pack is not None for s in hf)
    cells = hf[0].pack.cells + hf[1].pack.cells  # type: ignore[union-attr]
    mixed = hf[0].model_copy(update={"pack": hf[0].pack.model_copy(update={"cells": cells})})  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"(?s)applies its first request's.*one setting"):
        run_model_job(mixed)
    assert not mixed.run_dir.exists()  # refused before anything started


def _hf_baseline(tmp_path: Path, mode: str = "ok") -> tuple[JobSpec, Path]:
    server, record = tmp_path / "hf_like.py", tmp_path / "posts.jsonl"
    server.write_text(RECORDING_SERVER)
    data = _spec_dict(tmp_path, server, window_s=0)
    data["model"]["backend"] = data["server"]["settings"]["backend"] = "hf"
    data["server"]["settings"]["quantization"] = "none"
    data["server"]["argv"] = [
        sys.executable,
        str(server),
        "{port}",
        str(record),
        mode,
    ]
    return JobSpec.model_validate(data), record


def test_the_warm_up_is_answered_before_ready(tmp_path) -> None:
    spec, record = _hf_baseline(tmp_path)
    result = run_job(spec)
    (post,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert post["path"] == "/v1/chat/completions"
    body = post["body"]
    assert body["model"] == str(tmp_path / "hf_like.py")  # the pinned id, as Inspect sends it
    assert body["max_tokens"] == 1 and "temperature" not in body  # a baseline: server defaults
    assert result.marks["load_start"] < post["t"]
    assert result.marks["ready"] - post["t"] >= 0.5  # ready once answered, not once sent


def test_a_refused_warm_up_fails_the_job_with_the_servers_answer(tmp_path) -> None:
    spec, _ = _hf_baseline(tmp_path, "refuse")
    with pytest.raises(ServerError, match=r"warm-up request refused: HTTP 400.*no such model"):
        run_job(spec)


def test_the_warm_up_sends_the_sampling_it_is_given(tmp_path) -> None:
    script, record = tmp_path / "hf_like.py", tmp_path / "posts.jsonl"
    script.write_text(RECORDING_SERVER)
    port = free_port()
    argv = [sys.executable, str(script), str(port), str(record), "ok"]
    server = Server.start(argv, "127.0.0.1", port, tmp_path / "server.log")
    try:
        server.wait_ready(10.0, "m", listed=False)
        server.warm_up("m", {"temperature": 0.7, "top_p": 0.9}, 10.0)
    finally:
        server.stop(grace_s=5)
    (post,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert post["body"]["temperature"] == 0.7 and post["body"]["top_p"] == 0.9


def test_a_cell_job_warms_up_with_its_cells_sampling(tmp_path) -> None:
    """From the job spec to the server: served() sends the cell's temperature and top_p."""
    base, record = _hf_baseline(tmp_path)
    evaluation = {
        "benchmark": "synthetic",
        "task": "evalwatt/synthetic_prompts",
        "task_args": {"samples": 2},
        "limit": None,
        "max_connections": 2,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": None,
        "max_tokens": 4,
        "score_in_job": True,
    }
    spec = JobSpec.model_validate(
        {**base.model_dump(mode="json"), "kind": "cell", "evaluation": evaluation}
    )
    files = JobFiles(spec.run_dir)
    files.root.mkdir(parents=True)
    timeline = Timeline(files.timeline)
    with served(spec, files, timeline):
        pass
    (post,) = [json.loads(line) for line in record.read_text().splitlines()]
    assert (post["body"]["temperature"], post["body"]["top_p"]) == (0.7, 0.9)
    assert timeline.marks[Mark.READY] - post["t"] >= 0.5


def test_each_cell_keeps_its_own_vllm_prefix_cache() -> None:
    """vLLM requests carry the cell's cache salt: one per cell, worked out from its settings
    alone (the same in every process), another for another cell of the same model job; other
    servers get none (transformers serve refuses fields it does not know: HTTP 422)."""
    data = {
        "benchmark": "piqa",
        "task": "inspect_evals/piqa",
        "task_args": {"b": 1, "a": [2, 3]},
        "limit": 10,
        "max_connections": 10,
        "temperature": 0.0,
        "top_p": None,
        "top_k": 20,
        "max_tokens": None,
        "score_in_job": True,
    }
    evaluation = EvaluationSpec.model_validate(data)
    reordered = EvaluationSpec.model_validate({**data, "task_args": {"a": [2, 3], "b": 1}})
    assert reordered.cache_salt == evaluation.cache_salt  # canonical, not dict order
    first = generate_config(evaluation, "vllm")
    assert first["extra_body"] == {"top_k": 20, "cache_salt": evaluation.cache_salt}
    for other in ({"max_connections": 100}, {"temperature": 0.7}, {"benchmark": "piqa-2"}):
        salt = generate_config(evaluation.model_copy(update=other), "vllm")["extra_body"]
        assert salt["cache_salt"] != evaluation.cache_salt and len(salt["cache_salt"]) == 16
    assert generate_config(evaluation, "llama-cpp")["extra_body"] == {"top_k": 20}
    untopped = evaluation.model_copy(update={"top_k": None})
    assert "extra_body" not in generate_config(untopped, "hf")
