"""The job runtime with real processes: a fake OpenAI-compatible server (it only answers
/v1/models), the real sampler and padding. A load-only baseline needs nothing else, so the
whole job runs here in a few seconds; server failures must fail the job at once, with the tail
of the server's log."""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

import evalwatt.runtime.runner as job_module
from evalwatt.base.vocabulary import JobStatus, Mark
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.result import EvalSummary, GenerationWindow, JobResult
from evalwatt.contracts.spec import JobSpec
from evalwatt.contracts.timeline import TimelineFile
from evalwatt.runtime.runner import run_job
from evalwatt.runtime.server import Server, ServerError

REPO = Path(__file__).resolve().parents[2]
FAKE_SERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    name, port, delay, mode = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    print("loading weights", flush=True)
    print("TMPDIR", os.environ.get("TMPDIR"), flush=True)
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


def _spec_dict(
    tmp_path: Path, server: Path, mode: str = "ok", window_s: float = 3.0, load_s: float = 0.3
) -> dict:
    return {
        "schema_version": JobSpec.known_version(),
        "kind": "baseline",
        "job_id": "fake__llama-cpp-g0-00000000",
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
        "pad": {"accounting_window_s": window_s, "margin_s": 0.5},
        "sampler": {"interval_s": 0.05, "cpu_watts_per_core": 10.0},
    }


def _spec(tmp_path: Path, server: Path, **kwargs) -> JobSpec:
    return JobSpec.model_validate(_spec_dict(tmp_path, server, **kwargs))


def test_a_baseline_job_runs_pads_and_writes_its_result(tmp_path, fake_server, monkeypatch):
    monkeypatch.setattr(job_module, "BASELINE_HOLD_S", 0.5)  # 3 s on a GPU, 3 s window here
    started = time.time()
    result = run_job(_spec(tmp_path, fake_server))
    run_dir = tmp_path / "baselines" / "fake"
    marks = result.marks
    order = ["job_start", "load_start", "ready", "exit", "pad_start", "pad_end", "job_end"]
    assert [marks[m] for m in order] == sorted(marks[m] for m in order)
    assert "inference_start" not in marks  # load-only
    assert marks["ready"] - marks["load_start"] >= 0.3  # the fake server's loading delay
    assert marks["exit"] - marks["ready"] >= 0.5  # held loaded and idle, like a cell's Inspect
    # Padded to the window plus margin, measured between its marks.
    assert marks["job_end"] - marks["job_start"] >= 3.5 - 0.05
    assert marks["pad_end"] - marks["pad_start"] == pytest.approx(result.pad_requested_s, abs=0.1)
    assert result.pad_requested_s > 1.5
    assert time.time() - started < 15
    # Written last, through its contract, and everything it names is there.
    on_disk = read_contract(JobResult, run_dir / "result.json")
    assert on_disk == result
    assert on_disk.status == JobStatus.OK and on_disk.problems == ()
    assert on_disk.server.port > 0 and on_disk.scheduler_job_id is None
    assert on_disk.spec == _spec(tmp_path, fake_server)
    assert read_contract(TimelineFile, run_dir / "timeline.json").marks == marks
    assert on_disk.sampler.traces["cpu-model"].file == "trace-cpu-est.parquet"
    assert "loading weights" in (run_dir / "server.log").read_text()
    # The server's temporary folder was the job's, through a short link; both are gone.
    link = on_disk.server.env["TMPDIR"]
    assert f"TMPDIR {link}" in (run_dir / "server.log").read_text()
    assert Path(link).parent == Path(tempfile.gettempdir()) and not Path(link).exists()
    assert not (run_dir / "server-tmp").exists()
    assert on_disk.server_metrics is None  # a baseline has no inference window
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


def test_ready_is_stamped_soon_after_the_server_answers(tmp_path, fake_server):
    """Readiness is polled every POLL_S (0.1 s), not every second: ``ready`` comes at most
    about one poll after the server started listening (issue 10), so loaded idle is not
    counted as loading."""
    from evalwatt.runtime.server import POLL_S, free_port

    assert POLL_S <= 0.2
    listening = tmp_path / "listening"
    script = tmp_path / "server.py"
    serve = 'HTTPServer(("127.0.0.1", port), Handler).serve_forever()'
    assert serve in FAKE_SERVER
    script.write_text(
        FAKE_SERVER.replace(
            serve,
            'server = HTTPServer(("127.0.0.1", port), Handler)\n'
            f"open({str(listening)!r}, 'w').write(repr(time.time()))\n"
            "server.serve_forever()",
        )
    )
    port = free_port()
    argv = [sys.executable, str(script), "fake", str(port), "0.6", "ok"]
    server = Server.start(argv, "127.0.0.1", port, tmp_path / "server.log")
    try:
        ready = server.wait_ready(10.0, "fake")
    finally:
        server.stop(grace_s=5)
    late = ready - float(listening.read_text())
    assert 0 <= late < POLL_S + 0.1


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
    spec_path.write_text(json.dumps(_spec_dict(tmp_path, fake_server, window_s=60, load_s=30)))
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


