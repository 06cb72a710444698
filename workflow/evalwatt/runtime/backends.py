"""Inference backends: how each one is started, reached from Inspect, and installed.

Adding a backend means one ``Backend`` here (its server command, its Inspect provider and
the variable that provider reads for the server's URL, its pinned environment, the variables
its server process gets), an environment file under envs/ and the name in the config schema's
``backend`` enum.

vLLM is one code path on both devices (docs/vllm.md): ``vllm serve`` with the same flags, and
only the device's own settings differ (``_vllm_device_argv``, ``_vllm_device_env``): the
tensor-parallel size and GPU memory utilisation on a GPU; on the CPU (vLLM's CPU build) the KV
cache space, thread binding and eager mode.

``hf`` is ``transformers serve``, Transformers' own OpenAI-compatible server, for GPU machines
where vLLM cannot be installed (docs/validation.md). It differs from the others in two ways
that the job follows (``Backend.pinned_id``, ``Backend.lists_model``): the server is pinned to
its weights by their path and refuses requests that name another model, so clients name the
model by that id; and its ``/v1/models`` lists the Hugging Face cache, not the pinned model,
which it loads before it listens, so readiness is ``/health`` answering. Its continuous
batching is built on the first request, with that request's sampling settings, kept for every
later request: the job's first request is a one-token warm-up with its cells' settings, before
``ready`` (``Backend.keeps_first_sampling``). Its prefix cache shares KV blocks between
requests, with no salt to keep cells apart as vLLM's has (``Backend.cache_salt``): the server
runs through ``runtime/hf_serve.py``, the library's CLI with that sharing off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from evalwatt.config.model_entry import SAMPLING_AT_FIRST_REQUEST
from evalwatt.contracts.spec import ModelSpec, ServerSettings
from evalwatt.runtime.hf_serve import CUDNN_FLAG


def _vllm_executable(server: ServerSettings, python: str) -> str:
    """``vllm.executable`` of the config; by default the ``vllm`` next to the job's
    interpreter, the one of the job's environment. vLLM's CPU build lives in an environment of
    its own (.venv-vllm: torch 2.13+cpu must not meet the job's packages), hence the setting."""
    if server.executable:
        return server.executable
    return str(Path(python).parent / "vllm") if Path(python).is_absolute() else "vllm"


def _vllm_device_argv(server: ServerSettings) -> list[str]:
    """The only flags that differ between a GPU and a CPU server."""
    if server.device == "gpu":
        return [
            "--tensor-parallel-size",
            str(server.gpus),
            "--gpu-memory-utilization",
            str(server.gpu_memory_utilization),
        ]
    return ["--enforce-eager"] if server.cpu_enforce_eager else []


def _vllm_argv(served_name: str, server: ServerSettings, python: str) -> list[str]:
    argv = [
        _vllm_executable(server, python),
        "serve",
        "{model_path}",
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        *_vllm_device_argv(server),
    ]
    if server.quantization not in ("none", "gguf"):
        argv += ["--quantization", server.quantization]
    if server.context_tokens:
        argv += ["--max-model-len", str(server.context_tokens)]
    return argv


@dataclass(frozen=True)
class ServerPaths:
    """Folders a server may write to, so that nothing lands in /tmp or the home directory."""

    tmp: Path
    """The job's own temporary folder (TMPDIR, sockets), removed when the server stops; a
    short link to it, since a socket's path may not exceed 107 bytes (server.ServerTemp)."""
    cache: Path
    """The run's cache, shared by its jobs so that compiled kernels are reused."""


def _common_env(server: ServerSettings, paths: ServerPaths) -> dict[str, str | None]:
    return {"TMPDIR": str(paths.tmp)}


EXECUTOR_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _vllm_device_env(server: ServerSettings) -> dict[str, str | None]:
    if server.device == "gpu":
        return {}
    env: dict[str, str | None] = {
        # Make the platform explicit: a CPU build on a host with GPUs would probe them.
        "VLLM_TARGET_DEVICE": "cpu",
        # vLLM's own binding: one core kept for its scheduler, the others for the OpenMP
        # threads of the model, within the CPUs the job was given (Slurm's cgroup). Binding
        # every core was 4x slower on 2 cores (docs/vllm.md).
        "VLLM_CPU_OMP_THREADS_BIND": "auto",
        # Thread counts come from that binding alone: the counts an executor sets for a job
        # (Snakemake sets each of these to the rule's threads) are removed. With them, the
        # math libraries ran 2 threads on the one core of the binding and generation was
        # 80 times slower (1.3 s per token instead of 20 ms, docs/vllm.md).
        **dict.fromkeys(EXECUTOR_THREAD_VARIABLES),
    }
    if server.cpu_kvcache_space_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(server.cpu_kvcache_space_gib)
    return env


def _vllm_env(server: ServerSettings, paths: ServerPaths) -> dict[str, str | None]:
    """vLLM's sockets, caches and usage statistics, out of /tmp and the home directory."""
    return {
        **_common_env(server, paths),
        "VLLM_RPC_BASE_PATH": str(paths.tmp),
        "VLLM_CACHE_ROOT": str(paths.cache / "vllm"),
        "VLLM_CONFIG_ROOT": str(paths.cache / "vllm-config"),
        "VLLM_NO_USAGE_STATS": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(paths.cache / "torchinductor"),
        "TRITON_CACHE_DIR": str(paths.cache / "triton"),
        # vLLM's ahead-of-time compile cache did not reload across restarts ("'function'
        # object has no attribute 'finalize_loading'"); without it restarts reuse the cache.
        "VLLM_USE_AOT_COMPILE": "0",
        **_vllm_device_env(server),
    }


def _llama_cpp_argv(served_name: str, server: ServerSettings, python: str) -> list[str]:
    argv = [
        python,
        "-m",
        "llama_cpp.server",
        "--model",
        "{model_path}",
        "--model_alias",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--n_threads",
        str(server.cpus),
    ]
    if server.context_tokens:
        argv += ["--n_ctx", str(server.context_tokens)]
    return argv


HF_SERVE_MODULE = "evalwatt.runtime.hf_serve"


def _hf_argv(served_name: str, server: ServerSettings, python: str) -> list[str]:
    """``transformers serve`` pinned to the weights (the positional model: loaded before the
    server listens, never unloaded), with continuous batching and paged attention, so that
    Inspect's ``max_connections`` sets the batch as on vLLM. ``{model_path}`` is the pinned id
    (``hf_model_id``). On a GPU, ``auto`` places the model on the GPUs Slurm allocated: one,
    or its layers spread over several (the library does no tensor parallelism). The library has
    no context-length flag: ``context_tokens`` is the model's own. The job's Python runs it
    through ``runtime/hf_serve.py`` (the library's CLI, its prefix cache's block sharing off
    and, unless ``hf.cudnn_attention``, its attention without cuDNN, so that a cell's energy
    does not depend on the cells served before it); the script takes its own flag first."""
    cudnn = "on" if server.cudnn_attention else "off"
    return [
        python,
        "-m",
        HF_SERVE_MODULE,
        f"{CUDNN_FLAG}={cudnn}",
        "serve",
        "{model_path}",
        "--continuous-batching",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--device",
        "auto" if server.device == "gpu" else "cpu",
    ]


def hf_model_id(path: str) -> str:
    """The id ``transformers serve`` loads the weights at ``path`` by, and answers to: a
    folder's path, or ``<folder>:<file>`` for a GGUF file (the library's name for a file in a
    repository; it reads the config and the tokenizer out of the file). transformers 5.17 to
    5.24 fail on a GGUF at start (docs/validation.md, "Backend"): serve a folder there."""
    weights = Path(path)
    if weights.suffix == ".gguf":
        return f"{weights.parent}:{weights.name}"
    return path


def _hf_env(server: ServerSettings, paths: ServerPaths) -> dict[str, str | None]:
    """Offline (weights are local: a missing model fails at once instead of being looked up
    on the Hub), no update check, caches in the run's cache."""
    return {
        **_common_env(server, paths),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HOME": str(paths.cache / "huggingface"),
        "TORCHINDUCTOR_CACHE_DIR": str(paths.cache / "torchinductor"),
        "TRITON_CACHE_DIR": str(paths.cache / "triton"),
    }


@dataclass(frozen=True)
class Backend:
    """One inference server."""

    name: str
    argv: Callable[[str, ServerSettings, str], list[str]]
    """(served name, settings, job's python) -> the command; ``{port}`` and ``{model_path}``
    are filled in by the job."""
    inspect_provider: str
    base_url_variable: str
    conda_env: str
    """Pinned environment, relative to the repository (``--software-deployment-method conda``)."""
    api_key_variable: str | None = None
    """For Inspect's ``openai-api/<service>`` provider, which refuses to start without a key:
    set to a placeholder when the job's environment has none (the server checks none)."""
    env: Callable[[ServerSettings, ServerPaths], Mapping[str, str | None]] = _common_env
    """(settings, paths) -> variables of the server process, on top of the job's; None
    removes a variable of the job's environment."""
    prometheus_metrics: bool = False
    """Whether the server publishes Prometheus counters at /metrics (runtime/vllm_metrics.py)."""
    pinned_id: Callable[[str], str] | None = None
    """For a server pinned to its weights (hf): (the weights' path on the node) -> the model id
    its command loads and its clients must send; None: the command gets the path, clients the
    served name."""
    cache_salt: bool = False
    """Whether requests may carry a ``cache_salt`` (vLLM >= 0.9) that keeps the server's prefix
    cache apart per salt: each cell sends its own (``EvaluationSpec.cache_salt``)."""
    warms_itself: bool = True
    """Whether the server, before it serves, runs a batch as large as it will ever batch (vLLM's
    profiling run and graph capture; llama.cpp's compute buffers, reserved at load); False
    (``transformers serve``): the job sends it a warm-up wave (``contracts.spec.WarmUpSpec``)."""
    lists_model: bool = True
    """Whether ``/v1/models`` lists the served model once it is loaded (the readiness check);
    False: ready when ``/health`` answers (server.Server.wait_ready)."""

    @property
    def keeps_first_sampling(self) -> bool:
        """Whether the server keeps the sampling settings of its first request for every later
        one (``SAMPLING_AT_FIRST_REQUEST``): the job then sends a warm-up request with its
        cells' settings before ``ready`` (runtime.serving), and a model job's cells share
        them (the planner's groups)."""
        return self.name in SAMPLING_AT_FIRST_REQUEST

    def server_argv(self, served_name: str, server: ServerSettings, python: str) -> list[str]:
        return self.argv(served_name, server, python) + list(server.server_args)

    def server_env(self, server: ServerSettings, paths: ServerPaths) -> dict[str, str | None]:
        return dict(self.env(server, paths))

    def on_node(self, model: ModelSpec, path: str) -> tuple[ModelSpec, str]:
        """(the model as its clients name it, the weights argument of the command), given the
        weights' path on this node."""
        if self.pinned_id is None:
            return model, path
        pinned = self.pinned_id(path)
        return model.model_copy(update={"served_name": pinned}), pinned


BACKENDS = {
    "vllm": Backend(
        "vllm",
        _vllm_argv,
        "vllm",
        "VLLM_BASE_URL",
        "envs/vllm.yaml",
        env=_vllm_env,
        prometheus_metrics=True,
        cache_salt=True,
    ),
    "llama-cpp": Backend(
        "llama-cpp",
        _llama_cpp_argv,
        "llama-cpp-python",
        "LLAMA_CPP_PYTHON_BASE_URL",
        "envs/llamacpp.yaml",
    ),
    "hf": Backend(
        "hf",
        _hf_argv,
        "openai-api/evalwatt",
        "EVALWATT_BASE_URL",
        "envs/vllm.yaml",  # torch, transformers and the server's packages, as vLLM's has them
        api_key_variable="EVALWATT_API_KEY",
        env=_hf_env,
        pinned_id=hf_model_id,
        warms_itself=False,
        lists_model=False,
    ),
}


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
