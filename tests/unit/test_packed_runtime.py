"""The per-model job and the judge pass with real processes: a fake OpenAI-compatible server
that answers chat completions, real Inspect evaluations (one single-task ``eval()`` per cell),
the real sampler (the CPU-time model on this machine, no GPU) and its trace parts.

A model job of 3 cells writes 3 results, each readable on its own, with its energy in the
finished trace parts; killed (SIGTERM, or SIGKILL) after its 2nd cell it keeps 2 valid results
whose energy can still be computed, and a rerun of the same spec skips them byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.sampler import SamplerStatus
from evalwatt.contracts.spec import JobSpec
from evalwatt.energy.sources import TraceSource
from evalwatt.energy.trace_files import read_trace_parts
from evalwatt.runtime.runner import run_job

# Answers every chat completion with one short text after a delay that grows with the prompt
# (a cell with longer prompts is slower); its pid in its log, to stop it after a SIGKILL.
CHAT_SERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    name, port = sys.argv[1], int(sys.argv[2])
    record = os.environ.get("CHAT_RECORD")  # a file to append each request's body to
    print("PID", os.getpid(), flush=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": name, "object": "model"}]})

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if record:
                with open(record, "a") as out:
                    out.write(json.dumps(request) + "\\n")
            words = len(str(request["messages"][-1]["content"]).split())
            time.sleep(0.01 * words if words <= 100 else 0.02)  # a judge's prompt: quick
            self._send({
                "id": "x", "object": "chat.completion", "created": int(time.time()),
                "model": name,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant",
                                         "content": 'an answer {"score": 7}'}}],
                "usage": {"prompt_tokens": words, "completion_tokens": 2,
                          "total_tokens": words + 2},
            })

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)
CELLS = ("fake__synthetic__c1", "fake__synthetic__c2", "fake__synthetic__slow")


@pytest.fixture
def chat_server(tmp_path: Path) -> Path:
    path = tmp_path / "chat_server.py"
    path.write_text(CHAT_SERVER)
    return path


def _evaluation(max_connections: int, words: int) -> dict:
    return {
        "benchmark": "synthetic",
        "task": "evalwatt/synthetic_prompts",
        "task_args": {"samples": 6, "words": words},
        "limit": None,
        "max_connections": max_connections,
        "temperature": 0.0,
        "top_p": None,
        "top_k": None,
        "max_tokens": 8,
        "score_in_job": True,
    }


def _base(tmp_path: Path, server: Path, kind: str, job_id: str, folder: str) -> dict:
    return {
        "schema_version": JobSpec.known_version(),
        "kind": kind,
        "job_id": job_id,
        "run": "unit",
        "run_dir": str(tmp_path / folder / job_id),
        "model": {
            "name": "fake",
            "served_name": "fake",
            "backend": "llama-cpp",
            "path": str(server),
            "hf_id": "org/fake",
        },
        "server": {
            "argv": [sys.executable, "{model_path}", "fake", "{port}"],
            "settings": {
                "backend": "llama-cpp",
                "gpus": 0,
                "cpus": 1,
                "quantization": "gguf",
                "context_tokens": None,
                "server_args": [],
            },
            "baseline_id": "fake__llama-cpp-g0-00000000",
        },
        "ready_timeout_s": 20,
        "pad": {"accounting_window_s": 0, "margin_s": 0},
        "sampler": {"interval_s": 0.05, "cpu_watts_per_core": 10.0},
    }


def _writingbench(max_connections: int) -> dict:
    """The demo's judge-scored benchmark: two queries, one checklist item."""
    task_args = {"sample_ids": [202, 194], "checklist_items": 1}
    return {
        **_evaluation(max_connections, 0),
        "benchmark": "writingbench",
        "task": "evalwatt/writingbench_offline",
        "task_args": task_args,
        "score_in_job": False,
    }


def _model_spec(tmp_path: Path, server: Path, cells: list | None = None) -> JobSpec:
    cells = cells or [
        (CELLS[0], _evaluation(1, 2)),
        (CELLS[1], _evaluation(2, 2)),
        (CELLS[2], _evaluation(2, 60)),  # ~0.6 s a request: still running when killed
    ]
    spec = _base(tmp_path, server, "model", "fake__pack", "models")
    spec["pack"] = {
        "reference_idle_s": 0.3,
        "cooldown": {"max_s": 1.0, "margin_w": 10.0},
        "cells": [
            {"cell_id": cid, "run_dir": str(tmp_path / "cells" / cid), "evaluation": ev}
            for cid, ev in cells
        ],
    }
    return JobSpec.model_validate(spec)


