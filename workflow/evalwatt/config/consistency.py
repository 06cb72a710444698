"""Rules across fields of a config that JSON Schema cannot express.

They run on a config that its schema accepted, defaults filled: a judge that exists, KV heads
that divide the attention heads, server flags that evalwatt sets itself, padding that fits in
the time limit, an accounting section that can be collected, cluster settings that agree
(``evalwatt.config.cluster_rules``). Every problem is reported in one
``ConfigError``, each naming the file (and sheet line), the field, the value and what is
allowed. What needs the filesystem or the installed packages is in ``evalwatt.config.checks``.
"""

from __future__ import annotations

from collections.abc import Iterator

from evalwatt.config.cluster_rules import cluster_problems
from evalwatt.config.section import shown
from evalwatt.config.types import Config, ConfigError

# Flags that evalwatt sets itself when it builds the server command (runtime/backends.py) or
# that would change the GPU count the planner chose and Slurm allocated. A copy in
# `server_args` or `vllm.extra_args` would override them or start a second, conflicting value.
OWNED_FLAGS = {
    "vllm": {
        "--model": "the weights path",
        "--served-model-name": "the model's name",
        "--host": "the server address",
        "--port": "a free port chosen in the job",
        "--tensor-parallel-size": "the planned GPU count",
        "-tp": "the planned GPU count",
        "--pipeline-parallel-size": "the planned GPU count",
        "-pp": "the planned GPU count",
        "--data-parallel-size": "the planned GPU count",
        "-dp": "the planned GPU count",
        "--gpu-memory-utilization": "vllm.gpu_memory_utilization",
        "--max-model-len": "the model's context_tokens",
        "--quantization": "the model's quantization",
        "-q": "the model's quantization",
        "--config": "every other flag (a YAML file of flags)",
    },
    "llama-cpp": {
        "--model": "the weights path",
        "--model-alias": "the model's name",
        "--host": "the server address",
        "--port": "a free port chosen in the job",
        "--n-threads": "the planned CPU count",
        "--n-ctx": "the model's context_tokens",
        "--config-file": "every other flag (a file of settings)",
    },
    "hf": {
        "--host": "the server address",
        "--port": "a free port chosen in the job",
        "--device": "the GPU Slurm allocated",
        "--continuous-batching": "batching as vLLM does, always on",
        "--no-continuous-batching": "batching as vLLM does, always on",
        "--model-timeout": "the pinned model, never unloaded",
        "--cudnn-attention": "hf.cudnn_attention",
    },
}


def owned_flag(word: str, backend: str) -> str | None:
    """The owned flag that argv word ``word`` sets (``--port=8000``, ``--n_ctx``, an argparse
    abbreviation such as ``--tensor-parallel``), or None."""
    if not word.startswith("-"):
        return None
    flag = word.split("=", 1)[0].replace("_", "-")
    owned = OWNED_FLAGS[backend]
    if flag in owned:
        return flag
    if flag.startswith("--") and len(flag) >= 6:
        matches = [f for f in owned if f.startswith(flag)]
        return matches[0] if matches else None
    return None


def _server_arg_problems(config: Config) -> Iterator[str]:
    for model in config.models:
        for i, word in enumerate(model.server_args):
            flag = owned_flag(word, model.backend)
            if flag:
                yield (
                    f"{config.model_field(model.name, 'server_args')}.{i} = {word!r}: "
                    f"{flag} is set by evalwatt ({OWNED_FLAGS[model.backend][flag]}); "
                    "allowed: any other server flag"
                )
    if any(m.backend == "vllm" for m in config.models):
        for i, word in enumerate(config.vllm.extra_args):
            flag = owned_flag(word, "vllm")
            if flag:
                yield (
                    f"{config.origin}: field vllm.extra_args.{i} = {word!r}: {flag} is set by "
                    f"evalwatt ({OWNED_FLAGS['vllm'][flag]}); allowed: any other vllm flag"
                )


