"""The job runtime with real processes: a fake OpenAI-compatible server (it only answers
/v1/models), the real sampler and padding. A load-only baseline needs nothing else, so the
whole job runs here in a few seconds; server failures must fail the job at once, with the tail
of the server's log."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evalwatt.runtime.job import run_job
from evalwatt.runtime.server import Server, ServerError

FAKE_SERVER = textwrap.dedent(
    """
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    name, port, delay, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    print("loading weights", flush=True)
    time.sleep(delay)
    if mode == "crash":
        print("CUDA out of memory: tried to allocate 20.00 GiB", flush=True)
        sys.exit(3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            served = name if mode == "ok" else "another-model"
            body = json.dumps({"data": [{"id": served}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    path = tmp_path / "fake_server.py"
    path.write_text(FAKE_SERVER)
    return path


def _spec(
    tmp_path: Path, server: Path, mode: str = "ok", window_s: float = 3.0, load_s: float = 0.3
) -> dict:
    return {
        "spec_version": 1,
        "kind": "baseline",
        "id": "fake__llama-cpp-g0-00000000",
        "run": "unit",
        "run_dir": str(tmp_path / "baselines" / "fake"),
        "model": {
            "name": "fake",
            "served_name": "fake",
            "backend": "llama-cpp",
            "path": str(server),
            "hf_id": "org/fake",
        },
        "server": {
            "argv": [sys.executable, "{model_path}", "fake", "{port}", str(load_s), mode],
            "settings": {},
            "settings_id": "x",
        },
        "ready_timeout_s": 20,
        "pad": {"accounting_window_s": window_s, "margin_s": 0.5},
        "sampler": {"interval_s": 0.05, "cpu_watts_per_core": 10.0},
    }


def test_a_baseline_job_runs_pads_and_writes_its_result(tmp_path, fake_server):
    started = time.time()
    result = run_job(_spec(tmp_path, fake_server))
    run_dir = tmp_path / "baselines" / "fake"
    marks = result["marks"]
    order = ["job_start", "load_start", "ready", "exit", "pad_start", "pad_end", "job_end"]
    assert [marks[m] for m in order] == sorted(marks[m] for m in order)
    assert "inference_start" not in marks  # load-only
    assert marks["ready"] - marks["load_start"] >= 0.3  # the fake server's loading delay
    # Padded to the window plus margin, measured between its marks.
    assert marks["job_end"] - marks["job_start"] >= 3.5 - 0.05
    assert marks["pad_end"] - marks["pad_start"] == pytest.approx(
        result["pad_requested_s"], abs=0.1
    )
    assert result["pad_requested_s"] > 1.5
    assert time.time() - started < 15
    # Written last, and everything it names is there.
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["server"]["port"] > 0
    assert json.loads((run_dir / "timeline.json").read_text())["marks"] == marks
    assert "loading weights" in (run_dir / "server.log").read_text()
    trace = pq.read_table(run_dir / "trace-cpu-est.parquet").column("t_unix").to_pylist()
    assert trace[0] <= marks["job_start"] and trace[-1] >= marks["job_end"] - 0.1
    assert not list(run_dir.glob("*.partial"))


def test_a_second_attempt_sets_the_first_aside(tmp_path, fake_server):
    spec = _spec(tmp_path, fake_server, window_s=0)
    run_job(spec)
    run_job(spec)
    attempts = list((tmp_path / "baselines").glob("fake.attempt-*"))
    assert len(attempts) == 1 and (attempts[0] / "result.json").exists()
    assert (tmp_path / "baselines" / "fake" / "result.json").exists()


def test_a_crashing_server_fails_the_job_with_its_log(tmp_path, fake_server):
    started = time.time()
    with pytest.raises(ServerError, match=r"(?s)exited with code 3.*CUDA out of memory"):
        run_job(_spec(tmp_path, fake_server, mode="crash"))
    assert time.time() - started < 10  # at once, not after the ready timeout
    run_dir = tmp_path / "baselines" / "fake"
    assert not (run_dir / "result.json").exists()
    assert "exit" in json.loads((run_dir / "timeline.json").read_text())["marks"]


def test_a_server_serving_another_model_fails_the_job(tmp_path, fake_server):
    with pytest.raises(ServerError, match="not 'fake'"):
        run_job(_spec(tmp_path, fake_server, mode="wrong-name"))


def test_a_server_that_never_answers_times_out(tmp_path):
    log = tmp_path / "server.log"
    server = Server.start(
        [sys.executable, "-c", "import time; print('stuck'); time.sleep(60)"], "127.0.0.1", 1, log
    )
    try:
        with pytest.raises(ServerError, match=r"(?s)not ready after 1 s.*stuck"):
            server.wait_ready(1.0, "x", poll_s=0.1)
    finally:
        assert server.stop(grace_s=5) != 0


def test_sigterm_stops_the_server_and_the_sampler(tmp_path, fake_server):
    """A job killed by Slurm (SIGTERM) leaves no server behind and no result."""
    import signal
    import subprocess

    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(_spec(tmp_path, fake_server, window_s=60, load_s=30)))
    job = subprocess.Popen([sys.executable, "-m", "evalwatt", "job", str(spec_path)])
    run_dir = tmp_path / "baselines" / "fake"
    deadline = time.monotonic() + 20
    while "load_start" not in (
        json.loads((run_dir / "timeline.json").read_text())["marks"]
        if (run_dir / "timeline.json").exists()
        else {}
    ):
        assert time.monotonic() < deadline, "the job never started its server"
        time.sleep(0.1)
    time.sleep(1.0)  # the server is loading: a job killed now must not orphan it
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=20) == 128 + signal.SIGTERM
    assert not (run_dir / "result.json").exists()
    assert (run_dir / "trace-cpu-est.parquet").exists()  # the sampler closed its trace
    # The fake server runs in its own session: it must have been stopped, not orphaned.
    out = subprocess.run(["pgrep", "-f", str(fake_server)], capture_output=True, text=True)
    assert out.stdout.strip() == "", f"server still running: {out.stdout}"
    assert "exit" in json.loads((run_dir / "timeline.json").read_text())["marks"]
