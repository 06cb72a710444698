"""Plan the matrix: how many GPUs each model gets, which cells and baselines exist.

GPU count (the study, annex 2): ``VRAM_GB = P x 4 / (32 / Q) x overhead``, P total parameters
in billions, Q weight bits. The model gets the smallest GPU count of one node that holds
VRAM_GB *and* that vLLM accepts as a tensor-parallel size: attention heads divisible by it, and
KV heads divisible by it or it divisible by KV heads (KV heads are then replicated).

Units: VRAM_GB counts 1e9 bytes (P is in 1e9 parameters), and so does the cluster's
``gpu_memory_gb``. The study compared with the H100's nominal 80 GB (docs/methodology.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from evalwatt.config.load import Check, Config, ConfigError
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.run_config import Benchmark
from evalwatt.config.section import shown
from evalwatt.contracts.plan import Baseline, Cell, ModelPlan, Sampling
from evalwatt.contracts.spec import ServerSettings

__all__ = [
    "Baseline",
    "Cell",
    "ModelPlan",
    "Plan",
    "baseline_id",
    "cell_id",
    "format_temperature",
    "plan_model",
    "plan_run",
    "sampling_for",
    "server_settings",
    "tp_size_ok",
    "vram_gb",
]


def vram_gb(total_params_b: float, weight_bits: int, overhead: float) -> float:
    """The study's estimate of the memory a model needs to serve, in GB (1e9 bytes)."""
    return total_params_b * 4 / (32 / weight_bits) * overhead


def tp_size_ok(tp: int, attention_heads: int, kv_heads: int) -> bool:
    """Whether vLLM accepts ``tp`` as tensor-parallel size for these head counts."""
    if attention_heads % tp:
        return False
    return kv_heads % tp == 0 or tp % kv_heads == 0


def _plan_gpus(model: ModelEntry, config: Config) -> ModelPlan:
    """Choose the GPU count of one model; raise ConfigError if no node can serve it."""
    cluster, planner = config.cluster, config.planner
    need_gb = vram_gb(model.total_params_b, model.weight_bits, planner.vram_overhead)
    per_gpu_gb = cluster.gpu_memory_gb
    common: dict[str, Any] = dict(
        model=model.name,
        backend=model.backend,
        vram_gb=round(need_gb, 3),
        gpu_memory_gb=round(per_gpu_gb, 3),
        total_params_b=model.total_params_b,
        weight_bits=model.weight_bits,
        attention_heads=model.attention_heads,
        kv_heads=model.kv_heads,
    )
    if model.backend == "llama-cpp":
        forced = model.gpus
        if forced:  # the CI's fake-GPU variant: GPUs allocated and measured, not used
            if forced > cluster.gpus_per_node:
                raise ConfigError(
                    f"{config.model_field(model.name, 'gpus')} = {forced}: more than a node "
                    f"of {cluster.name} has ({cluster.gpus_per_node})"
                )
            reason = f"llama-cpp runs on the CPU; gpus={forced} forced in the model entry"
            cpus = cluster.cpus_per_gpu * forced
            return ModelPlan(gpus=forced, cpus=cpus, reason=reason, **common)
        reason = "CPU backend (llama-cpp): no GPU"
        return ModelPlan(gpus=0, cpus=cluster.cpus_per_cpu_job, reason=reason, **common)
    n_node = cluster.gpus_per_node
    if model.backend == "vllm" and n_node == 0:
        # The same `vllm serve` as on a GPU cluster, from vLLM's CPU build (docs/vllm.md).
        reason = "vllm on a CPU-only cluster (gpus_per_node 0): vLLM's CPU build, no GPU"
        return ModelPlan(gpus=0, cpus=cluster.cpus_per_cpu_job, reason=reason, **common)
    if n_node == 0 or per_gpu_gb == 0:
        raise ConfigError(
            f"{config.model_field(model.name, 'backend')} = {model.backend!r}: model "
            f"{model.name}: backend {model.backend} needs GPUs, but cluster "
            f"{cluster.name} has gpus_per_node={n_node}, "
            f"gpu_memory_gb={shown(cluster.gpu_memory_gb)}"
        )
    if model.gpus is not None:
        return _forced(model, model.gpus, need_gb, config, common)
    rejected = []
    for n in range(1, n_node + 1):
        if n * per_gpu_gb < need_gb:
            continue
        if n == 3 and planner.round_three_to_four:
            rejected.append("3 (rounded to 4, as the study did)")
            continue
        if not tp_size_ok(n, model.attention_heads, model.kv_heads):
            rejected.append(
                f"{n} (heads {model.attention_heads}/KV {model.kv_heads} not divisible)"
            )
            continue
        first_fit = "smallest count that holds it"
        reason = first_fit if not rejected else f"{first_fit}; rejected {', '.join(rejected)}"
        return ModelPlan(gpus=n, cpus=cluster.cpus_per_gpu * n, reason=reason, **common)
    capacity = n_node * per_gpu_gb
    detail = f"; rejected tensor-parallel sizes {', '.join(rejected)}" if rejected else ""
    raise ConfigError(
        f"{config.where(model.name)}: model {model.name} fits on no single node: "
        f"it needs {need_gb:.1f} GB "
        f"(VRAM formula, overhead {shown(planner.vram_overhead)}), a node of cluster "
        f"{cluster.name} holds {n_node} x {per_gpu_gb:.1f} GB = {capacity:.1f} GB{detail}"
    )