def _model_problems(config: Config) -> Iterator[str]:
    for model in config.models:
        name = model.name
        heads, kv = model.attention_heads, model.kv_heads
        if kv > heads or heads % kv:
            yield (
                f"{config.model_field(name, 'kv_heads')} = {kv}: model {name} has "
                f"{heads} attention heads; allowed: a divisor of attention_heads "
                "(grouped-query attention shares each KV head among whole groups)"
            )
        active = model.active_params_b
        if active is not None and active > model.total_params_b:
            yield (
                f"{config.model_field(name, 'active_params_b')} = {shown(active)}: more than "
                f"total_params_b = {shown(model.total_params_b)}; allowed: at most total_params_b"
            )
        for bench in model.benchmarks:
            if bench not in config.benchmarks:
                yield (
                    f"{config.model_field(name, 'benchmarks')} = {bench!r}: unknown benchmark "
                    f"of model {name}; allowed: {', '.join(sorted(config.benchmarks))}"
                )
        if not model.path and not config.model_root:
            yield (
                f"{config.model_field(name, 'path')} = None: model {name} has no `path` and "
                "the config no `model_root`; allowed: a weights path, or set model_root"
            )


def _benchmark_problems(config: Config) -> Iterator[str]:
    origin, judges = config.origin, config.judges
    for name, bench in config.benchmarks.items():
        judge = bench.judge
        judged = bench.scorer.startswith("llm-judge")
        if judged and not judge:
            yield (
                f"{origin}: field benchmarks.{name}.judge = None: scorer {bench.scorer} needs "
                f"a judge; allowed: {', '.join(sorted(judges)) or '(none defined in judges)'}"
            )
        if judge and not judged:
            yield (
                f"{origin}: field benchmarks.{name}.judge = {judge!r}: scorer {bench.scorer} "
                "uses no judge (it would run a judge job for nothing); allowed: null, or an "
                "llm-judge scorer"
            )
        if judge and judge not in judges:
            yield (
                f"{origin}: field benchmarks.{name}.judge = {judge!r}: unknown judge; "
                f"allowed: {', '.join(sorted(judges)) or '(none defined)'}"
            )
        yield from _sample_id_problems(origin, name, bench.task_args, bench.samples)
    names = config.model_names()
    for name, entry in judges.items():
        if entry.model not in names:
            yield (
                f"{origin}: field judges.{name}.model = {entry.model!r}: not a model of "
                f"`models`; allowed: {', '.join(names)}"
            )


def _sample_id_problems(origin: str, name: str, task_args: dict, samples: int) -> Iterator[str]:
    """A task given its samples by id (``task_args.sample_ids``) has exactly those: ``samples``
    (what the preview, the time limits and the table count, before ``limit``) must be their
    count. ``limit`` still applies after them, as Inspect applies it."""
    if "sample_ids" not in task_args:
        return
    ids = task_args["sample_ids"]
    if not isinstance(ids, list) or not ids:
        yield (
            f"{origin}: field benchmarks.{name}.task_args.sample_ids = {ids!r}: not a list of "
            "sample ids; allowed: a non-empty list, e.g. [202, 194]"
        )
    elif len(ids) != samples:
        yield (
            f"{origin}: field benchmarks.{name}.samples = {samples}: task_args.sample_ids "
            f"names {len(ids)} samples, which are the task's whole dataset (the preview and "
            f"the time limits count `samples`, then `limit`); allowed: samples {len(ids)}"
        )


def _sampling_problems(config: Config) -> Iterator[str]:
    """A `sampling` key that matches no model's family is a typo (or a dead entry): refused.
    A model whose family has no key uses the server's defaults, which the study did for every
    family but Qwen3; the plan records each cell's top-p, top-k and max tokens (None = unset)."""
    families = sorted({m.family for m in config.models})
    thinking = sorted({m.family for m in config.models if m.reasoning})
    for key in config.sampling:
        family, plus, rest = key.partition("+")
        if plus and rest != "reasoning":
            yield (
                f"{config.origin}: field sampling = {key!r}: unknown suffix +{rest}; allowed "
                "keys: a model family, or <family>+reasoning"
            )
        elif plus and family not in thinking:
            yield (
                f"{config.origin}: field sampling = {key!r}: no reasoning model has family "
                f"{family!r}; families of reasoning models: {', '.join(thinking) or '(none)'}"
            )
        elif not plus and family not in families:
            yield (
                f"{config.origin}: field sampling = {key!r}: no model has family {family!r}; "
                f"allowed: {', '.join(families)}"
            )


def _hf_top_k_problems(config: Config) -> Iterator[str]:
    """``transformers serve`` (backend hf) answers a request that carries ``top_k`` with HTTP
    422 "Unexpected fields" (5.19): every cell of an hf model whose sampling profile sets it
    would fail, so the profile the plan applies to it (``Config.sampling_profile``) is refused
    here."""
    for model in config.models:
        found = config.sampling_profile(model) if model.backend == "hf" else None
        if found is not None and found[1].top_k is not None:
            key, profile = found
            yield (
                f"{config.origin}: field sampling.{key}.top_k = {profile.top_k}: model "
                f"{model.name} is served by transformers serve (backend hf), which refuses "
                "a request with top_k; allowed: no top_k for its family, or backend vllm"
            )


