"""One model of the run: an inline entry of ``models`` or a row of the TSV model sheet.

Its fields are the sheet's columns (``evalwatt.config.sheet`` types each cell by its field),
and workflow/schemas/model.schema.yaml is generated from it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from evalwatt.config.section import Matching, Printable, Section, Unique

ModelName = Annotated[str, Matching(r"^(?!.*__)[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]
HfId = Annotated[str, Matching(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")]
Family = Annotated[str, Matching(r"^[a-z0-9._-]+$")]
Date = Annotated[str, Matching(r"^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$")]
Backend = Literal["vllm", "llama-cpp", "hf"]
SAMPLING_AT_FIRST_REQUEST: frozenset[str] = frozenset({"hf"})
"""Backends whose server takes its sampling settings (temperature, top_p) from the first
request it gets and applies them to every later one. ``transformers serve`` with continuous
batching does (5.17: ``init_cb`` builds the batching manager and its logits processors once,
from the first request's generation config; later requests set only their ``max_tokens``). A
server of theirs serves one sampling setting: the planner gives each its own model job
(``evalwatt.plan.estimate.model_job_groups``), and the job's first request is a warm-up with
that setting (``evalwatt.runtime.serving``)."""
Quantization = Literal["none", "fp8", "awq", "gptq", "gguf"]


class ModelEntry(Section):
    """What the planner and the job need to know about a model, and where each number comes
    from."""

    model_config = ConfigDict(title="one model (a row of the model sheet, or an inline entry)")

    name: ModelName
    """Short name, used in paths, job names and tables; "__" separates the parts of job ids, so a
    name may not contain it."""
    hf_id: HfId
    """Hugging Face repository id (organisation/name)."""
    path: Printable | None = None
    """Where the weights are: a folder or file path, or "package:<module>/<file>" for weights
    shipped inside an installed Python package. Default: <model_root>/<hf_id>. $VARS and ~ are
    expanded (evalwatt.base.model_path)."""
    backend: Backend
    """Inference server; vllm for GPU clusters, llama-cpp for GGUF models on CPU, hf for evalwatt's
    transformers server (one GPU; GPU machines without vLLM, docs/validation.md)."""
    family: Family
    """Sampling family (key of the config's `sampling`)."""
    total_params_b: float = Field(gt=0)
    """Total parameters, billions."""
    active_params_b: float | None = Field(None, gt=0)
    """Parameters active per token (MoE), billions; null means total_params_b."""
    weight_bits: Literal[4, 8, 16, 32]
    """Bits per stored weight (Q of the VRAM formula)."""
    quantization: Quantization = "none"
    """Quantization method, passed to `vllm serve --quantization` unless none."""
    attention_heads: int = Field(ge=1)
    """num_attention_heads of the language model."""
    kv_heads: int = Field(ge=1)
    """num_key_value_heads of the language model."""
    moe: bool = False
    """A mixture of experts (recorded in the table's `moe`)."""
    reasoning: bool = False
    """A reasoning model: its sampling comes from `<family>+reasoning` first (recorded in the
    table's `reasoning`)."""
    multimodal: bool = False
    """Takes image input; only a multimodal model may run a multimodal benchmark."""
    release_date: Date | None = None
    """Release date, YYYY-MM or YYYY-MM-DD, for the record."""
    benchmarks: Unique[str] = ()
    """Names of the benchmarks this model runs; an empty list makes a judge-only model."""
    gpus: int | None = Field(None, ge=1)
    """Force the GPU count instead of the VRAM formula's (null: plan it). The planner still checks
    the tensor-parallel rules and the node size, and says so in its reason."""
    context_tokens: int | None = Field(None, ge=1)
    """Context length given to the server (vLLM --max-model-len, llama.cpp n_ctx); null lets the
    server choose."""
    server_args: tuple[str, ...] = ()
    """More server arguments for this model, one argv word per item. Flags that evalwatt sets
    itself (model path, name, host, port, GPU and CPU counts, context length, quantization, GPU
    memory share) are refused."""
    params_source: str | None = None
    """Where total/active parameters come from (URL)."""
    heads_source: str | None = None
    """Where head counts come from (URL of config.json)."""
    notes: str | None = None
    """Free text, for the record."""