# --- every contract file a run writes, from real job runs ------------------------------------
#
# The demo's jobs run for real against the fake server: the baseline as it is, the cell and
# the judge job as load-only runs in their own folders, whose results are then given the
# answers and scores an Inspect run would have produced (Inspect needs a real model). The
# energy step, the final table and the audit then run on those files, as Snakemake runs them.


def _fake_served(job, fake_server: Path) -> JobSpec:
    """The job's spec, served by the fake server, not padded, and load-only."""
    spec = job.spec
    argv = (sys.executable, "{model_path}", spec.model.served_name, "{port}", "0.2", "ok")
    return spec.model_copy(
        update={
            "kind": "baseline",
            "evaluation": None,
            "judging": None,
            "model": spec.model.model_copy(update={"path": str(fake_server)}),
            "server": spec.server.model_copy(update={"argv": argv}),
            "pad": spec.pad.model_copy(update={"accounting_window_s": 1.0, "margin_s": 0.0}),
            "sampler": spec.sampler.model_copy(update={"interval_s": 0.05}),
        }
    )


def _summary(log: Path, **extra) -> EvalSummary:
    fields = {
        "log": log,
        "status": "success",
        "task": "evalwatt/writingbench_offline",
        "samples_total": 2,
        "samples_completed": 2,
        "score": 0.5,
        "score_stderr": 0.1,
        "score_metric": "mean",
        "scorer": "writingbench_scorer",
        "score_null_reason": None,
        "started_at": "2026-01-01T00:00:00+00:00",
        "completed_at": "2026-01-01T00:00:01+00:00",
        "input_tokens": 100,
        "output_tokens": 40,
    }
    return EvalSummary(**{**fields, **extra})


def _as_worked(result: JobResult, job, start: Mark, end: Mark, **outcome) -> JobResult:
    """A load-only result as the job's own would be: its kind, its spec, its work window
    (between ready and exit, inside the trace), the model's calls in its middle half (the
    generation marks and their record) and its Inspect summaries."""
    marks = dict(result.marks)
    marks[start] = marks[Mark.READY]
    marks[end] = marks[Mark.EXIT]
    quarter = (marks[end] - marks[start]) / 4
    marks[Mark.GENERATION_START] = marks[start] + quarter
    marks[Mark.GENERATION_END] = marks[end] - quarter
    window = GenerationWindow(
        log=outcome.get("generation", outcome.get("scoring")).log,
        within=(start, end),
        start=marks[Mark.GENERATION_START],
        end=marks[Mark.GENERATION_END],
        model_calls=2,
        samples=2,
        ended_by_sample=0,
        null_reason=None,
    )
    update = {"kind": job.kind, "job_id": job.job_id, "spec": job.spec, "marks": marks}
    return result.model_copy(update={**update, "generation_window": window, **outcome})


class _Named(list):
    """Snakemake's named file lists: iterable, and each file an attribute."""

    def __init__(self, files: dict[str, str]) -> None:
        super().__init__(files.values())
        self.__dict__.update(files)