def _judging(tmp_path: Path, cells, max_connections: int) -> dict:
    """A judge pass's work: the model job's results of ``cells`` under tmp_path/cells, each
    judged into tmp_path/judges/<cell>."""
    return {
        "temperature": 0.0,
        "max_connections": max_connections,
        "max_tokens": 8,
        "cells": [
            {
                "cell_id": cid,
                "cell_result": str(tmp_path / "cells" / cid / "result.json"),
                "run_dir": str(tmp_path / "judges" / cid),
            }
            for cid in cells
        ],
    }


def _energy_j(cell: JobResult, window: tuple[Mark, Mark]) -> float:
    """A packed cell's CPU-time-model energy over one of its windows, from the finished trace
    parts its job's sampler lists (sampler.json in ``packed_in``)."""
    assert cell.packed_in is not None and cell.sampler is None
    status = SamplerStatus.model_validate_json((cell.packed_in / "sampler.json").read_text())
    trace = read_trace_parts([cell.packed_in / f for f in status.traces["cpu-model"].files])
    marks = {str(m): t for m, t in cell.marks.items()}
    return TraceSource(trace, marks).mark_window(*window).energy_j


def _check_cell(tmp_path: Path, spec: JobSpec, cell_id: str) -> JobResult:
    """A cell's result read on its own: its spec the one a cell job would have, its marks
    the job's load and reference idle then its own windows, its energy computable."""
    result = read_contract(JobResult, tmp_path / "cells" / cell_id / "result.json")
    (packed,) = [c for c in spec.pack.cells if c.cell_id == cell_id]
    assert result.kind == "cell" and result.job_id == cell_id
    assert result.status == JobStatus.OK, result.problems
    assert result.spec == spec.packed_cell_spec(packed)
    assert result.packed_in == spec.run_dir and result.server.exit_code is None
    order = [
        Mark.JOB_START,
        Mark.LOAD_START,
        Mark.READY,
        Mark.REFERENCE_IDLE_START,
        Mark.REFERENCE_IDLE_END,
        Mark.COOLDOWN_START,
        Mark.COOLDOWN_END,
        Mark.INFERENCE_START,
        Mark.GENERATION_START,
        Mark.GENERATION_END,
        Mark.INFERENCE_END,
        Mark.SCORING_START,
        Mark.SCORING_END,
    ]
    assert [result.marks[m] for m in order] == sorted(result.marks[m] for m in order)
    assert Mark.EXIT not in result.marks and Mark.JOB_END not in result.marks
    assert result.marks[Mark.REFERENCE_IDLE_END] - result.marks[Mark.REFERENCE_IDLE_START] >= 0.3
    # no GPU here: the cooldown ends at once, and no temperature is recorded (never a 0)
    assert result.cooldown is not None and result.cooldown.ended_by == "no_power_reading"
    assert result.cooldown.reference_power_w is None and result.temperatures_c == {}
    assert result.generation.samples_completed == 6 and result.scoring.score == 1.0
    assert result.generation_window.null_reason is None
    assert _energy_j(result, (Mark.INFERENCE_START, Mark.INFERENCE_END)) > 0
    return result


def test_a_model_job_writes_each_cell_and_a_rerun_skips_them(tmp_path, chat_server):
    spec = _model_spec(tmp_path, chat_server)
    job = run_job(spec)
    assert job.kind == "model" and job.status == JobStatus.OK
    assert [(c.cell_id, c.status) for c in job.cells] == [(c, "ok") for c in CELLS]
    results = [_check_cell(tmp_path, spec, cid) for cid in CELLS]
    # one server for all: the cells share the job's load marks and its server's port
    assert {r.marks[Mark.READY] for r in results} == {job.marks[Mark.READY]}
    assert {r.server.port for r in results} == {job.server.port}
    assert job.server.exit_code is not None and job.sampler.final
    # a trace part per cell, then the last: the cells' windows each in a finished part
    assert job.sampler.parts == 4
    assert len(job.sampler.traces["cpu-model"].files) == 4
    later = [r.marks[Mark.INFERENCE_START] for r in results]
    assert later == sorted(later)
    # the steady state of the 1-connection cell: from the 1st request to the 4th completion
    steady = results[0].steady_window
    assert steady is not None and steady.null_reason is None and steady.requests == 6
    assert 0 < steady.output_tokens <= 12
    assert results[0].marks[Mark.STEADY_START] == steady.start

    before = {c: (tmp_path / "cells" / c / "result.json").read_bytes() for c in CELLS}
    again = run_job(spec)
    assert [c.status for c in again.cells] == ["skipped_done"] * 3
    after = {c: (tmp_path / "cells" / c / "result.json").read_bytes() for c in CELLS}
    assert after == before
    assert not list((tmp_path / "cells").glob("*.attempt-*"))  # untouched, not set aside