def plan_model(model: ModelEntry, config: Config) -> ModelPlan:
    """Choose the GPU count of one model; raise ConfigError if no node can serve it, or if
    the backend cannot use the count (evalwatt's transformers server runs on one GPU)."""
    planned = _plan_gpus(model, config)
    if model.backend == "hf" and planned.gpus != 1:
        raise ConfigError(
            f"{config.model_field(model.name, 'backend')} = 'hf': model {model.name} "
            f"is planned on {planned.gpus} GPUs ({planned.reason}), but the hf backend "
            "serves on one GPU; allowed: a model that fits one GPU, or backend vllm"
        )
    return planned


def _forced(
    model: ModelEntry, n: int, need_gb: float, config: Config, common: dict[str, Any]
) -> ModelPlan:
    """A GPU count set in the model sheet: checked, never silently trusted."""
    cluster = config.cluster
    n_node, per_gpu_gb = cluster.gpus_per_node, cluster.gpu_memory_gb
    where = config.model_field(model.name, "gpus")
    if n > n_node:
        raise ConfigError(
            f"{where} = {n}: model {model.name}: gpus={n} is more than a node of "
            f"{cluster.name} has ({n_node}); allowed: 1 to {n_node}"
        )
    if not tp_size_ok(n, model.attention_heads, model.kv_heads):
        raise ConfigError(
            f"{where} = {n}: model {model.name}: gpus={n} is not a valid tensor-parallel "
            f"size for {model.attention_heads} attention heads and {model.kv_heads} KV "
            "heads; allowed: a count dividing the attention heads"
        )
    held = n * per_gpu_gb
    fit = "holds" if held >= need_gb else f"is {need_gb - held:.1f} GB short of"
    reason = f"forced in the model sheet; {n} x {per_gpu_gb:g} GB {fit} the VRAM estimate"
    return ModelPlan(gpus=n, cpus=cluster.cpus_per_gpu * n, reason=reason, **common)


# --- sampling and server settings --------------------------------------------------------------


def sampling_for(model: ModelEntry, benchmark: Benchmark, config: Config) -> Sampling:
    """Top-p, top-k and max tokens of a (model, benchmark); None means the server's default."""
    found = config.sampling_profile(model)
    if found is None:  # no profile, or an empty one: the server's defaults
        return Sampling(top_p=None, top_k=None, max_tokens=benchmark.max_tokens)
    _, profile = found
    return Sampling(
        top_p=profile.top_p,
        top_k=profile.top_k,
        max_tokens=benchmark.max_tokens or profile.max_tokens,
    )


def server_settings(model: ModelEntry, plan: ModelPlan, config: Config) -> ServerSettings:
    """Everything that shapes the inference server, and so the load-only baseline. Only the
    settings of the model's backend and device are set (``baseline_id`` hashes those)."""
    settings: dict[str, Any] = {
        "backend": model.backend,
        # llama-cpp computes on the CPU even when GPUs are allocated (CI's fake-GPU variant).
        "device": "gpu" if plan.gpus and model.backend != "llama-cpp" else "cpu",
        "gpus": plan.gpus,
        "cpus": plan.cpus,
        "quantization": model.quantization,
        "context_tokens": model.context_tokens,
        "server_args": list(model.server_args),
    }
    if model.backend == "vllm":
        vllm = config.vllm
        if plan.gpus:
            settings["gpu_memory_utilization"] = vllm.gpu_memory_utilization
        else:
            settings["cpu_kvcache_space_gib"] = vllm.cpu_kvcache_space_gib
            settings["cpu_enforce_eager"] = vllm.cpu_enforce_eager
        settings["executable"] = vllm.executable
        settings["server_args"] += list(vllm.extra_args)
    if model.backend == "hf":
        settings["cudnn_attention"] = config.hf.cudnn_attention
    return ServerSettings.model_validate(settings)


