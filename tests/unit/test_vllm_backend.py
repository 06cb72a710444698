"""The vllm backend: one server command on GPU and CPU, differing only in the device's own
settings; the planner's CPU jobs; the server's variables; vLLM's Prometheus counters and the
record's check of Inspect's token counts against them. No vLLM here (tests/integration/
test_vllm_cpu.py runs the real one)."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from evalwatt.base.layout import JobFiles, Layout
from evalwatt.config.load import from_dict
from evalwatt.contracts.result import EvalSummary, ServerMetrics
from evalwatt.contracts.spec import ServerSettings
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime import vllm_metrics
from evalwatt.runtime.backends import EXECUTOR_THREAD_VARIABLES, ServerPaths, backend
from evalwatt.runtime.server import server_temp
from evalwatt.runtime.serving import server_argv as _server_argv
from evalwatt.table.cells import token_check

PY = "/opt/py/bin/python"
CELL = "Qwen2.5-32B-Instruct__piqa__t0__c10"
GPU_FLAGS = {"--tensor-parallel-size": 1, "--gpu-memory-utilization": 1}  # flag: values
CPU_FLAGS = {"--enforce-eager": 0}


def _job(config_dict: dict, kind: str = "cell", job_id: str = CELL):
    config_dict.setdefault("job", {})["python"] = PY
    config = from_dict(config_dict, Path("."))
    plan = plan_run(config)
    job_id = job_id if kind == "cell" else plan.cells[CELL].baseline
    return resolve_job(config, plan, Layout.of("/evalwatt-unit/results", config.run), kind, job_id)


def _cpu_cluster(config_dict: dict) -> dict:
    # CPU-only: no GPU memory, model or GPU feature (config.cluster_rules refuses them)
    config_dict["cluster"].update(gpus_per_node=0, gpu_memory_gb=0, gpu_model="none")
    del config_dict["cluster"]["constraint"]
    del config_dict["judges"]  # its judge model is a 4-GPU model: keep to the CPU model's cells
    config_dict["benchmarks"]["writingbench"].update(scorer="exact-match", judge=None)
    return config_dict


def _without(argv: tuple[str, ...], flags: dict[str, int]) -> list[str]:
    out, skip = [], 0
    for word in argv:
        if skip:
            skip -= 1
        elif word in flags:
            skip = flags[word]
        else:
            out.append(word)
    return out


def test_cpu_and_gpu_command_lines_differ_only_in_the_device_flags(small_config):
    gpu = _job(small_config).spec.server
    cpu = _job(_cpu_cluster(small_config)).spec.server
    assert (gpu.settings.device, cpu.settings.device) == ("gpu", "cpu")
    assert gpu.argv[:3] == cpu.argv[:3] == (f"{Path(PY).parent}/vllm", "serve", "{model_path}")
    assert _without(gpu.argv, GPU_FLAGS) == _without(cpu.argv, CPU_FLAGS)
    assert set(gpu.argv) - set(cpu.argv) == {
        "--tensor-parallel-size",
        "2",
        "--gpu-memory-utilization",
        "0.9",
    }
    assert set(cpu.argv) - set(gpu.argv) == {"--enforce-eager"}
    # The server's variables: the same, plus the CPU build's own.
    paths = ServerPaths(tmp=Path("/t"), cache=Path("/c"))
    gpu_env = backend("vllm").server_env(gpu.settings, paths)
    cpu_env = backend("vllm").server_env(cpu.settings, paths)
    assert cpu_env.items() >= gpu_env.items()
    assert set(cpu_env) - set(gpu_env) == {
        "VLLM_TARGET_DEVICE",
        "VLLM_CPU_KVCACHE_SPACE",
        "VLLM_CPU_OMP_THREADS_BIND",
        *EXECUTOR_THREAD_VARIABLES,
    }
    assert all(cpu_env[name] is None for name in EXECUTOR_THREAD_VARIABLES)  # removed
    assert cpu_env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_a_vllm_model_on_a_cpu_only_cluster_plans_as_a_cpu_job(small_config):
    job = _job(_cpu_cluster(small_config))
    settings = job.spec.server.settings
    assert (job.resources.gpus, job.resources.cpus) == (0, 2)  # cpus_per_cpu_job
    assert settings.device == "cpu" and settings.gpu_memory_utilization is None
    assert (settings.cpu_kvcache_space_gib, settings.cpu_enforce_eager) == (1, True)
    assert "vllm-g0-" in job.baseline_id


def test_device_settings_shape_the_baseline(small_config):
    small_config["vllm"] = {"cpu_kvcache_space_gib": 4, "cpu_enforce_eager": False}
    job = _job(_cpu_cluster(small_config), kind="baseline")
    assert "--enforce-eager" not in job.spec.server.argv
    env = backend("vllm").server_env(job.spec.server.settings, ServerPaths(Path("/t"), Path("/c")))
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"


def test_the_server_executable_setting(small_config, tmp_path, monkeypatch):
    small_config["vllm"] = {"executable": "$EW_TEST_VENV/bin/vllm"}
    spec = _job(_cpu_cluster(small_config)).spec
    assert spec.server.argv[0] == "$EW_TEST_VENV/bin/vllm"  # expanded in the job, not here
    weights = tmp_path / "weights"
    weights.mkdir()
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"path": str(weights)})})
    monkeypatch.setenv("EW_TEST_VENV", str(tmp_path / "venv"))
    with pytest.raises(FileNotFoundError, match=r"no server executable at .*venv/bin/vllm"):
        _server_argv(spec, 8000, str(weights))  # at once, before any server starts
    vllm = tmp_path / "venv" / "bin" / "vllm"
    vllm.parent.mkdir(parents=True)
    vllm.write_text("#!/bin/sh\n")
    vllm.chmod(0o755)
    argv = _server_argv(spec, 8000, str(weights))
    assert argv[:3] == [str(vllm), "serve", str(weights)] and "8000" in argv


def test_device_must_have_gpus():
    base = dict(backend="vllm", cpus=2, quantization="none", context_tokens=None, server_args=())
    assert ServerSettings(gpus=0, **base).device == "cpu"  # implied when not written
    assert ServerSettings(gpus=2, **base).device == "gpu"
    with pytest.raises(ValueError, match="device gpu with 0 GPUs"):
        ServerSettings(gpus=0, device="gpu", **base)
    llama = {**base, "backend": "llama-cpp"}
    assert ServerSettings(gpus=1, **llama).device == "cpu"  # CI's fake-GPU llama-cpp


def test_server_temp_is_short_and_leaves_nothing(tmp_path):
    folder = tmp_path / ("deep" * 30) / "server-tmp"
    with server_temp(folder) as link:
        assert link.parent == Path(tempfile.gettempdir()) and len(link.name) == 11
        assert link.resolve() == folder.resolve()
        (link / "socket-like").write_text("x")
        assert (folder / "socket-like").exists()
    assert not link.exists() and not link.is_symlink() and not folder.exists()


# --- vLLM's Prometheus counters -------------------------------------------------------------

EXPOSITION = """\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{{engine="0",model_name="m"}} {prompt}
vllm:prompt_tokens_created{{engine="0",model_name="m"}} 1.7e9
vllm:prompt_tokens_total{{engine="0",model_name="other"}} 999.0
vllm:generation_tokens_total{{engine="0",model_name="m"}} {gen}
vllm:request_success_total{{engine="0",finished_reason="stop",model_name="m"}} {stop}
vllm:request_success_total{{engine="0",finished_reason="length",model_name="m"}} 1.0
vllm:e2e_request_latency_seconds_sum{{engine="0",model_name="m"}} 2.5
vllm:time_to_first_token_seconds_sum{{engine="0",model_name="m"}} 0.25
vllm:prompt_tokens_by_source_total{{engine="0",model_name="m",source="x"}} 5.0
"""


def test_counters_are_summed_over_the_served_models_series():
    text = EXPOSITION.format(prompt=100.0, gen=40.0, stop=2.0)
    assert vllm_metrics.parse(text, "m") == {
        "prompt_tokens": 100.0,
        "generation_tokens": 40.0,
        "requests": 3.0,
        "e2e_latency_s_sum": 2.5,
        "ttft_s_sum": 0.25,
    }


def test_a_window_is_the_increase_and_a_missing_counter_a_null():
    before = {"prompt_tokens": 10.0, "generation_tokens": 4.0, "requests": 1.0}
    after = {"prompt_tokens": 110.0, "generation_tokens": 44.0, "requests": 3.0}
    got = vllm_metrics.window(before, after, ("a", "b"), "0.32.0")
    assert (got.prompt_tokens, got.generation_tokens, got.requests) == (100, 40, 2)
    assert got.e2e_latency_s_sum is None and "e2e_request_latency" in (got.null_reason or "")


class _Metrics(BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self):
        if self.path == "/version":
            body = b'{"version": "0.32.0"}'
        elif self.path == "/metrics":
            type(self).calls += 1
            n = min(type(self).calls, 3)  # the counters settle after the third reading
            body = EXPOSITION.format(prompt=100.0 * n, gen=40.0 * n, stop=n).encode()
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_server():
    _Metrics.calls = 0
    server = HTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_window_counters_keep_the_raw_text_and_wait_for_the_counts_to_settle(
    metrics_server, tmp_path
):
    files = JobFiles(tmp_path)
    counters = vllm_metrics.WindowCounters(True, "vllm", metrics_server, files, "m")
    counters.read("before")
    counters.read("after", settle_s=0.01)
    got = counters.result()
    assert got.server_version == "0.32.0" and got.null_reason is None
    assert (got.prompt_tokens, got.generation_tokens, got.requests) == (200, 80, 2)
    assert got.files == ("server-metrics-before.prom", "server-metrics-after.prom")
    assert "vllm:prompt_tokens_total" in files.server_metrics("after").read_text()


def test_counters_that_cannot_be_read_are_null_with_the_reason(tmp_path):
    files = JobFiles(tmp_path)
    gone = vllm_metrics.WindowCounters(True, "vllm", "http://127.0.0.1:9/v1", files, "m")
    gone.read("before")
    gone.read("after")
    got = gone.result()
    assert got.prompt_tokens is None and "GET /metrics" in (got.null_reason or "")
    none = vllm_metrics.WindowCounters(False, "llama-cpp", "http://x/v1", files, "m").result()
    assert none.null_reason == "the llama-cpp server publishes no Prometheus counters"


# --- the record's token check ---------------------------------------------------------------


def _generation(input_tokens: int | None = 100, output_tokens: int | None = 40) -> EvalSummary:
    return EvalSummary(
        log=Path("x.eval"),
        status="success",
        task="t",
        samples_total=2,
        samples_completed=2,
        score=None,
        score_stderr=None,
        score_metric=None,
        scorer=None,
        score_null_reason="not scored",
        started_at=None,
        completed_at=None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def _server(prompt: int | None = 100, generated: int | None = 40) -> ServerMetrics:
    got = vllm_metrics.window(
        {"prompt_tokens": 0.0, "generation_tokens": 0.0, "requests": 0.0},
        {
            "prompt_tokens": float(prompt or 0),
            "generation_tokens": float(generated or 0),
            "requests": 2.0,
        },
        (),
        None,
    )
    return got.model_copy(update={"prompt_tokens": prompt, "generation_tokens": generated})


def test_token_counts_that_agree():
    check = token_check(_generation(), _server())
    assert check.agree is True and check.problem is None and check.server_requests == 2


def test_a_disagreement_is_a_problem_not_a_crash():
    check = token_check(_generation(output_tokens=41), _server())
    assert check.agree is False
    assert check.problem == "Inspect counted 41 output tokens, the server 40 generation tokens"


def test_no_counters_is_a_null_with_the_reason():
    llama = vllm_metrics.unavailable("the llama-cpp server publishes no Prometheus counters")
    check = token_check(_generation(), llama)
    assert check.agree is None and "llama-cpp" in (check.null_reason or "")
    assert (
        token_check(_generation(), None).null_reason == "the cell job recorded no server counters"
    )


def test_this_file_needs_no_vllm():
    assert "vllm" not in sys.modules and os.environ.get("VLLM_TARGET_DEVICE") is None


def test_the_server_env_sets_and_removes_variables(tmp_path, monkeypatch):
    from evalwatt.runtime.server import Server

    monkeypatch.setenv("MKL_NUM_THREADS", "2")  # as Snakemake sets it for a rule
    code = "import os; print(os.environ.get('MKL_NUM_THREADS'), os.environ.get('EW_X'))"
    log = tmp_path / "server.log"
    server = Server.start(
        [sys.executable, "-c", code], "127.0.0.1", 1, log, {"MKL_NUM_THREADS": None, "EW_X": "1"}
    )
    server.process.wait(timeout=30)
    server.stop(grace_s=1)
    assert log.read_text().strip() == "None 1"
