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
from pathlib import Path

import pytest
from test_job_runtime import _spec_dict

from evalwatt.base.layout import Layout
from evalwatt.config.load import from_dict
from evalwatt.contracts.spec import JobSpec
from evalwatt.jobs.packs import judge_passes, model_packs
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.estimate import per_model_preview
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime.packed import run_model_job
from evalwatt.runtime.runner import run_job
from evalwatt.runtime.server import Server, ServerError, free_port

HF_MODEL = "Qwen2.5-32B-Instruct"

# Shaped like transformers serve for the job: /health answers once "loaded"; each POST's
# body is appended to a file with the time it came, and answered as a chat completion (or
# refused with 400 when told to).
RECORDING_SERVER = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    port, record, refuse = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "refuse"
    time.sleep(0.3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 500)
            self.end_headers()

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with open(record, "a") as out:
                out.write(json.dumps({"t": time.time(), "path": self.path, "body": body}) + "\\n")
            reply = {"choices": [{"message": {"role": "assistant", "content": "x"}}]}
            data = json.dumps({"detail": "no such model"} if refuse else reply).encode()
            self.send_response(400 if refuse else 200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
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


def test_each_job_kind_sends_its_own_sampling_first(per_model_hf) -> None:
    config, plan = per_model_hf
    run = RunJobs(config, plan, Layout.of(config.results_dir, config.run))
    for kind, job_id in run.jobs():
        spec = run.job(kind, job_id).spec
        first = spec.first_request_sampling()
        if kind == "model":
            assert spec.pack is not None
            assert first == {"temperature": spec.pack.cells[0].evaluation.temperature}
        elif kind == "judge-pass":
            assert first == {"temperature": config.judges["qnext"].temperature}
    cell = next(c for c in plan.cells.values() if c.temperature == 0.7)
    spec = RunJobs(config.replace(execution="per-cell"), plan, run.layout).job("cell", cell.id)
    assert spec.spec.first_request_sampling() == {"temperature": 0.7}
    with_top_p = spec.spec.evaluation.model_copy(update={"top_p": 0.9})  # type: ignore[union-attr]
    assert with_top_p.request_sampling() == {"temperature": 0.7, "top_p": 0.9}
    base = next(
        i
        for k, i in RunJobs(config.replace(execution="per-cell"), plan, run.layout).jobs()
        if k == "baseline"
    )
    assert run.job("baseline", base).spec.first_request_sampling() == {}


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


def _hf_baseline(tmp_path: Path, refuse: bool = False) -> tuple[JobSpec, Path]:
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
        "refuse" if refuse else "ok",
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
    assert result.marks["load_start"] < post["t"] < result.marks["ready"]


def test_a_refused_warm_up_fails_the_job_with_the_servers_answer(tmp_path) -> None:
    spec, _ = _hf_baseline(tmp_path, refuse=True)
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
