"""The run configuration as a tree of typed, immutable models: ``RunConfig`` and its sections.

``evalwatt.config.load`` validates a YAML file against the JSON Schema generated from these
models (its messages name the file, the field, the value and what is allowed), then builds a
``RunConfig`` from it, defaults filled by the models. The rest of the package reads the tree
through ``evalwatt.config.types.Config``, never by string key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from evalwatt.base.vocabulary import Execution
from evalwatt.config.accounting import Accounting
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.section import (
    Identifier,
    Matching,
    Name,
    Printable,
    Section,
    Unique,
    section,
)
from evalwatt.config.slurm_constraint import SlurmConstraint
from evalwatt.contracts.spec import MIN_WARM_UP_PROMPT_WORDS, PadSpec

Scorer = Literal["exact-match", "unit-tests", "llm-judge", "llm-judge-rubric"]
DeferredCheck = Literal["weights", "tasks", "job_python"]
BenchmarkName = Annotated[str, Matching(r"^(?!.*__)[a-z][a-z0-9_]{0,39}$")]
FamilyKey = Annotated[str, Matching(r"^[a-z0-9.+_-]+$")]
TaskName = Annotated[str, Matching(r"^[A-Za-z0-9_./-]+$")]
Temperature = Annotated[float, Field(ge=0, le=2)]
Connections = Annotated[int, Field(ge=1, le=100000)]
_PATH_CHAR = r"[A-Za-z0-9._/+,=@-]"
ResultsPath = Annotated[str, Matching(f"^{_PATH_CHAR}([A-Za-z0-9 ._/+,=@-]*{_PATH_CHAR})?$")]
"""A path that no shell quoting can break: no quote, $, backtick, backslash, glob, brace
(Snakemake's wildcards), % (Slurm's file name patterns) or control character."""


class Cluster(Section):
    """Where the jobs run, and what the energy accounting of that place needs."""

    name: Name
    """Cluster name, for the record and the tables."""
    gpu_model: Annotated[str, Matching(r"^[^\x00-\x1f\x7f]*$")] = "none"
    """GPU model, for the record (e.g. "NVIDIA H100 80GB HBM3")."""
    gpus_per_node: int = Field(ge=0, le=64)
    """GPUs of one node; 0 declares a CPU-only cluster (the demo; vllm models then run vLLM's
    CPU build). On it, GPU memory, a GPU model, a GPU feature in the constraint, a model's forced
    gpus, DCGM series and the hf backend are refused (evalwatt.config.cluster_rules)."""
    gpu_memory_gb: float = Field(0, ge=0)
    """Memory of one GPU in GB of 1e9 bytes, the unit of the VRAM formula (P in 1e9 parameters).
    The study compared VRAM_GB with the H100's nominal "80 GB"; the card really has 80 GiB of
    HBM3, of which NVML reports 81,559 MiB (85.5e9 bytes). Required on a GPU cluster with
    vllm or hf models (the planner sizes them by it); 0 on a CPU-only cluster."""
    cpus_per_gpu: int = Field(1, ge=1)
    """CPUs reserved per GPU (Jean Zay's H100 partition: 24)."""
    cpus_per_cpu_job: int = Field(2, ge=1)
    """CPUs of a job that uses no GPU (CPU backends such as llama-cpp)."""
    accounting_window_s: float = Field(ge=0)
    """Jobs shorter than this are not accounted by the cluster's energy monitoring (CEEMS
    cutoff_duration); shorter jobs are padded with measured sleep. 0 disables padding."""
    pad_margin_s: float = Field(30, ge=0)
    """Extra seconds of padding beyond the accounting window."""
    time_limit_min: int = Field(240, ge=1)
    """The longest wall time a job may ask for, in minutes: the rendered job.sbatch's #SBATCH
    --time, and the cap of the time each Snakemake job asks for (its estimate x
    planner.runtime_margin, growing with each retry)."""
    mem_mb_per_cpu: int = Field(4000, ge=100)
    """Memory per allocated CPU, in MB (--mem-per-cpu). Always sent: without it Snakemake asks for
    1000 MB per job, and a site without DefMemPerCPU gives a job the whole node's memory. Scales
    with the CPUs the planner gives a job (cpus_per_gpu x GPUs)."""
    partition: Annotated[str, Matching(r"^[A-Za-z0-9._,-]+$")] | None = None
    """Slurm partition (#SBATCH --partition)."""
    account: Annotated[str, Matching(r"^[A-Za-z0-9._@-]+$")] | None = None
    """Slurm account (#SBATCH --account), e.g. abc@h100."""
    qos: Annotated[str, Matching(r"^[A-Za-z0-9._-]+$")] | None = None
    """Slurm QoS (#SBATCH --qos)."""
    constraint: SlurmConstraint | None = None
    """Slurm constraint (#SBATCH --constraint): a feature expression, e.g. h100, "h100&(a|b)",
    "[rack1|rack2]". Feature names (letters, digits, _ . : + -) joined by & (and), | (or) or ','
    (and); one level of ( ) grouping; a count (name*N) on a single term; at most one [ ] group.
    Anything else is refused on load (evalwatt.config.slurm_constraint); a valid expression
    reaches sbatch verbatim, quoted on every path (docs/running.md#slurm-fields)."""
    modules: tuple[Printable, ...] = ()
    """Environment modules loaded by every job (`module load NAME`, names shell-quoted)."""

    def pad(self) -> PadSpec:
        """The padding every job of this cluster gets (one rule: ``PadSpec.sleep_s``)."""
        return PadSpec(accounting_window_s=self.accounting_window_s, margin_s=self.pad_margin_s)


class Planner(Section):
    """Settings of the GPU-count planner and of the cost preview's assumptions."""

    vram_overhead: float = Field(1.3, ge=1.0, le=3.0)
    """Multiplier on weight memory; the study used 1.3 (1.2 left models out of memory)."""
    round_three_to_four: bool = True
    """The study rounded a 3-GPU plan to 4. The head-divisibility check already rejects 3 for
    nearly every model; this forces it for all."""
    load_gb_per_s: float = Field(1.0, gt=0)
    """Weight-loading speed assumed by the cost preview (GB/s); not a measurement. A
    calibration file (planner.calibration) replaces it with a run's measured rate."""
    server_start_s: float = Field(60, ge=0)
    """Server start-up seconds assumed by the cost preview, on top of loading."""
    throughput_table: Printable | None = None
    """The throughput model of the estimate (tokens per second by model class, precision, GPU
    type and max_connections, every number with its source): a YAML file, relative to the
    working directory. null: the table shipped with evalwatt (config/throughput.yaml)."""
    calibration: Printable | None = None
    """A calibration file written by `evalwatt preview-check --write-calibration FILE` after a
    run: its measured rates (tokens per second per model and max_connections, weights loading
    GB/s, Inspect's overhead per cell) replace the table's and the assumptions above for the
    models it measured. null: the table and the assumptions only."""
    inspect_overhead_s: float = Field(10, ge=0)
    """Seconds of a cell outside generation: Inspect's import, task and dataset set-up,
    scoring in the job (the CPU demo measures about 6 s per cell); also a judged cell's
    judgement outside its judge calls, until a calibration measures it."""
    job_overhead_s: float = Field(5, ge=0)
    """Seconds every job spends loaded outside its loading, its cells' evaluations, cooldowns
    and padding: Inspect's import before the first cell, a baseline's hold, the server's stop,
    the results' writes (4-7 s per job on the H200 runs of docs/validation.md). A calibration
    file replaces it with a run's measured mean per job kind."""
    reasoning_output_factor: float = Field(10, ge=1)
    """Multiplier on a benchmark's expected_output_tokens for a reasoning model (its thinking
    tokens), capped by the cell's max_tokens: ML.ENERGY v3 measured 6,988 output tokens on
    average with reasoning on against 717 without (ml.energy/blog, Leaderboard v3.0, 2026-01)."""
    runtime_margin: float = Field(2.0, gt=0, le=100)
    """Each job asks the scheduler for its estimated duration (loading, inference, padding: the
    cost preview's assumptions) times this margin, in whole minutes, at least min_runtime_min,
    times the attempt number on a retry, at most cluster.time_limit_min. Below 1 only to provoke
    a time limit on purpose (the CI's TIMEOUT test)."""
    min_runtime_min: int = Field(10, ge=1)
    """The shortest time limit a job asks for, in minutes."""


class Vllm(Section):
    """Settings passed to every `vllm serve`."""

    executable: Printable | None = None
    """The `vllm` executable that serves (a path, or a name on PATH; $VARS are expanded in the
    job). null means the vllm next to the job's Python (job.python). vLLM's CPU build lives in
    an environment of its own (.venv-vllm, `bootstrap.py setup --vllm`), hence this setting."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Fraction of each GPU's memory vLLM may use (GPU jobs only)."""
    cpu_kvcache_space_gib: int = Field(1, ge=1, le=1024)
    """KV cache of vLLM's CPU build, GiB (VLLM_CPU_KVCACHE_SPACE; CPU jobs only)."""
    cpu_enforce_eager: bool = True
    """Start vLLM's CPU build with --enforce-eager (CPU jobs only): ready in about 55 s instead of
    140 to 230 s compiled on 2 cores (docs/vllm.md)."""
    extra_args: tuple[str, ...] = ()
    """More `vllm serve` arguments, one list item per argv word (shell-quoted when rendered). Flags
    that evalwatt sets itself (--tensor-parallel-size, --port, --host, --served-model-name,
    --max-model-len, --gpu-memory-utilization, ...) are refused."""


class Hf(Section):
    """Settings of every `transformers serve` (backend hf, through runtime/hf_serve.py)."""

    cudnn_attention: bool = False
    """Let PyTorch run the server's attention with cuDNN. false (evalwatt's choice): cuDNN
    builds a plan for each new attention shape, and paged SDPA's key length grows at every
    step, so a server that had served the same lengths (a model job's later cells) stepped
    faster than a fresh one and a cell cost 4 to 11 % less; without cuDNN both execution
    modes agree within 0.7 % (docs/vllm.md). true: PyTorch's default, 9 to 40 % less energy
    per cell on an H100, but a cell's energy then depends on what its server ran before."""


class Benchmark(Section):
    """One benchmark: its Inspect task, its size, how it is scored."""

    task: TaskName
    """Inspect task name, e.g. "inspect_evals/humaneval" or "evalwatt/humaneval_offline"."""
    task_args: dict[str, Any] = Field(default={})
    """Arguments passed to the task (Inspect's -T)."""
    samples: int = Field(ge=1)
    """Number of samples in the full benchmark (for cost previews and the record); with
    task_args.sample_ids, their count (a config where they differ is refused)."""
    limit: int | None = Field(None, ge=1)
    """Evaluate only the first N samples; null means all."""
    scorer: Scorer
    """How answers are scored."""
    judge: str | None = None
    """Name of an entry of `judges` (required for llm-judge scorers)."""
    max_tokens: int | None = Field(None, ge=1)
    """Max generated tokens for this benchmark (overrides the family's); null means unset."""
    multimodal: bool = False
    """True when the benchmark needs image input (only multimodal models run it)."""
    expected_s_per_sample: float = Field(2.0, ge=0)
    """Generation seconds per sample, used by the estimate only for a model that no row of the
    throughput table (planner.throughput_table) describes."""
    expected_output_tokens: int = Field(500, ge=1)
    """Output tokens of one answer of a non-reasoning model, for the estimate (generation seconds
    = samples x tokens / tokens per second at the cell's max_connections). 500: about the mean
    answer of ML.ENERGY v3's chat task (404 tokens)."""
    expected_input_tokens: int = Field(500, ge=0)
    """Prompt tokens of one sample, for the estimate's prefill seconds."""
    judge_calls_per_sample: float = Field(1, ge=0)
    """Judge calls per sample (llm-judge scorers): 1 for one grade per answer, more for
    rubrics (one call per rubric item)."""
    judge_input_tokens: int = Field(1000, ge=0)
    """Prompt tokens of one judge call (the question, the answer, the rubric)."""
    judge_output_tokens: int = Field(100, ge=1)
    """Output tokens of one judge call."""

    @property
    def samples_run(self) -> int:
        """The samples a cell evaluates: all, or the first ``limit``."""
        return min(self.samples, self.limit or self.samples)


class SamplingProfile(Section):
    """Sampling settings of one model family; null leaves a setting to the server."""

    top_p: float | None = Field(None, gt=0, le=1)
    """Nucleus sampling's top-p; null: the server's."""
    top_k: int | None = Field(None, ge=1)
    """Top-k sampling; null: the server's."""
    max_tokens: int | None = Field(None, ge=1)
    """Max generated tokens (a benchmark's own max_tokens wins); null: unset."""


class Judge(Section):
    """A judge model and how it is run on a cell's answers."""

    model: str
    """Name of a model of `models` (planned like any other)."""
    temperature: Temperature = 0.2
    """The judge's sampling temperature."""
    max_connections: int = Field(10, ge=1)
    """Inspect's max_connections of the judge job."""
    max_tokens: int | None = Field(None, ge=1)
    """Max tokens of a judgement; null: unset."""


class Sweeps(Section):
    """Settings crossed with every (model, benchmark) pair."""

    temperature: Unique[Temperature] = Field(min_length=1)
    """Sampling temperatures, one cell each."""
    max_connections: Unique[Connections] = Field(min_length=1)
    """Inspect's max_connections (concurrent requests); always pinned, never adaptive."""


class JobSettings(Section):
    """Settings of every rendered job."""

    ready_timeout_s: float = Field(1800, gt=0)
    """How long to wait for the inference server to answer its readiness check (vLLM's
    /v1/models, `transformers serve`'s /health, then its one-token warm-up and its warm-up
    wave) before failing the job."""
    warm_up_wave: bool = True
    """Whether a job whose server does not warm itself (backend hf: `transformers serve`) sends
    it one wave of concurrent requests once it serves, between the `warm_up_*` marks, before
    its work: as many requests as the largest of `sweeps.max_connections` (a judge: its
    `max_connections`), the same in every job of a model configuration, the baseline's too.
    Its first serving ran 6-7 % dearer than the next on an H100 (docs/validation.md). vLLM
    and llama.cpp warm themselves at start and get none."""
    warm_up_prompt_words: int = Field(256, ge=MIN_WARM_UP_PROMPT_WORDS)
    """Words in each warm-up request's prompt (about 1.3 tokens each)."""
    warm_up_max_tokens: int = Field(16, ge=1)
    """Tokens each warm-up request generates at most."""
    sample_interval_s: float = Field(0.1, ge=0.01, le=10)
    """Sampling period of the in-job energy sampler (NVML, RAPL, CPU time)."""
    cpu_watts_per_core: float = Field(10.0, gt=0)
    """Modelled CPU power per busy core, for machines where no CPU energy counter is readable. The
    result is an estimate and lands in `cpu_est_*` columns only."""
    python: Printable | None = None
    """Python interpreter used inside jobs (a path, or a name on PATH); null means the one that
    rendered them."""
    env: dict[Identifier, str] = Field(default={})
    """Environment variables exported by every job (values are shell-quoted)."""


class PerModel(Section):
    """Settings of the per-model jobs (``execution: per-model``): one job per (model, server
    settings) runs all its cells with one server start (docs/running.md#execution-modes)."""

    reference_idle_s: float = Field(10, ge=0)
    """Seconds the loaded model is held idle after the server is ready and before the first
    cell: the in-job baseline (loaded-idle power, same CUDA state as the cells)."""
    cooldown_max_s: float = Field(60, ge=0)
    """Longest wait before a cell's evaluation for the GPUs' power to come back near the
    loaded-idle reference; the wait and what ended it are recorded in the cell's result."""
    cooldown_margin_w: float = Field(10, ge=0)
    """The cooldown ends when every GPU of the job draws at most its reference-idle power plus
    this margin (watts), or after cooldown_max_s."""
    max_job_min: int | None = Field(None, ge=1)
    """The longest a per-model job may be planned to run, in minutes (its cells' estimates x
    planner.runtime_margin): a model whose cells need more is split into several jobs. null:
    cluster.time_limit_min."""


def _sheet_or_list(schema: dict[str, Any]) -> None:
    """In a file, `models` may also be the path of a TSV sheet (``evalwatt.config.sheet``),
    which the loader replaces by its rows before the tree is built."""
    branch = {key: schema.pop(key) for key in ("type", "minItems", "items")}
    schema["oneOf"] = [{"type": "string", "pattern": r"\.tsv$"}, branch]


class RunConfig(Section):
    """One run of the (model x benchmark x temperature x max_connections) matrix on one
    cluster. Every key is described in docs/config.md; unknown keys are errors. evalwatt reads
    every `pattern` as matching the whole string (its `$` is the end of the string, as in JSON
    Schema's regexes), and refuses NaN and infinite numbers anywhere."""

    model_config = ConfigDict(title="evalwatt run configuration")

    run: Name
    """Name of the run; results land in <results_dir>/<run>/."""
    results_dir: ResultsPath = "results"
    """Folder that holds every run's results (relative to the working directory). Letters,
    digits, inner spaces and . _ / + , = @ - only: its paths reach the Slurm executor plugin's
    command line inside double quotes, where a login shell would expand $(...), backticks and
    $VARS (docs/running.md#slurm-fields)."""
    model_root: Printable | None = None
    """Folder where model weights are staged for offline compute nodes; a model without `path` is
    looked for at <model_root>/<hf_id>. Environment variables ($DSDIR) are expanded in jobs; a
    variable not set where the workflow starts defers the weights check to the job."""
    deferred_checks: Unique[DeferredCheck] = ()
    """Checks of the machine that `evalwatt plan` and the workflow must leave to the job on the
    compute node (e.g. weights on a file system that only compute nodes mount): weights (each
    model's path exists), tasks (each benchmark's Inspect task is installed), job_python
    (job.python exists). Deferred checks are recorded in plan.json, never skipped silently."""
    execution: Execution = "per-cell"
    """How cells are grouped into jobs. per-cell (the study's layout, the default): one job per
    cell, one load-only baseline job per server settings, so a site's per-job accounting
    (CEEMS) sees each cell on its own. per-model: one job per (model, server settings) runs all
    its cells with one server start, its own loaded-idle reference and a cooldown between cells
    (section per_model); each cell still gets its own score, energy, row and audit entry, but
    a per-job total (CEEMS API, sacct) cannot be split into cells. Either way one judge pass
    per judge model scores every judge-scored cell. docs/running.md says which to choose."""
    per_model: PerModel = section(PerModel)
    """Settings of the per-model jobs (used with execution: per-model)."""
    cluster: Cluster
    """Where the jobs run, and what the energy accounting of that place needs."""
    planner: Planner = section(Planner)
    """Settings of the GPU-count planner (docs/methodology.md#gpu-count)."""
    vllm: Vllm = section(Vllm)
    """Settings passed to every `vllm serve` (backend vllm). The same command runs on GPUs and, on
    a cluster with gpus_per_node 0, on the CPU (vLLM's CPU build, docs/vllm.md); only the
    device's own settings differ."""
    hf: Hf = section(Hf)
    """Settings of every `transformers serve` (backend hf)."""
    models: tuple[ModelEntry, ...] = Field(min_length=1, json_schema_extra=_sheet_or_list)
    """The models, either inline (a list) or as a TSV sheet (a path relative to the config file's
    folder); each row is validated against workflow/schemas/model.schema.yaml."""
    benchmarks: dict[BenchmarkName, Benchmark] = Field(min_length=1)
    """Benchmarks by name; the name is used in paths and tables."""
    sweeps: Sweeps
    """Settings crossed with every (model, benchmark) pair."""
    sampling: dict[FamilyKey, SamplingProfile] = Field(default={})
    """Sampling settings per model family (the sheet's `family`); the key `<family>+reasoning`
    applies to reasoning models of that family. The sweep sets the temperature."""
    judges: dict[Name, Judge] = Field(default={})
    """Judge models by name, referenced by a benchmark's `judge`."""
    job: JobSettings = section(JobSettings)
    """Settings of every rendered job."""
    accounting: Accounting = section(Accounting)
    """The cluster's own energy accounting, collected on the login node after each job beside the
    in-job NVML counter (docs/energy-sources.md), and the audit that sets the sources side by
    side (docs/audit.md). Secrets are never written here: only the name of a credentials file or
    of an environment variable."""
