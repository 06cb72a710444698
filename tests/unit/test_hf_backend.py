"""The hf backend: ``transformers serve``, Transformers' own OpenAI-compatible server.

Without torch (this environment): the command the job runs, the model id the server is pinned
to and that its clients must send, its variables, and readiness by ``/health`` (its
``/v1/models`` lists the Hugging Face cache, not the pinned model).

With torch and transformers' serving packages: the real server on the CPU with a tiny random
Llama (evalwatt.runtime.random_weights): ready once loaded, answers of exactly ``max_tokens``
with their ``usage``, through Inspect's provider too, a request for another model refused, a
clean stop on SIGTERM, a missing model failing at once with the library's error, and no
request reusing the blocks of another (against the library's own server, which does). The
Python that runs it is ``EVALWATT_HF_PYTHON`` (``bootstrap.py test`` sets it to
``.venv-vllm``'s, which has transformers 5.19 and its serving packages), else
``.venv-vllm/bin/python``; without one these tests skip, except in CI (``CI`` set) or when
the variable names a missing file: there they fail, so that CI never passes without them
(unless the machine cannot have .venv-vllm at all: not x86-64 Linux with CPython 3.11).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalwatt.base.layout import Layout
from evalwatt.config.load import from_dict
from evalwatt.contracts.spec import EvaluationSpec, ModelSpec, ServerSettings, WarmUpSpec
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.matrix import plan_run
from evalwatt.runtime import hf_serve, inspect_steps
from evalwatt.runtime.backends import HF_SERVE_MODULE, ServerPaths, backend, hf_model_id
from evalwatt.runtime.server import Server, ServerError, free_port

REPO = Path(__file__).resolve().parents[2]
HF_PYTHON_VARIABLE = "EVALWATT_HF_PYTHON"
VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
BOOTSTRAP = "workflow/scripts/bootstrap.py"
SET_UP = f"python3 {BOOTSTRAP} test sets up .venv-vllm (envs/vllm-cpu-lock.txt)"
PY = "/opt/py/bin/python"
CELL = "Qwen2.5-32B-Instruct__piqa__t0__c10"
# The library sizes its KV cache, its batch and its attention mask from free memory, on a CPU
# from the machine's RAM (90 %): fixed here, so that the tests need the same few MB anywhere.
CPU_CACHE = ("--cb-num-blocks", "64", "--cb-block-size", "32", "--cb-max-batch-tokens", "256")


def _settings(device: str = "gpu", server_args: tuple[str, ...] = ()) -> ServerSettings:
    return ServerSettings(
        backend="hf",
        device=device,
        gpus=1 if device == "gpu" else 0,
        cpus=2,
        quantization="none",
        context_tokens=None,
        server_args=server_args,
    )


# --- without torch -----------------------------------------------------------------------------


def test_the_rendered_job_runs_transformers_serve(small_config):
    small_config["models"][0].update(backend="hf", total_params_b=7.0)  # fits one GPU
    small_config["job"] = {"python": PY}
    config = from_dict(small_config, Path("."))
    job = resolve_job(
        config, plan_run(config), Layout.of("/evalwatt-unit/r", config.run), "cell", CELL
    )
    assert list(job.spec.server.argv) == [
        PY,
        "-m",
        "evalwatt.runtime.hf_serve",
        "--cudnn-attention=off",
        "serve",
        "{model_path}",
        "--continuous-batching",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--device",
        "auto",
    ]
    assert job.spec.server.settings.cudnn_attention is False  # in the spec: a change reruns


def test_cudnn_attention_on_is_in_the_command_and_the_settings(small_config):
    """hf.cudnn_attention: true reaches the server's command and its settings, so that a cell
    measured with the other choice is not taken for the same cell (jobs.packs.same_cell) and
    the baseline is another one; other backends have no such setting."""
    small_config["models"][0].update(backend="hf", total_params_b=7.0)
    small_config["job"] = {"python": PY}
    plain = from_dict(small_config, Path("."))
    small_config["hf"] = {"cudnn_attention": True}
    cudnn = from_dict(small_config, Path("."))
    layout = Layout.of("/evalwatt-unit/r", plain.run)
    off, on = (resolve_job(c, plan_run(c), layout, "cell", CELL).spec for c in (plain, cudnn))
    assert "--cudnn-attention=on" in on.server.argv and on.server.settings.cudnn_attention
    assert off.server.settings != on.server.settings
    assert off.server.baseline_id != on.server.baseline_id
    # a spec written before the choice came reads as "not recorded", never the same settings
    written_before = off.server.settings.model_copy(update={"cudnn_attention": None})
    assert "cudnn_attention" not in written_before.model_dump_json()
    assert written_before != off.server.settings
    small_config["models"][0]["backend"] = "vllm"
    vllm = from_dict(small_config, Path("."))
    job = resolve_job(vllm, plan_run(vllm), layout, "cell", CELL)
    assert job.spec.server.settings.cudnn_attention is None
    assert "cudnn_attention" not in job.spec_json  # a vLLM job's spec, hence its job, unchanged


def test_the_command_on_a_cpu_and_extra_arguments():
    argv = backend("hf").server_argv("m", _settings("cpu", ("--dtype", "bfloat16")), PY)
    assert argv[-4:] == ["--device", "cpu", "--dtype", "bfloat16"]
    assert backend("hf").server_argv("m", _settings(), "python3")[:4] == [
        "python3",
        "-m",
        HF_SERVE_MODULE,
        "--cudnn-attention=off",
    ]


def _batching_config_class() -> type:
    """Shaped like transformers' ContinuousBatchingConfig: a dataclass with the setting on by
    default and a ``__post_init__`` (made anew per test: the hook changes the class)."""

    @dataclass
    class BatchingConfig:
        allow_block_sharing: bool = True
        num_blocks: int | None = None

        def __post_init__(self) -> None:
            self.num_blocks = self.num_blocks or 16  # the library's own checks and defaults

    return BatchingConfig


def test_every_batching_config_made_has_block_sharing_off(capsys):
    config_class = _batching_config_class()
    hf_serve.turn_off_block_sharing(config_class, "5.19.0")
    flags = config_class(num_blocks=64)  # as the CLI makes it from --cb-num-blocks
    assert (flags.allow_block_sharing, flags.num_blocks) == (False, 64)
    default = config_class()  # as the library makes it without --cb-* flags
    assert (default.allow_block_sharing, default.num_blocks) == (False, 16)
    assert not config_class(allow_block_sharing=True).allow_block_sharing
    assert "transformers 5.19.0, continuous batching with allow_block_sharing=False" in (
        capsys.readouterr().err
    )


def test_a_transformers_without_the_setting_or_the_hook_is_refused_at_start():
    @dataclass
    class Older:
        num_blocks: int | None = None

        def __post_init__(self) -> None: ...

    @dataclass
    class NoHook:
        allow_block_sharing: bool = True

    with pytest.raises(hf_serve.UnsupportedTransformers, match=r"5\.10\.0.*no allow_block_sh"):
        hf_serve.turn_off_block_sharing(Older, "5.10.0")
    with pytest.raises(hf_serve.UnsupportedTransformers, match=r"6\.0\.0.*no __post_init__"):
        hf_serve.turn_off_block_sharing(NoHook, "6.0.0")
    assert NoHook().allow_block_sharing  # left as it was


@pytest.mark.parametrize(
    ("before", "after"), [(None, "INFO"), ("WARNING", "INFO"), ("DEBUG", "DEBUG")]
)
def test_the_server_log_records_the_batching_decisions(before, after):
    """INFO (graphs used or not, each capture, the cache's size) reaches the server log; a
    test's DEBUG is not raised back to INFO."""
    logger = logging.getLogger(hf_serve.BATCHING_LOGGER)
    kept, kept_filters = logger.level, list(logger.filters)
    try:
        logger.setLevel(before or logging.NOTSET)
        hf_serve.log_batching_decisions()
        assert logging.getLevelName(logger.getEffectiveLevel()) == after
        # a set-up line passes, a per-step one (5.17's scheduler, cache full) does not
        passed = [
            logger.filter(logging.makeLogRecord({"levelno": logging.INFO, "module": module}))
            for module in ("initialization", "scheduler", "offloading_manager")
        ]
        assert [bool(p) for p in passed] == [True, False, False]
        debug = logging.makeLogRecord({"levelno": logging.DEBUG, "module": "scheduler"})
        assert logger.filter(debug)  # a test's DEBUG lines of the scheduler stay
    finally:
        logger.setLevel(kept)
        logger.filters[:] = kept_filters


@pytest.mark.parametrize(("value", "after"), [("DEBUG", "DEBUG"), ("info", "INFO"), (None, "INFO")])
def test_the_variable_sets_the_batching_log_to_every_step(value, after):
    """EVALWATT_HF_BATCHING_LOG=DEBUG: the library's line per scheduling step reaches the log
    (and main starts the allocator's watch on the level returned)."""
    logger = logging.getLogger(hf_serve.BATCHING_LOGGER)
    kept, kept_filters = logger.level, list(logger.filters)
    try:
        logger.setLevel(logging.NOTSET)
        assert hf_serve.log_batching_decisions(value) == after
        assert logger.isEnabledFor(logging.DEBUG) == (after == "DEBUG")
    finally:
        logger.setLevel(kept)
        logger.filters[:] = kept_filters


def test_the_allocator_lines_name_the_gpus_whose_counters_moved():
    """A GPU logs when its counters move, not every second; one the server never allocated on
    logs nothing; a counter this torch lacks is n/a, never 0."""
    used = {
        "num_device_alloc": 7,
        "num_device_free": 0,
        "num_alloc_retries": 0,
        "num_ooms": 0,
        "reserved_bytes.all.current": 3 * 2**30,
        "allocated_bytes.all.current": 2**30,
    }
    unused = {"num_device_alloc": 0, "num_device_free": 0, "num_alloc_retries": 0, "num_ooms": 0}
    moved = {"num_device_alloc": 9, "num_device_free": 2, "num_alloc_retries": 1}
    reads = iter([used, unused, used, unused, moved, {}])
    last: dict[int, tuple[int | None, ...]] = {}
    assert hf_serve.allocator_moves(lambda _: next(reads), 2, last) == [
        "allocator cuda:0: num_device_alloc 7, num_device_free 0, num_alloc_retries 0, "
        "num_ooms 0, reserved 3072 MiB, allocated 1024 MiB"
    ]
    assert hf_serve.allocator_moves(lambda _: next(reads), 2, last) == []  # nothing moved
    assert hf_serve.allocator_moves(lambda _: next(reads), 2, last) == [
        "allocator cuda:0: num_device_alloc 9, num_device_free 2, num_alloc_retries 1, "
        "num_ooms n/a, reserved n/a, allocated n/a",
        "allocator cuda:1: num_device_alloc n/a, num_device_free n/a, num_alloc_retries n/a, "
        "num_ooms n/a, reserved n/a, allocated n/a",
    ]


def test_a_batching_log_level_it_does_not_know_is_refused():
    with pytest.raises(
        SystemExit, match=r"EVALWATT_HF_BATCHING_LOG='verbose': allowed INFO, DEBUG"
    ):
        hf_serve.log_batching_decisions("verbose")


def test_the_pinned_id_of_a_folder_and_of_a_gguf_file():
    assert hf_model_id("/w/llama-8b") == "/w/llama-8b"
    assert hf_model_id("/w/smol/SmolLM2.Q4_1.gguf") == "/w/smol:SmolLM2.Q4_1.gguf"


def test_clients_name_the_model_by_its_pinned_id_on_the_node():
    model = ModelSpec(name="m", served_name="m", backend="hf", path="$W/m", hf_id="o/m")
    named, weights = backend("hf").on_node(model, "/w/m")
    assert (named.served_name, weights, named.name) == ("/w/m", "/w/m", "m")
    vllm = model.model_copy(update={"backend": "vllm"})
    assert backend("vllm").on_node(vllm, "/w/m") == (vllm, "/w/m")


def test_the_server_is_offline_and_writes_only_to_the_job_and_run_cache():
    env = backend("hf").server_env(_settings(), ServerPaths(Path("/job/tmp"), Path("/run/cache")))
    assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_DISABLE_UPDATE_CHECK"] == "1"
    assert env["TMPDIR"] == "/job/tmp"
    cached = [env[k] for k in ("HF_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")]
    assert all(str(v).startswith("/run/cache/") for v in cached)


# A server shaped like transformers serve: it listens once loaded, /health answers, and
# /v1/models fails (the library scans a Hugging Face cache that a job does not have).
LIKE_TRANSFORMERS_SERVE = """
import sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
time.sleep(float(sys.argv[2]))
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 500)
        self.end_headers()
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_readiness_is_health_for_a_server_that_lists_no_model(tmp_path):
    port = free_port()
    argv = [sys.executable, "-c", LIKE_TRANSFORMERS_SERVE, str(port), "0.5"]
    server = Server.start(argv, "127.0.0.1", port, tmp_path / "server.log")
    try:
        started = time.time()
        ready = server.wait_ready(10.0, "/w/m", listed=backend("hf").lists_model)
        assert 0.5 <= ready - started < 5
        with pytest.raises(ServerError, match="not ready after 1 s"):
            server.wait_ready(1.0, "/w/m", poll_s=0.1)  # by /v1/models it would never be
    finally:
        server.stop(grace_s=5)


# --- the real server, on the CPU ------------------------------------------------------------


def hf_python_or_why() -> tuple[str | None, str]:
    """A Python with torch and transformers' serving packages, or None and why not."""
    given = os.environ.get(HF_PYTHON_VARIABLE)
    if given:
        if Path(given).is_file():
            return given, ""
        return None, f"{HF_PYTHON_VARIABLE}={given}: no such file ({SET_UP})"
    if VENV_PYTHON.is_file():
        return str(VENV_PYTHON), ""
    return None, f"no {HF_PYTHON_VARIABLE} and no .venv-vllm: {SET_UP}"


def unsupported_here() -> str | None:
    """Why .venv-vllm cannot exist on this machine (bootstrap.vllm_supported), or None."""
    spec = importlib.util.spec_from_file_location("bootstrap", REPO / BOOTSTRAP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.vllm_supported()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def hf_python() -> str:
    python, why = hf_python_or_why()
    if python is None:
        platform = unsupported_here()
        if platform:
            pytest.skip(platform)
        if os.environ.get("CI") or os.environ.get(HF_PYTHON_VARIABLE):
            pytest.fail(f"the transformers serve tests must run here, not skip: {why}")
        pytest.skip(why)
    return python


# The library's continuous batching logs at DEBUG when a request reuses blocks cached for an
# earlier one ("Found a prefix match of N tokens"); its logger stays at WARNING unless a
# sitecustomize on the servers' path lowers it (this module's servers only).
DEBUG_BATCHING = 'import logging\nlogging.getLogger("ContinuousBatchingLogger").setLevel("DEBUG")\n'


def _start(hf_python: str, weights: str, folder: Path, *, library_cli: bool = False) -> Server:
    """The job's server command (evalwatt's runtime/hf_serve.py), or with ``library_cli`` the
    library's own ``transformers`` with the same arguments. Its PYTHONPATH has evalwatt, which
    the job's Python has installed and .venv-vllm's has not, and the debug sitecustomize."""
    engine = backend("hf")
    settings = _settings("cpu", CPU_CACHE)
    port = free_port()
    argv = [
        w.replace("{port}", str(port)).replace("{model_path}", hf_model_id(weights))
        for w in engine.server_argv("tiny", settings, hf_python)
    ]
    if library_cli:
        argv = [str(Path(hf_python).parent / "transformers"), *argv[4:]]  # without ours
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    (folder / "site").mkdir(exist_ok=True)
    (folder / "site" / "sitecustomize.py").write_text(DEBUG_BATCHING)
    env = engine.server_env(settings, ServerPaths(folder / "tmp", folder / "cache"))
    env["PYTHONPATH"] = os.pathsep.join([str(folder / "site"), str(REPO / "workflow")])
    return Server.start(argv, "127.0.0.1", port, folder / "server.log", env=env)


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def write_tiny_model(hf_python: str, folder: Path) -> None:
    argv = [hf_python, "-m", "evalwatt.runtime.random_weights", "--shape", "tiny"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    done = subprocess.run(
        [*argv, "--out", str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr


@dataclass
class Started:
    served: Server
    pinned: str
    missing: Server
    missing_path: str


@pytest.fixture(scope="module")
def started(hf_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """Both servers of this module, started together (each start imports torch and the library
    for ~10 s on 2 cores: CI's time): one for a model that does not exist, started first so
    that it fails while the tiny random model is written, then one serving that model."""
    folder = tmp_path_factory.mktemp("hf")
    missing_path = str(folder / "no-such-model")
    missing = _start(hf_python, missing_path, folder / "missing")
    try:
        write_tiny_model(hf_python, folder / "tiny-random")
        pinned = str(folder / "tiny-random")
        served = _start(hf_python, pinned, folder / "served")
        try:
            served.wait_ready(300.0, pinned, listed=False)
            served.warm_up(pinned, {"temperature": 1.5}, 300.0)  # as a job of cells at 1.5 does
            yield Started(served, pinned, missing, missing_path)
        finally:
            served.stop(grace_s=30)
    finally:
        missing.stop(grace_s=5)


@pytest.fixture(scope="module")
def library(
    hf_python: str, started: Started, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The library's own ``transformers serve`` of the same model, for contrast."""
    server = _start(hf_python, started.pinned, tmp_path_factory.mktemp("hf-lib"), library_cli=True)
    try:
        server.wait_ready(300.0, started.pinned, listed=False)
        yield server
    finally:
        server.stop(grace_s=30)


@pytest.fixture
def served(started: Started) -> tuple[Server, str]:
    return started.served, started.pinned


def test_answers_run_to_max_tokens_with_their_usage(served):
    server, pinned = served
    body = {"model": pinned, "messages": [{"role": "user", "content": "2 + 2 ?"}]}
    code, reply = _post(f"{server.url}/chat/completions", {**body, "max_tokens": 9})
    assert code == 200, reply
    usage = reply["usage"]
    assert usage["completion_tokens"] == 9 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 9
    assert reply["choices"][0]["finish_reason"] == "length"
    code, reply = _post(
        f"{server.url}/completions", {"model": pinned, "prompt": "hi", "max_tokens": 5}
    )
    assert code == 200 and reply["usage"]["completion_tokens"] == 5, reply


def test_the_server_answers_a_warm_up_wave(served):
    """The wave a job sends before its work (contracts.spec.WarmUpSpec): every request of it
    answered by the real server (the server's access log counts them; a refusal would
    raise)."""
    server, pinned = served
    wave = WarmUpSpec(requests=4, prompt_words=64, max_tokens=4)
    before = server.log_path.stat().st_size
    server.warm_up_wave(pinned, {"temperature": 1.5}, wave, 300.0)
    answered = server.log_path.read_bytes()[before:].decode(errors="replace")
    assert answered.count("POST /v1/chat/completions") == 4, answered[-2000:]


def test_the_server_keeps_the_sampling_of_its_first_request(served):
    """Why a job warms the server up with its cells' sampling and a model job serves one
    sampling setting (config.model_entry.SAMPLING_AT_FIRST_REQUEST): after the warm-up at
    temperature 1.5, requests at temperature 0 are still sampled at 1.5: three of them, of
    8 tokens from a random model's near-uniform logits, are not the same answer. Were each
    request's temperature applied, they would be (greedy); if a release of the library does
    that, this fails, and one model job may serve several temperatures again."""
    server, pinned = served
    body = {"model": pinned, "messages": [{"role": "user", "content": "Say something."}]}
    answers = []
    for _ in range(3):
        code, reply = _post(
            f"{server.url}/chat/completions", {**body, "max_tokens": 8, "temperature": 0.0}
        )
        assert code == 200 and reply["usage"]["completion_tokens"] == 8, reply
        answers.append(reply["choices"][0]["message"]["content"])
    assert len(set(answers)) > 1, answers


def test_a_request_for_another_model_is_refused(served):
    server, _ = served
    body = {"model": "other", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    code, reply = _post(f"{server.url}/chat/completions", body)
    assert code == 400 and "pinned" in reply["detail"], reply


def test_inspect_generates_through_its_provider(served, tmp_path):
    """What a cell job does: Inspect's openai-api provider, the model named by its pinned id,
    concurrent requests batched by the library; every answer max_tokens long."""
    server, pinned = served
    model = ModelSpec(name="tiny", served_name=pinned, backend="hf", path=pinned, hf_id="o/t")
    evaluation = EvaluationSpec.model_validate(
        {
            "benchmark": "synthetic",
            "task": "evalwatt/synthetic_prompts",
            "task_args": {"samples": 4, "words": 2},
            "limit": None,
            "max_connections": 4,
            "temperature": 0.0,
            "top_p": None,
            "top_k": None,
            "max_tokens": 6,
            "score_in_job": True,
        }
    )
    log = inspect_steps.run_generation(evaluation, model, server.url, tmp_path)
    summary = inspect_steps.summarize_log(log)
    assert (summary.samples_completed, summary.output_tokens) == (4, 24)


def test_no_request_reuses_the_blocks_cached_for_another(started, library):
    """Why the job serves through runtime/hf_serve.py: given the same prompt twice, the
    library's own server prefills the second only past the blocks it kept from the first (its
    batching log says so), which would make a model job's later cell of the same prompts
    cheaper than in its own job; the job's server prefills it in full."""
    prompt = " ".join(f"word{i}" for i in range(40))  # ~300 byte tokens: 9 blocks of 32
    body = {"model": started.pinned, "messages": [{"role": "user", "content": prompt}]}
    for server in (library, started.served):
        for _ in range(2):
            code, reply = _post(f"{server.url}/chat/completions", {**body, "max_tokens": 2})
            assert code == 200 and reply["usage"]["prompt_tokens"] > 256, reply
    assert re.search(r"Found (a )?prefix match", library.log_path.read_text())
    log = started.served.log_path.read_text()
    assert "allow_block_sharing=False" in log and "prefix match" not in log


def test_a_missing_model_fails_at_once_with_the_library_error(started):
    with pytest.raises(ServerError, match=rf"(?s)exited with code 1.*{started.missing_path}"):
        started.missing.wait_ready(300.0, started.missing_path, listed=False)


def test_sigterm_stops_the_server(served):
    """uvicorn shuts down cleanly, then re-raises the signal: the exit status is -SIGTERM.
    The module's last test: it stops the server the others share."""
    server, _ = served
    stopped = time.monotonic()
    assert server.stop(grace_s=30) == -signal.SIGTERM
    assert time.monotonic() - stopped < 20
    assert "Finished server process" in server.log_path.read_text()


class FakeCudaBackends:
    """``torch.backends.cuda``'s switches for attention kernels, as flags."""

    def __init__(self) -> None:
        self.cudnn = True

    def enable_cudnn_sdp(self, enabled: bool) -> None:
        self.cudnn = enabled

    def flash_sdp_enabled(self) -> bool:
        return True

    def mem_efficient_sdp_enabled(self) -> bool:
        return True

    def math_sdp_enabled(self) -> bool:
        return True

    def cudnn_sdp_enabled(self) -> bool:
        return self.cudnn


@pytest.mark.parametrize(("value", "cudnn"), [(None, False), ("off", False), ("on", True)])
def test_the_server_attention_runs_without_cudnn_unless_asked(value, cudnn, capsys):
    """Without the flag (or off), cuDNN is out of the kernels PyTorch's attention may use (its
    plan per shape made a served server faster than a fresh one); --cudnn-attention=on gives
    PyTorch's default back; the server log says which kernels are allowed."""
    backends = FakeCudaBackends()
    assert hf_serve.choose_cudnn_attention(value, backends) == ("on" if cudnn else "off")
    assert backends.cudnn is cudnn
    said = capsys.readouterr().err
    assert "flash, mem-efficient, math" in said
    assert ("cudnn (" in said) is cudnn


def test_a_wrong_cudnn_choice_stops_the_server_naming_the_choices():
    backends = FakeCudaBackends()
    with pytest.raises(SystemExit, match=r"--cudnn-attention=no: allowed off, on"):
        hf_serve.choose_cudnn_attention("no", backends)
    assert backends.cudnn  # left as PyTorch had it


def test_the_script_takes_its_own_flag_and_passes_the_rest_to_the_library():
    args = ["--cudnn-attention=on", "serve", "m", "--port", "1"]
    assert hf_serve.own_arguments(args) == ("on", ["serve", "m", "--port", "1"])
    assert hf_serve.own_arguments(["serve", "m"]) == (None, ["serve", "m"])
    # only in first place: a library argument of that name is the library's
    assert hf_serve.own_arguments(["serve", "--cudnn-attention=on"])[0] is None


def test_the_served_server_runs_attention_without_cudnn(started):
    """The job's command carries the run's choice (off) to the real server, whose PyTorch
    (a CPU build here) takes it through the functions it calls by these names."""
    log = started.served.log_path.read_text()
    assert "attention kernels allowed: flash, mem-efficient, math (--cudnn-attention=off)" in log