def _run_until_second_cell(tmp_path: Path, spec: JobSpec) -> subprocess.Popen:
    spec_path = tmp_path / "spec.json"
    write_contract(spec_path, spec)
    job = subprocess.Popen([sys.executable, "-m", "evalwatt", "job", str(spec_path)])
    second = tmp_path / "cells" / CELLS[1] / "result.json"
    deadline = time.monotonic() + 120
    while not second.exists():
        assert job.poll() is None, "the job ended before its second cell"
        assert time.monotonic() < deadline, "the second cell never finished"
        time.sleep(0.05)
    return job


def _server_pid(tmp_path: Path) -> int:
    log = (tmp_path / "models" / "fake__pack" / "server.log").read_text()
    return int(next(line.split()[1] for line in log.splitlines() if line.startswith("PID ")))


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_model_job_keeps_its_finished_cells(tmp_path, chat_server, kill):
    spec = _model_spec(tmp_path, chat_server)
    job = _run_until_second_cell(tmp_path, spec)
    server_pid = _server_pid(tmp_path)
    job.send_signal(kill)
    try:
        assert job.wait(timeout=60) == (128 + kill if kill == signal.SIGTERM else -kill)
    finally:
        if kill == signal.SIGKILL:  # the server (its own session) outlives a SIGKILL
            os.kill(server_pid, signal.SIGTERM)
    assert not (tmp_path / "models" / "fake__pack" / "result.json").exists()
    assert not (tmp_path / "cells" / CELLS[2] / "result.json").exists()
    kept = [_check_cell(tmp_path, spec, cid) for cid in CELLS[:2]]
    before = [(tmp_path / "cells" / c / "result.json").read_bytes() for c in CELLS[:2]]

    energy = [_energy_j(r, (Mark.INFERENCE_START, Mark.INFERENCE_END)) for r in kept]

    again = run_job(spec)
    assert [c.status for c in again.cells] == ["skipped_done", "skipped_done", "ok"]
    assert [(tmp_path / "cells" / c / "result.json").read_bytes() for c in CELLS[:2]] == before
    # the kept cells point at the first attempt's files, left where they were: the rerun
    # wrote its own in a folder inside, its result saying where
    assert again.packed_in is not None and again.packed_in.parent == spec.run_dir
    assert again.packed_in.name.startswith("rerun-")
    assert [_energy_j(r, (Mark.INFERENCE_START, Mark.INFERENCE_END)) for r in kept] == energy
    third = read_contract(JobResult, tmp_path / "cells" / CELLS[2] / "result.json")
    assert third.packed_in == again.packed_in and third.status == JobStatus.OK
    assert third.marks[Mark.READY] == again.marks[Mark.READY]
    assert _energy_j(third, (Mark.INFERENCE_START, Mark.INFERENCE_END)) > 0


def test_a_failing_cell_is_recorded_and_the_job_exits_1(tmp_path, chat_server):
    spec = _model_spec(tmp_path, chat_server)
    cells = list(spec.pack.cells)
    broken = cells[1].evaluation.model_copy(update={"task": "evalwatt/no_such_task"})
    cells[1] = cells[1].model_copy(update={"evaluation": broken})
    cells = cells[:2]
    spec = spec.model_copy(update={"pack": spec.pack.model_copy(update={"cells": tuple(cells)})})
    spec_path = tmp_path / "spec.json"
    write_contract(spec_path, spec)
    done = subprocess.run([sys.executable, "-m", "evalwatt", "job", str(spec_path)], check=False)
    assert done.returncode == 1
    job = read_contract(JobResult, spec.run_dir / "result.json")
    assert [c.status for c in job.cells] == ["ok", "failed"]
    assert job.cells[1].result is None and "No inspect tasks" in job.cells[1].error
    assert job.status == JobStatus.INCOMPLETE and CELLS[1] in job.problems[0]
    assert not (tmp_path / "cells" / CELLS[1] / "result.json").exists()
    _check_cell(tmp_path, spec, CELLS[0])


