"""spec.json: everything the job runtime does for one job, written by the renderer.

The runtime reads nothing else (not the config, not the executor), so a job script can be
submitted by hand and still do exactly what the plan said.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from evalwatt.base.layout import JOB_SPEC, RESULT
from evalwatt.base.vocabulary import RUN_KINDS, JobKind
from evalwatt.contracts.contract import Contract, Record

Device = Literal["gpu", "cpu"]


class ModelSpec(Record):
    name: str = Field(description="model name in the config")
    served_name: str = Field(description="name the server serves it under (/v1/models)")
    backend: str = Field(description="inference server (vllm, llama-cpp)")
    path: str = Field(description="weights: a path, $VARS allowed, or package:<module>/<file>")
    hf_id: str = Field(description="Hugging Face repository id")


class ServerSettings(Record):
    """Everything that shapes the server, and so its load-only baseline (evalwatt.plan.matrix).

    One server command per backend on both devices (runtime/backends.py): only the device's
    own settings differ, GPU memory utilisation and the tensor-parallel size on ``gpu``, the
    KV cache space and eager mode on ``cpu``.
    """

    backend: str
    device: Device = Field(description="where the server computes: gpu when gpus > 0, else cpu")
    gpus: int = Field(ge=0, description="GPUs, the tensor-parallel size")
    cpus: int = Field(ge=1)
    quantization: str
    context_tokens: int | None = Field(description="context length; null: the model's")
    server_args: tuple[str, ...] = Field(description="extra server arguments, as given")
    gpu_memory_utilization: float | None = Field(default=None, description="vLLM on gpu only")
    cpu_kvcache_space_gib: int | None = Field(
        default=None, ge=1, description="vLLM on cpu only: VLLM_CPU_KVCACHE_SPACE, GiB"
    )
    cpu_enforce_eager: bool | None = Field(
        default=None, description="vLLM on cpu only: --enforce-eager (no torch.compile)"
    )
    executable: str | None = Field(
        default=None,
        description="vLLM: the server's executable ($VARS expanded in the job); "
        "null: the vllm next to the job's Python",
    )
    cudnn_attention: bool | None = Field(
        default=None,
        description="hf only: whether PyTorch's attention may use cuDNN (hf.cudnn_attention); "
        "null for the other backends, and in specs written before evalwatt set it",
    )

    @model_validator(mode="before")
    @classmethod
    def _device_of_gpus(cls, data: Any) -> Any:
        """A spec without ``device`` (written by hand, by a test) gets the one its backend and
        GPU count imply (llama-cpp always computes on the CPU)."""
        if isinstance(data, dict) and "device" not in data and "gpus" in data:
            gpu = data["gpus"] and data.get("backend") != "llama-cpp"
            return {**data, "device": "gpu" if gpu else "cpu"}
        return data

    @model_serializer(mode="wrap")
    def _without_an_unset_cudnn_choice(self, handler: SerializerFunctionWrapHandler):
        """The settings of the backends that have no cuDNN choice are written as they were
        before it came: their specs did not change, so their jobs do not run again (and the
        spec's version stays: an hf spec without it reads as "not recorded", never equal to
        one with it, so its cell runs again). No return annotation: pydantic would take it
        for the serialized schema, and lose the fields'."""
        data: dict[str, Any] = handler(self)
        if self.cudnn_attention is None:
            data.pop("cudnn_attention", None)
        return data

    @model_validator(mode="after")
    def _gpu_needs_gpus(self) -> ServerSettings:
        if self.device == "gpu" and self.gpus == 0:
            raise ValueError("device gpu with 0 GPUs")
        return self


class ServerSpec(Record):
    argv: tuple[str, ...] = Field(description="command; {port} and {model_path} filled in")
    settings: ServerSettings
    baseline_id: str = Field(description="the load-only baseline of these settings")


MIN_WARM_UP_PROMPT_WORDS = 8
"""A warm-up prompt's fewest words: a label that sets it apart, then text."""