def _time_problems(config: Config) -> Iterator[str]:
    cluster, origin = config.cluster, config.origin
    limit_s = cluster.time_limit_min * 60
    window_s, margin_s = cluster.accounting_window_s, cluster.pad_margin_s
    if window_s > 0 and window_s + margin_s >= limit_s:
        yield (
            f"{origin}: field cluster.accounting_window_s = {shown(window_s)}: "
            f"with pad_margin_s = {shown(margin_s)} every job pads to {window_s + margin_s:g} s, "
            f"past its time limit (time_limit_min = {cluster.time_limit_min}, {limit_s} s); "
            "allowed: window + margin below the time limit"
        )
    ready_s = config.job.ready_timeout_s
    if ready_s >= limit_s:
        yield (
            f"{origin}: field job.ready_timeout_s = {shown(ready_s)}: not below the "
            f"job's time limit (time_limit_min = {cluster.time_limit_min}, {limit_s} s), so a "
            "server that never starts is killed by Slurm instead of reported; allowed: less"
        )


def _per_model_problems(config: Config) -> Iterator[str]:
    """A per-model job is planned within the cluster's time limit: a longer max_job_min
    would ask Slurm for time it never gives."""
    max_min, limit = config.per_model.max_job_min, config.cluster.time_limit_min
    if max_min is not None and max_min > limit:
        yield (
            f"{config.origin}: field per_model.max_job_min = {max_min}: above the cluster's "
            f"time limit (cluster.time_limit_min = {limit}); allowed: 1 to {limit}, or null"
        )


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _accounting_problems(config: Config) -> Iterator[str]:
    """The `accounting` section: a source needs its server, the headline order names only
    collected sources, credentials come from one place and never travel in clear text."""
    acc = config.accounting
    sources = list(acc.sources)
    where = f"{config.origin}: field accounting"
    if "ceems-api" in sources:
        if not acc.ceems.url:
            yield (
                f"{where}.ceems.url = None: source ceems-api needs the API server's URL; "
                "allowed: an http(s) URL, or drop ceems-api from accounting.sources"
            )
        if not acc.cluster_id:
            yield (
                f"{where}.cluster_id = None: source ceems-api looks units up by job id and "
                "cluster id; allowed: CEEMS's id of this cluster"
            )
    if "prometheus" in sources and not acc.prometheus.url:
        yield (
            f"{where}.prometheus.url = None: source prometheus needs the server's URL; "
            "allowed: an http(s) URL, or drop prometheus from accounting.sources"
        )
    for i, name in enumerate(acc.headline_order):
        if name != "nvml" and name not in sources:
            yield (
                f"{where}.headline_order.{i} = {name!r}: not collected (accounting.sources = "
                f"{sources}); allowed: nvml or a source of accounting.sources"
            )
    creds = acc.credentials
    if creds.file and creds.env:
        yield (
            f"{where}.credentials = file {creds.file!r} and env {creds.env!r}: two "
            "places for one secret; allowed: one of them"
        )
    if creds.file or creds.env:
        for key, url in (("ceems", acc.ceems.url), ("prometheus", acc.prometheus.url)):
            host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] if url else ""
            if url and url.startswith("http://") and host not in _LOOPBACK_HOSTS:
                yield (
                    f"{where}.{key}.url = {url!r}: credentials would cross the network in clear "
                    "text; allowed: an https URL (http only on the loopback)"
                )
    if acc.backoff_initial_s > acc.backoff_max_s:
        yield (
            f"{where}.backoff_initial_s = {shown(acc.backoff_initial_s)}: above backoff_max_s = "
            f"{shown(acc.backoff_max_s)}; allowed: at most backoff_max_s"
        )


def check_rules(config: Config) -> None:
    """Raise a ConfigError listing every problem of ``config`` (validated, defaults filled)
    that JSON Schema cannot express."""
    problems = [
        *_model_problems(config),
        *_server_arg_problems(config),
        *_benchmark_problems(config),
        *_sampling_problems(config),
        *_hf_top_k_problems(config),
        *cluster_problems(config),
        *_time_problems(config),
        *_per_model_problems(config),
        *_accounting_problems(config),
    ]
    if problems:
        raise ConfigError("\n".join(problems))