def test_a_judge_pass_scores_each_cell_with_one_judge(tmp_path, chat_server):
    """Three cells' logs scored by one judge server: each cell's judge result in its judged
    folder (kind judge), its judging window and the judge's calls in it, its energy from the
    pass's trace parts; a rerun skips them."""
    written = [(cid, _writingbench(c)) for cid, c in zip(CELLS, (1, 2, 2), strict=True)]
    run_job(_model_spec(tmp_path, chat_server, written))
    spec = _base(tmp_path, chat_server, "judge-pass", "fake-judge__pass", "judge-passes")
    spec["judging"] = _judging(tmp_path, CELLS, max_connections=2)
    spec = JobSpec.model_validate(spec)
    job = run_job(spec)
    assert job.kind == "judge-pass" and [c.status for c in job.cells] == ["ok"] * 3
    assert job.sampler.parts == 4
    for cell in spec.judging.cells:
        judged = read_contract(JobResult, cell.run_dir / "result.json")
        assert judged.kind == "judge" and judged.job_id == cell.cell_id
        assert judged.spec == spec.judged_cell_spec(cell) and judged.packed_in == spec.run_dir
        assert judged.status == JobStatus.OK, judged.problems
        assert judged.scoring.score == 7.0 and judged.scoring.log.parent.parent == cell.run_dir
        assert judged.generation_window.model_calls == 2  # the judge's, not the cell's
        assert judged.marks[Mark.JUDGING_START] < judged.marks[Mark.JUDGING_END]
        assert Mark.INFERENCE_START not in judged.marks
        assert _energy_j(judged, (Mark.JUDGING_START, Mark.JUDGING_END)) > 0
    again = run_job(spec)
    assert [c.status for c in again.cells] == ["skipped_done"] * 3


def test_a_vllm_judge_pass_salts_each_cells_requests_apart(tmp_path, chat_server, monkeypatch):
    """On vLLM, a pass's requests for a cell carry that cell's own cache salt, so that the
    judge's prefix cache is not shared between cells (JudgedCell.cache_salt)."""
    cells = CELLS[:2]
    run_job(_model_spec(tmp_path, chat_server, [(cid, _writingbench(1)) for cid in cells]))
    record = tmp_path / "judge_posts.jsonl"
    monkeypatch.setenv("CHAT_RECORD", str(record))
    spec = _base(tmp_path, chat_server, "judge-pass", "fake-judge__pass", "judge-passes")
    spec["model"]["backend"] = spec["server"]["settings"]["backend"] = "vllm"
    spec["server"]["settings"]["quantization"] = "none"
    spec["judging"] = _judging(tmp_path, cells, max_connections=1)
    spec = JobSpec.model_validate(spec)
    job = run_job(spec)
    assert [c.status for c in job.cells] == ["ok"] * 2, job.cells
    salts = [json.loads(line).get("cache_salt") for line in record.read_text().splitlines()]
    expected = [cell.cache_salt for cell in spec.judging.cells]
    assert len(set(expected)) == 2
    assert salts == [expected[0]] * 2 + [expected[1]] * 2  # each cell's 2 judge calls, in turn


def test_a_judge_pass_of_one_cell_in_its_folder_is_a_judge_job(tmp_path, chat_server):
    """Until passes are planned per judge model, a cell's judge job is a pass of that one
    cell in the cell's judged folder: one result there, kind judge, its own sampler."""
    cid = CELLS[0]
    run_job(_model_spec(tmp_path, chat_server, [(cid, _writingbench(1))]))
    spec = _base(tmp_path, chat_server, "judge-pass", cid, "judges")
    spec["judging"] = _judging(tmp_path, [cid], max_connections=2)
    result = run_job(JobSpec.model_validate(spec))
    assert result.kind == "judge" and result.packed_in is None and result.sampler is not None
    assert result.cells == () and result.server.exit_code is not None
    assert result.status == JobStatus.OK and result.scoring.score == 7.0
    assert json.loads((tmp_path / "judges" / cid / "result.json").read_text())["kind"] == "judge"