def _short_hash(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


# --- the matrix -------------------------------------------------------------------------------


def format_temperature(t: float) -> str:
    """0 -> '0', 0.7 -> '0.7': short, exact and safe in paths (``shown``: ``:g`` keeps 6
    significant digits, so 0.1 and 0.1000001 would both give '0.1'; when it does not read
    back as ``t``, the shortest exact form is used instead)."""
    return shown(t)


@dataclass(frozen=True)
class Plan:
    """The whole matrix of one run, by id, and the environment checks of its config (passed or
    deferred to the job, evalwatt.config.checks). Its records are the plan file's
    (``evalwatt.contracts.plan``)."""

    models: dict[str, ModelPlan]
    baselines: dict[str, Baseline]
    cells: dict[str, Cell]
    checks: tuple[Check, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The plan as plain data (the plan rule's parameter: a changed plan reruns it)."""
        return {
            "models": [m.model_dump(mode="json") for m in self.models.values()],
            "baselines": [b.model_dump(mode="json") for b in self.baselines.values()],
            "cells": [c.model_dump(mode="json") for c in self.cells.values()],
            "checks": [c.model_dump(mode="json") for c in self.checks],
        }


def baseline_id(model: ModelEntry, server: ServerSettings) -> str:
    """``<model>__<backend>-g<gpus>-<hash>``: the hash of the settings ``server_settings``
    set, so that two models or two settings never share a baseline."""
    settings = server.model_dump(mode="json", exclude_unset=True)
    return f"{model.name}__{server.backend}-g{server.gpus}-{_short_hash(settings)}"


def cell_id(model: str, benchmark: str, temperature: float, max_connections: int) -> str:
    return f"{model}__{benchmark}__t{format_temperature(temperature)}__c{max_connections}"


def _cells_of(model: ModelEntry, base: Baseline, config: Config) -> Iterator[Cell]:
    sweeps = config.sweeps
    for bench_name in model.benchmarks:
        bench = config.benchmarks[bench_name]
        if bench.multimodal and not model.multimodal:
            raise ConfigError(
                f"model {model.name}: benchmark {bench_name} needs images, "
                f"but the model has multimodal=false"
            )
        for temperature in sweeps.temperature:
            for conns in sweeps.max_connections:
                yield Cell(
                    id=cell_id(model.name, bench_name, temperature, conns),
                    model=model.name,
                    benchmark=bench_name,
                    temperature=temperature,
                    max_connections=conns,
                    baseline=base.id,
                    judge=bench.judge,
                    sampling=sampling_for(model, bench, config),
                )


def _describe_cell(cell: Cell) -> str:
    return (
        f"model {cell.model}, benchmark {cell.benchmark}, temperature {cell.temperature!r}, "
        f"max_connections {cell.max_connections}"
    )


def plan_run(config: Config) -> Plan:
    """Plan every model, baseline and cell of a validated config.

    Ids name result folders and Snakemake targets: two jobs with one id would share (and
    overwrite) one folder, so a collision is an error naming both, never a silent merge.
    """
    models: dict[str, ModelPlan] = {}
    baselines: dict[str, Baseline] = {}
    cells: dict[str, Cell] = {}
    for model in config.models:
        mplan = plan_model(model, config)
        models[model.name] = mplan
        server = server_settings(model, mplan, config)
        base = Baseline(id=baseline_id(model, server), model=model.name, server=server)
        new_cells = list(_cells_of(model, base, config))
        if new_cells:
            other = baselines.get(base.id)
            if other is not None and other.model != base.model:
                raise ConfigError(
                    f"{config.origin}: baseline id {base.id} of model {base.model} is also the "
                    f"id of model {other.model}'s baseline; rename one of the models"
                )
            baselines[base.id] = base
        for cell in new_cells:
            if cell.id in cells:
                raise ConfigError(
                    f"{config.origin}: cell id {cell.id} names two cells: "
                    f"({_describe_cell(cells[cell.id])}) and ({_describe_cell(cell)}); "
                    "values that print alike (sweeps.temperature) must differ"
                )
            cells[cell.id] = cell
    if not cells:
        first = config.where(config.models[0].name)  # the sheet, if the models are in one
        where = first.rpartition(":")[0] if first != config.origin else first
        raise ConfigError(
            f"{where}: field models: every model has an empty `benchmarks` list, so the matrix "
            f"has no cell; give at least one of {', '.join(config.model_names())} a benchmark "
            f"of: {', '.join(sorted(config.benchmarks))}"
        )
    return Plan(models=models, baselines=baselines, cells=cells, checks=config.checks)