class WarmUpSpec(Record):
    """The wave of requests a job sends its server once it serves, before its work, where the
    server does not warm itself (``transformers serve``: its first serving grows PyTorch's
    caching allocator to the card's limit, releases it and grows it again, and ran a cell 6 to
    7 % dearer than the same cell served next: docs/validation.md). Every job of a model
    configuration (its baseline, its cells, its model job) sends the same wave, so that all
    start their work in the same server state."""

    requests: int = Field(ge=1, description="concurrent requests: the largest max_connections")
    prompt_words: int = Field(
        ge=MIN_WARM_UP_PROMPT_WORDS, description="words of each request's prompt"
    )
    max_tokens: int = Field(ge=1, description="tokens each request may generate")


class PadSpec(Record):
    """How long a job must last for the cluster's accounting to see it.

    The one padding rule: the job runtime sleeps ``sleep_s`` after its work, and the planner's
    estimates (``evalwatt.plan.estimate``) count the same sleep in each job's time limit.
    """

    accounting_window_s: float = Field(description="shortest job the accounting sees; 0: none")
    margin_s: float = Field(ge=0)

    def sleep_s(self, elapsed_s: float) -> float:
        """The sleep that brings a job that has run ``elapsed_s`` past the accounting window
        and its margin: 0 when there is no window, or the job already outlasts it."""
        if self.accounting_window_s <= 0:
            return 0.0
        return max(0.0, self.accounting_window_s + self.margin_s - elapsed_s)


class SamplerSpec(Record):
    interval_s: float = Field(gt=0)
    cpu_watts_per_core: float = Field(gt=0, description="power of a busy core, CPU-time model")


class EvaluationSpec(Record):
    """What a cell generates; every knob that changes energy is pinned."""

    benchmark: str
    task: str = Field(description="Inspect task")
    task_args: dict[str, Any]
    limit: int | None = Field(description="samples; null: all")
    max_connections: int = Field(ge=1)
    temperature: float
    top_p: float | None = Field(description="null: the server's default")
    top_k: int | None = Field(description="null: the server's default")
    max_tokens: int | None = Field(description="null: unset")
    score_in_job: bool = Field(description="scored in this job; false: by a judge job")

    @property
    def sampling_key(self) -> tuple[float, float | None]:
        """As ``contracts.plan.Cell.sampling_key``: what one server of a backend that keeps
        its first request's sampling serves at."""
        return (self.temperature, self.top_p)

    @property
    def cache_salt(self) -> str:
        """A salt of this evaluation's own (16 hex of a hash of its settings): requests that
        carry it share a vLLM server's prefix cache with each other only, so a model job's
        later cell does not reuse the prompts an earlier cell of the same benchmark left in
        the cache (on the H200, without it, a prompt-heavy cell cost 33-61 % less after one of
        the same prompts: docs/validation.md), as a cell job's fresh server never does."""
        settings = json.dumps(self.model_dump(mode="json"), sort_keys=True)  # canonical
        return hashlib.sha256(settings.encode()).hexdigest()[:16]

    def request_sampling(self) -> dict[str, float]:
        """The sampling fields of an OpenAI request as Inspect sends them for this cell."""
        fields: dict[str, float] = {"temperature": self.temperature}
        if self.top_p is not None:
            fields["top_p"] = self.top_p
        return fields


class PackedCell(Record):
    """One cell of a model job: where it writes and what it evaluates."""

    cell_id: str
    run_dir: Path = Field(
        description="the cell's own folder, absolute: its result and Inspect logs"
    )
    evaluation: EvaluationSpec


class CooldownSpec(Record):
    """The wait before each cell of a model job, so that a cell does not start on GPUs still
    warm from the one before: it ends when every job GPU's power is at most its reference-idle
    power plus ``margin_w``, or after ``max_s``; at once where no GPU power can be read."""

    max_s: float = Field(ge=0, description="longest wait, s")
    margin_w: float = Field(ge=0, description="power above the reference idle allowed, W")


class PackSpec(Record):
    """What a model job runs after loading its model once."""

    reference_idle_s: float = Field(
        ge=0, description="loaded model held idle (the in-job baseline), s"
    )
    cooldown: CooldownSpec
    cells: tuple[PackedCell, ...] = Field(min_length=1, description="in the order run")