@pytest.fixture
def demo_run(tmp_path, fake_server):
    """The demo's writingbench cell at temperature 0, its baseline and its judge job."""
    from evalwatt.base.layout import Layout
    from evalwatt.config.load import load_config
    from evalwatt.jobs.resolve import resolve_job
    from evalwatt.plan.matrix import plan_run

    config = load_config(REPO / "config" / "config.yaml")
    config = config.replace(results_dir=str(tmp_path / "results"))
    plan = plan_run(config)
    layout = Layout.of(config.results_dir, config.run)
    cell_id = "SmolLM2-135M-Instruct__writingbench__t0__c2"
    cell = resolve_job(config, plan, layout, "cell", cell_id)
    judge = resolve_job(config, plan, layout, "judge", cell_id)
    base = resolve_job(config, plan, layout, "baseline", cell.baseline_id)
    for job in (cell, judge, base):
        write_contract(job.spec_path, job.spec)
    baseline = run_job(_fake_served(base, fake_server))
    write_contract(base.files.result, baseline.model_copy(update={"spec": base.spec}))
    gen_log = cell.files.eval_dir / "answers.eval"
    worked = _as_worked(
        run_job(_fake_served(cell, fake_server)),
        cell,
        Mark.INFERENCE_START,
        Mark.INFERENCE_END,
        generation=_summary(gen_log),
    )
    write_contract(cell.files.result, worked)
    judged = _as_worked(
        run_job(_fake_served(judge, fake_server)),
        judge,
        Mark.JUDGING_START,
        Mark.JUDGING_END,
        scoring=_summary(judge.files.judged_log, score=0.75),
    )
    write_contract(judge.files.result, judged)
    return config, plan, layout, cell_id, (cell, judge, base)


def test_every_contract_file_of_a_run_loads_through_its_model(demo_run, tmp_path):
    from evalwatt.base.vocabulary import Family
    from evalwatt.contracts.record import CellRecord, FamilyEnergy, FamilyUnavailable
    from evalwatt.smk.energy import write_record
    from evalwatt.smk.final import final_files, write_final
    from evalwatt.table.final import read_table

    config, plan, layout, cell_id, jobs = demo_run
    for job in jobs:
        assert read_contract(JobSpec, job.spec_path) == job.spec
        result = read_contract(JobResult, job.files.result)
        assert (result.kind, result.job_id, result.spec) == (job.kind, job.job_id, job.spec)
        timeline = read_contract(TimelineFile, job.files.timeline)
        assert set(timeline.marks) <= set(result.marks)

    wildcards = SimpleNamespace(cell=cell_id)
    record_path = layout.cell_energy(cell_id)
    write_record(config, plan, layout, wildcards, [str(record_path)], [str(tmp_path / "e.log")])
    record = read_contract(CellRecord, record_path)
    assert record.jobs.judge is not None and record.jobs.judge.job_id == cell_id
    assert record.row.scored_by == "judge job" and record.row.score == 0.75
    row_ = record.row
    assert row_.judge_duration_s is not None and row_.judge_duration_s >= 0
    # the generation windows (the headline) inside the evaluation windows, half as long
    assert row_.inference_duration_s == pytest.approx(row_.evaluation_duration_s / 2, abs=1e-6)
    assert row_.judge_duration_s == pytest.approx(row_.judge_evaluation_duration_s / 2, abs=1e-6)
    assert row_.generation_window_null_reason is None
    assert record.jobs.cell.generation_window is not None
    assert record.jobs.cell.generation_window.model_calls == 2
    assert record.row.baseline_id == jobs[2].job_id
    assert record.row.scheduler_job_id.startswith("local:")
    est = record.energy[Family.CPU_EST]
    assert isinstance(est, FamilyEnergy) and est.source == "cpu-model"
    assert est.terms["judge"].formula.startswith("E(generation_end) - E(generation_start)")
    assert est.terms["judge_evaluation"].formula.startswith("E(judging_end) - E(judging_start)")
    assert est.terms["judge"].energy_j is not None and est.terms["judge"].energy_j >= 0
    assert est.terms["judge"].energy_j <= est.terms["judge_evaluation"].energy_j
    assert est.terms["inference"].energy_j <= est.terms["evaluation"].energy_j
    assert record.row.cpu_est.judge_energy_j == est.terms["judge"].energy_j
    assert record.row.cpu_est.judge_evaluation_energy_j == est.terms["judge_evaluation"].energy_j
    assert record.row.cpu_est.evaluation_energy_j == est.terms["evaluation"].energy_j
    assert isinstance(record.energy[Family.GPU], FamilyUnavailable)
    assert record.row.gpu.energy_null_reason

    outputs = _Named(final_files(layout))
    write_final(config, [str(record_path)], outputs, [str(tmp_path / "f.log")])
    (row,) = read_table(outputs.energy_table_parquet).to_pylist()
    assert row["cell_id"] == cell_id and row["judge_scheduler_job_id"].startswith("local:")
    audit = Path(outputs.audit).read_text()
    assert f"## Cell `{cell_id}`" in audit and "status ok" in audit
    assert "E(judging_end) - E(judging_start)" in audit
    assert "wrote" in (tmp_path / "f.log").read_text()
