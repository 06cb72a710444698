"""Inference backends: how each one is started, reached from Inspect, and installed.

Adding a backend means one ``Backend`` here (its server command, its Inspect provider and
the variable that provider reads for the server's URL, its pinned environment), an
environment file under envs/ and the name in the config schema's ``backend`` enum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evalwatt.contracts.spec import ServerSettings


def _vllm_argv(served_name: str, server: ServerSettings, python: str) -> list[str]:
    # The vllm next to the job's interpreter: the one of the job's environment.
    vllm = str(Path(python).parent / "vllm") if Path(python).is_absolute() else "vllm"
    argv = [
        vllm,
        "serve",
        "{model_path}",
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--tensor-parallel-size",
        str(server.gpus),
        "--gpu-memory-utilization",
        str(server.gpu_memory_utilization),
    ]
    if server.quantization not in ("none", "gguf"):
        argv += ["--quantization", server.quantization]
    if server.context_tokens:
        argv += ["--max-model-len", str(server.context_tokens)]
    return argv


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


def _hf_argv(served_name: str, server: ServerSettings, python: str) -> list[str]:
    """evalwatt's transformers server (runtime/hf_server.py): for GPU machines where vLLM
    cannot be installed. A ``config.json`` path gives random weights of that shape (enough for
    energy), a folder loads real weights. One GPU: it does no tensor parallelism."""
    argv = [
        python,
        "-m",
        "evalwatt.runtime.hf_server",
        "--model",
        "{model_path}",
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    if server.context_tokens:
        argv += ["--max-model-len", str(server.context_tokens)]
    return argv


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

    def server_argv(self, served_name: str, server: ServerSettings, python: str) -> list[str]:
        return self.argv(served_name, server, python) + list(server.server_args)


BACKENDS = {
    "vllm": Backend("vllm", _vllm_argv, "vllm", "VLLM_BASE_URL", "envs/vllm.yaml"),
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
        "envs/vllm.yaml",  # torch and transformers, as vLLM's environment has them
        api_key_variable="EVALWATT_API_KEY",
    ),
}


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