class JudgedCell(Record):
    """One cell a judge pass scores."""

    cell_id: str
    cell_result: Path = Field(description=f"the cell's {RESULT}")
    run_dir: Path = Field(
        description="the cell's judged folder (judges/<cell>/), absolute: its result and log"
    )

    @property
    def cache_salt(self) -> str:
        """The salt of the judge's requests for this cell (16 hex of a hash of its id), as a
        cell's own (``EvaluationSpec.cache_salt``): a pass judges its cells one after another
        on one server, and two cells of a benchmark send it the same grading template and
        questions; salted apart, a cell's judging costs what it costs first in the pass."""
        return hashlib.sha256(f"judge {self.cell_id}".encode()).hexdigest()[:16]


class JudgingSpec(Record):
    """What a judge pass scores, and how the judge generates."""

    temperature: float
    max_connections: int = Field(ge=1)
    max_tokens: int | None
    cells: tuple[JudgedCell, ...] = Field(min_length=1, description="in the order scored")


class JobSpec(Contract):
    """One job, as the job runtime runs it. Version 5 adds ``warm_up``; version 4 specs still
    read, as jobs that sent no warm-up wave (which they did not), and are never equal to a
    version 5 spec: a cell done by such a job runs again."""

    FILE: ClassVar[str] = f"job spec ({JOB_SPEC})"
    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = (4,)

    schema_version: Literal[4, 5] = 5
    kind: JobKind = Field(description="one of the kinds the runtime runs: " + ", ".join(RUN_KINDS))
    job_id: str = Field(description="evalwatt's id of the job (cell id, baseline id, pack id)")
    run: str
    run_dir: Path = Field(description="where the job writes, absolute")
    model: ModelSpec
    server: ServerSpec
    ready_timeout_s: float = Field(gt=0)
    warm_up: WarmUpSpec | None = Field(
        default=None, description="the warm-up wave after ready; None: the server warms itself"
    )
    pad: PadSpec
    sampler: SamplerSpec
    evaluation: EvaluationSpec | None = Field(default=None, description="cell jobs only")
    pack: PackSpec | None = Field(default=None, description="model jobs only")
    judging: JudgingSpec | None = Field(default=None, description="judge passes only")

    @model_validator(mode="after")
    def _work_matches_kind(self) -> JobSpec:
        if self.kind not in RUN_KINDS:
            raise ValueError(
                f"a job spec's kind is one of {', '.join(RUN_KINDS)}, not {self.kind!r} "
                "(the job runtime writes that kind of result, it does not run it)"
            )
        for field, kind in (("evaluation", "cell"), ("pack", "model"), ("judging", "judge-pass")):
            if (getattr(self, field) is not None) != (self.kind == kind):
                raise ValueError(
                    f"{field} settings belong to {kind} jobs, not to a {self.kind} job"
                )
        return self

    def first_request_sampling(self) -> dict[str, float]:
        """The sampling fields of the job's first request to its server: its cell's, its
        first packed cell's (a model job's cells share them where the backend keeps them,
        ``config.model_entry.SAMPLING_AT_FIRST_REQUEST``), its judge's temperature; none for
        a baseline (the server's defaults)."""
        if self.evaluation is not None:
            return self.evaluation.request_sampling()
        if self.pack is not None:
            return self.pack.cells[0].evaluation.request_sampling()
        if self.judging is not None:
            return {"temperature": self.judging.temperature}
        return {}

    def packed_cell_spec(self, cell: PackedCell) -> JobSpec:
        """The spec a cell job of ``cell`` would have: this model job's model, server, pad
        and sampler with the cell's evaluation and folder. A packed cell's result carries it,
        so that "is this result still valid?" compares it with the plan's as for a cell job."""
        if self.kind != "model":
            raise ValueError(f"a {self.kind} job packs no cells")
        return self.model_copy(
            update={
                "kind": "cell",
                "job_id": cell.cell_id,
                "run_dir": cell.run_dir,
                "evaluation": cell.evaluation,
                "pack": None,
            }
        )

    def judged_cell_spec(self, cell: JudgedCell) -> JobSpec:
        """The spec of a judge pass of ``cell`` alone, in its judged folder: what the judge
        result a pass writes for that cell carries (and a cell's judge job has)."""
        if self.judging is None:
            raise ValueError(f"a {self.kind} job judges no cells")
        return self.model_copy(
            update={
                "job_id": cell.cell_id,
                "run_dir": cell.run_dir,
                "judging": self.judging.model_copy(update={"cells": (cell,)}),
            }
        )
