"""Cluster settings that contradict each other, or the models: refused with both fields named.

A cluster is declared CPU-only by ``cluster.gpus_per_node: 0`` (the demo, vLLM's CPU build,
llama.cpp). Anything that says the jobs have GPUs contradicts it: GPU memory, a GPU model, a
GPU feature in the Slurm constraint, a model forced onto GPUs, DCGM power series, evalwatt's
transformers server (one GPU). On a GPU cluster, a model served on GPUs needs the memory of one
GPU to be planned. Accepting such a config silently planned an 80B model as a 20-hour CPU job
(issue 16); each rule here names the two fields that disagree, their values and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from evalwatt.config.section import shown
from evalwatt.config.types import Config

GPU_BACKENDS = ("vllm", "hf")
"""Backends that serve on GPUs when the cluster has them (vLLM also has a CPU build)."""
_FEATURE = re.compile(r"[A-Za-z0-9_.:+-]+")
_COUNT = re.compile(r"\*[0-9]+")
# Node features that name a GPU: "gpu", a vendor or a product line, or a GPU model such as
# h100, a100, v100-32g, l40s, gh200, mi250x, b200, t4, k80 (sites name features after them).
_GPU_FEATURE = re.compile(
    r"gpu|nvidia|cuda|tesla|rtx|radeon|instinct|^(?:[abhklpv]|gh|gb|mi)[0-9]{2,3}(?![0-9])|^t4\b",
    re.IGNORECASE,
)


def gpu_features(constraint: str) -> list[str]:
    """The features of a constraint expression that name a GPU (``h100``, ``gpu``, ...)."""
    names = _FEATURE.findall(_COUNT.sub("", constraint))
    return [name for name in names if _GPU_FEATURE.search(name)]


def _field(config: Config, key: str, value: object) -> str:
    shown_value = shown(value) if isinstance(value, float) else repr(value)
    return f"{config.origin}: field {key} = {shown_value}"


def _cpu_only_problems(config: Config) -> Iterator[str]:
    """What says "GPUs" on a cluster declared CPU-only (``gpus_per_node: 0``)."""
    cluster = config.cluster
    declared = f"field cluster.gpus_per_node = 0 (cluster {cluster.name} declared CPU-only)"
    allowed = "allowed: {}, or gpus_per_node of at least 1 on a GPU cluster"
    if cluster.gpu_memory_gb > 0:
        yield (
            f"{_field(config, 'cluster.gpu_memory_gb', cluster.gpu_memory_gb)} contradicts "
            f"{declared}: no job of a CPU-only cluster has a GPU; "
            + allowed.format("0 (the default)")
        )
    if cluster.gpu_model != "none":
        yield (
            f"{_field(config, 'cluster.gpu_model', cluster.gpu_model)} contradicts {declared}: "
            "the record would name a GPU no job has; " + allowed.format("'none' (the default)")
        )
    features = gpu_features(cluster.constraint or "")
    if features:
        yield (
            f"{_field(config, 'cluster.constraint', cluster.constraint)} contradicts {declared}: "
            f"feature(s) {', '.join(features)} name a GPU, so Slurm would place CPU-only jobs "
            "on GPU nodes; " + allowed.format("a constraint of CPU features, or none")
        )
    acc = config.accounting
    if "prometheus" in acc.sources and acc.prometheus.series.startswith("dcgm-"):
        yield (
            f"{_field(config, 'accounting.prometheus.series', acc.prometheus.series)} contradicts "
            f"{declared}: DCGM series are GPU series; "
            + allowed.format("series ceems, or prometheus out of accounting.sources")
        )
    for model in config.models:
        if model.gpus:  # the plan refuses more GPUs than a node has; vLLM would go to the CPU
            yield (
                f"{config.model_field(model.name, 'gpus')} = {model.gpus} contradicts "
                f"{declared}: model {model.name} is forced onto GPUs; "
                + allowed.format("gpus null (planned)")
            )
        if model.backend == "hf":
            yield (
                f"{config.model_field(model.name, 'backend')} = 'hf' contradicts {declared}: "
                f"model {model.name}: evalwatt's transformers server (backend hf) serves on one "
                "GPU (gpus_per_node=0 here); allowed: backend vllm (its CPU build) or "
                "llama-cpp, or gpus_per_node of at least 1 on a GPU cluster"
            )


def _gpu_cluster_problems(config: Config) -> Iterator[str]:
    """A GPU cluster without the memory of one GPU cannot plan a model served on GPUs."""
    cluster = config.cluster
    if cluster.gpus_per_node == 0 or cluster.gpu_memory_gb > 0:
        return
    for model in config.models:
        if model.backend in GPU_BACKENDS:
            yield (
                f"{config.origin}: field cluster.gpu_memory_gb = 0: model {model.name} "
                f"({config.model_field(model.name, 'backend')} = {model.backend!r}) is served "
                f"on GPUs of a node of {cluster.gpus_per_node} (cluster.gpus_per_node), and the "
                "planner sizes it by the memory of one GPU; allowed: that memory in GB, e.g. 80"
            )
            return


def cluster_problems(config: Config) -> Iterator[str]:
    """Every contradiction between the cluster's settings, and between them and the models."""
    if config.cluster.gpus_per_node == 0:
        yield from _cpu_only_problems(config)
    yield from _gpu_cluster_problems(config)
