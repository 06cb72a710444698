"""How long each job should take, from the throughput model (``evalwatt.plan.throughput``).

One estimate feeds both the cost preview (``evalwatt plan``: GPU-hours by phase for both
execution modes) and the time each job asks the scheduler for, so that the two can never
disagree. A job's time limit is the estimate times ``planner.runtime_margin``, at least
``planner.min_runtime_min``, times the attempt number on a retry (a job killed at its limit
comes back with more time), and never more than the cluster's ``time_limit_min``.

The phases of a job: loading (server start + weights ÷ load rate), the in-job reference idle
(per-model jobs), generation (each cell's samples × (prompt tokens ÷ prefill rate + output
tokens ÷ tokens/s at its ``max_connections``)), idle (Inspect's set-up and scoring per cell, a
cooldown before each packed cell, and the job's own loaded seconds outside its cells:
Inspect's import, a baseline's hold, the server's stop, the writes) and padding
(``PadSpec.sleep_s``: the jobs' own rule). A
cooldown is estimated at ``per_model.cooldown_max_s`` (its bound: time limits must hold) until
a calibration file gives the measured mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from evalwatt.base.vocabulary import RUN_KINDS, JobKind
from evalwatt.config.load import Config
from evalwatt.config.model_entry import SAMPLING_AT_FIRST_REQUEST
from evalwatt.contracts.plan import (
    Calibration,
    Cell,
    CostAssumptions,
    CostPreview,
    JobCounts,
    ModelRate,
    ModePreview,
    PhaseHours,
)
from evalwatt.plan.matrix import Plan
from evalwatt.plan.throughput import ModelRates, calibration_of, model_rates

PackedKind = Literal["model", "judge-pass"]


@dataclass(frozen=True)
class Estimate:
    """Seconds of one job, by phase."""

    load_s: float
    reference_idle_s: float = 0.0
    generation_s: float = 0.0
    idle_s: float = 0.0
    pad_s: float = 0.0

    @property
    def inference_s(self) -> float:
        """The cells' evaluation windows: generation and Inspect's work around it."""
        return self.generation_s + self.idle_s

    @property
    def total_s(self) -> float:
        return self.load_s + self.reference_idle_s + self.generation_s + self.idle_s + self.pad_s


def _padded(
    config: Config,
    kind: JobKind,
    load_s: float,
    reference_idle_s: float,
    generation_s: float,
    idle_s: float,
) -> Estimate:
    """The phases, with the job's own loaded seconds outside its cells (``job_overhead_s``)
    counted as idle, padded by the job's own rule (``PadSpec.sleep_s``) on their busy
    seconds."""
    idle_s += job_overhead_seconds(config, kind)
    busy = load_s + reference_idle_s + generation_s + idle_s
    pad_s = config.cluster.pad().sleep_s(busy)
    return Estimate(load_s, reference_idle_s, generation_s, idle_s, pad_s)


# --- rates -------------------------------------------------------------------------------------


def device_of(plan: Plan, model: str) -> str:
    """gpu or cpu: where the model computes (llama-cpp computes on the CPU even when GPUs are
    allocated, as ``plan.matrix.server_settings`` says)."""
    planned = plan.models[model]
    return "gpu" if planned.gpus and planned.backend != "llama-cpp" else "cpu"


def rates_of(plan: Plan, config: Config, model: str) -> ModelRates:
    return model_rates(config, model, device_of(plan, model))


def load_seconds(plan: Plan, config: Config, model: str) -> float:
    """Server start-up and weight loading of ``model``: a calibration's measured seconds, else
    the planner's assumed start-up and speed."""
    measured = rates_of(plan, config, model).calibrated
    if measured is not None and measured.load_s is not None:
        return measured.load_s
    planner = config.planner
    weights_gb = plan.models[model].vram_gb / planner.vram_overhead
    return planner.server_start_s + weights_gb / planner.load_gb_per_s


def _measured_or(
    config: Config, measured: Callable[[Calibration], float | None], assumed: float
) -> float:
    """A calibration's measured value where it has one, else the config's assumption."""
    calibration = calibration_of(config)
    value = measured(calibration) if calibration is not None else None
    return assumed if value is None else value


def overhead_seconds(config: Config) -> float:
    """Seconds of a cell's evaluation window outside its generation."""
    return _measured_or(config, lambda c: c.inspect_overhead_s, config.planner.inspect_overhead_s)


def judge_overhead_seconds(config: Config) -> float:
    """Seconds of a judged cell's judgement outside its judge calls: measured, else a cell's
    evaluation overhead, measured or assumed (an evaluation's, larger than a scoring's: time
    limits hold, and a calibration of version 1 or 2 keeps the figure it was read with)."""
    return _measured_or(config, lambda c: c.judge_overhead_s, overhead_seconds(config))


def job_overhead_seconds(config: Config, kind: JobKind) -> float:
    """Seconds a job of ``kind`` spends loaded outside its loading, its cells' evaluations,
    cooldowns and padding: a calibration's measured mean for that kind, else the planner's."""
    return _measured_or(config, lambda c: c.job_overhead_s.get(kind), config.planner.job_overhead_s)


def cooldown_seconds(config: Config) -> float:
    """A packed cell's cooldown: measured, else its bound (time limits must hold)."""
    return _measured_or(config, lambda c: c.cooldown_s, config.per_model.cooldown_max_s)


def output_tokens(config: Config, cell: Cell) -> float:
    """Expected output tokens of one answer: the benchmark's, times the reasoning factor for a
    reasoning model, at most the cell's max_tokens."""
    bench = config.benchmarks[cell.benchmark]
    tokens = float(bench.expected_output_tokens)
    if config.model(cell.model).reasoning:
        tokens *= config.planner.reasoning_output_factor
    cap = cell.sampling.max_tokens
    return min(tokens, cap) if cap else tokens


def _tokens_seconds(
    rates: ModelRates, calls: float, in_tokens: float, out_tokens: float, in_flight: int
) -> float | None:
    """Seconds of ``calls`` requests at ``in_flight`` concurrency; None without a table row."""
    decode, prefill = rates.decode_tokens_per_s(min(in_flight, calls)), rates.prefill_tokens_per_s()
    if decode is None or prefill is None or calls == 0:
        return None if decode is None else 0.0
    return calls * (in_tokens / prefill + out_tokens / decode)


def generation_seconds(plan: Plan, config: Config, cell: Cell) -> float:
    """A cell's generation: the calibration's measured rate at its max_connections, else the
    table's prefill and decode rates, else ``expected_s_per_sample`` (no row for the model)."""
    bench = config.benchmarks[cell.benchmark]
    samples, out_tokens = bench.samples_run, output_tokens(config, cell)
    rates = rates_of(plan, config, cell.model)
    measured = rates.measured_tokens_per_s(cell.max_connections)
    if measured:
        return samples * out_tokens / measured
    seconds = _tokens_seconds(
        rates, samples, bench.expected_input_tokens, out_tokens, cell.max_connections
    )
    return samples * bench.expected_s_per_sample if seconds is None else seconds


def judge_seconds(plan: Plan, config: Config, cell: Cell) -> float:
    """The generation of the judge's calls on one cell's answers (0 for a cell scored in-job)."""
    if cell.judge is None:
        return 0.0
    judge, bench = config.judges[cell.judge], config.benchmarks[cell.benchmark]
    calls = bench.samples_run * bench.judge_calls_per_sample
    rates = rates_of(plan, config, judge.model)
    measured = rates.calibrated.judge_s_per_call if rates.calibrated else {}
    per_call = measured.get(str(judge.max_connections))
    if per_call is not None:
        return calls * per_call
    out_tokens = min(bench.judge_output_tokens, judge.max_tokens or bench.judge_output_tokens)
    seconds = _tokens_seconds(
        rates, calls, bench.judge_input_tokens, out_tokens, judge.max_connections
    )
    return calls * bench.expected_s_per_sample if seconds is None else seconds


# --- jobs --------------------------------------------------------------------------------------


def estimate(plan: Plan, config: Config, kind: JobKind, job_id: str) -> Estimate:
    """The estimate of a cell job, a baseline (load-only) job, or one cell's judging (kind
    judge: the judge loaded for that cell alone). Packed jobs: ``estimate_cells``."""
    if kind == "baseline":
        model = plan.baselines[job_id].model
        return _padded(config, "baseline", load_seconds(plan, config, model), 0, 0, 0)
    cell = plan.cells[job_id]
    if kind == "cell":
        load = load_seconds(plan, config, cell.model)
        gen = generation_seconds(plan, config, cell)
        return _padded(config, "cell", load, 0.0, gen, overhead_seconds(config))
    if kind == "judge" and cell.judge:
        return estimate_cells(plan, config, config.judges[cell.judge].model, [cell], "judge-pass")
    raise ValueError(f"no per-job estimate for kind {kind!r} of {job_id}: use estimate_cells")


def estimate_cells(
    plan: Plan,
    config: Config,
    model: str,
    cells: Sequence[Cell],
    kind: PackedKind = "model",
) -> Estimate:
    """The estimate of one job that loads ``model`` once and works through ``cells`` in turn.

    kind model (a per-model job): the reference idle, then per cell a cooldown, Inspect's
    overhead and its generation. kind judge-pass (``model`` is the judge's): per cell Inspect's
    overhead and the generation of its judge calls. One load, one pad, either way."""
    return _packed(plan, config, model, _cell_costs(plan, config, cells, kind), kind)


def _cell_costs(
    plan: Plan, config: Config, cells: Iterable[Cell], kind: PackedKind
) -> list[tuple[float, float]]:
    """(generation, idle) seconds each cell adds to a packed job of ``kind``."""
    if kind == "judge-pass":
        idle = judge_overhead_seconds(config)
        return [(judge_seconds(plan, config, cell), idle) for cell in cells]
    idle = overhead_seconds(config) + cooldown_seconds(config)
    return [(generation_seconds(plan, config, cell), idle) for cell in cells]


def _packed(
    plan: Plan,
    config: Config,
    model: str,
    costs: Sequence[tuple[float, float]],
    kind: PackedKind,
) -> Estimate:
    return _packed_sums(config, load_seconds(plan, config, model), costs, kind)


def _packed_sums(
    config: Config, load_s: float, costs: Sequence[tuple[float, float]], kind: PackedKind
) -> Estimate:
    reference_idle = config.per_model.reference_idle_s if kind == "model" else 0.0
    gen, idle = sum(c[0] for c in costs), sum(c[1] for c in costs)
    return _padded(config, kind, load_s, reference_idle, gen, idle)


def runtime_minutes(
    plan: Plan, config: Config, kind: JobKind, job_id: str, attempt: int = 1
) -> int:
    """The time limit a job asks for on its ``attempt``-th try, in whole minutes."""
    planner = config.planner
    seconds = estimate(plan, config, kind, job_id).total_s * planner.runtime_margin
    minutes = max(planner.min_runtime_min, math.ceil(seconds / 60))
    return int(min(config.cluster.time_limit_min, minutes * max(1, attempt)))


# --- packing, for the preview ------------------------------------------------------------------


def job_budget_s(config: Config) -> float:
    """The planned seconds a packed job may hold: its time limit (``per_model.max_job_min``,
    else the cluster's ``time_limit_min``) divided by ``planner.runtime_margin``."""
    minutes = config.per_model.max_job_min or config.cluster.time_limit_min
    return minutes * 60 / config.planner.runtime_margin


def run_order(cells: Iterable[Cell]) -> list[Cell]:
    """The order a packed job runs its cells: benchmark, temperature, max_connections."""
    return sorted(cells, key=lambda c: (c.benchmark, c.temperature, c.max_connections, c.id))


def pack_chunks(
    plan: Plan, config: Config, model: str, cells: Sequence[Cell], kind: PackedKind
) -> list[tuple[list[Cell], Estimate]]:
    """``cells`` (in run order) split into consecutive jobs whose estimate fits the budget, each
    with its estimate; a cell that alone exceeds it is a job of its own (the rule of
    ``evalwatt.jobs.packs``). Each cell's seconds are worked out once."""
    ordered = run_order(cells)
    costs = _cell_costs(plan, config, ordered, kind)
    budget, chunks = job_budget_s(config), []
    load_s = load_seconds(plan, config, model)  # once: a judge pass may hold hundreds of cells
    start, (gen_s, idle_s) = 0, costs[0] if costs else (0.0, 0.0)
    for end in range(1, len(ordered)):
        gen_s, idle_s = gen_s + costs[end][0], idle_s + costs[end][1]
        if _packed_sums(config, load_s, [(gen_s, idle_s)], kind).total_s > budget:
            chunks.append((start, end))
            start, (gen_s, idle_s) = end, costs[end]
    chunks.append((start, len(ordered)))
    return [
        (ordered[a:b], _packed_sums(config, load_s, costs[a:b], kind)) for a, b in chunks if b > a
    ]


# --- the preview -------------------------------------------------------------------------------


class _Hours:
    """GPU-hours and wall hours by phase, summed over jobs."""

    def __init__(self) -> None:
        self.gpu = dict.fromkeys(PhaseHours.model_fields, 0.0)
        self.wall = dict.fromkeys(PhaseHours.model_fields, 0.0)

    def add(self, gpus: int, phases: dict[str, float]) -> None:
        for phase, seconds in phases.items():
            self.gpu[phase] += gpus * seconds / 3600
            self.wall[phase] += seconds / 3600

    def add_job(self, gpus: int, est: Estimate) -> None:
        self.add(
            gpus,
            {
                "loading": est.load_s,
                "reference_idle": est.reference_idle_s,
                "generation": est.generation_s,
                "idle": est.idle_s,
                "padding": est.pad_s,
            },
        )

    def add_judge_pass(self, gpus: int, est: Estimate) -> None:
        other = est.load_s + est.idle_s + est.pad_s
        self.add(gpus, {"judging_generation": est.generation_s, "judging_other": other})


def _gpus(plan: Plan, model: str) -> int:
    return max(plan.models[model].gpus, 0)


PackGroup = tuple[str, str, list[Cell]]
"""(group, served model, cells) of packed jobs: the group names them (a model job's baseline
id, a judge pass's judge), the cells are split by time into jobs (``pack_chunks``)."""


def model_job_groups(plan: Plan, cells: Iterable[Cell]) -> list[PackGroup]:
    """The cells that model jobs may serve together: those of one model under one set of server
    settings (its baseline id), and, where the backend's server keeps the sampling settings of
    its first request (``SAMPLING_AT_FIRST_REQUEST``), of one sampling setting too: a model job
    of cells at temperatures 0 and 0.7 would sample them all at the first one's. In the order
    the cells come; the preview and the jobs group by this one rule."""
    groups: dict[tuple[str, str, tuple[float, float | None] | None], list[Cell]] = {}
    for cell in cells:
        keeps_first = plan.models[cell.model].backend in SAMPLING_AT_FIRST_REQUEST
        key = (cell.baseline, cell.model, cell.sampling_key if keeps_first else None)
        groups.setdefault(key, []).append(cell)
    return [(baseline, model, group) for (baseline, model, _), group in groups.items()]


def judge_pass_groups(config: Config, cells: Iterable[Cell]) -> list[PackGroup]:
    """The judged cells of each judge (one judge pass, split by time), in the order they
    come; a judge's sampling is its own, the same for every cell it scores."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.judge is not None:
            groups.setdefault(cell.judge, []).append(cell)
    return [(judge, config.judges[judge].model, group) for judge, group in groups.items()]


def _add_packs(
    plan: Plan,
    config: Config,
    hours: _Hours,
    groups: Iterable[PackGroup],
    kind: PackedKind,
) -> int:
    """Add the packed jobs of each group; return their count."""
    jobs = 0
    for _, model, cells in groups:
        for _, est in pack_chunks(plan, config, model, cells, kind):
            if kind == "judge-pass":
                hours.add_judge_pass(_gpus(plan, model), est)
            else:
                hours.add_job(_gpus(plan, model), est)
            jobs += 1
    return jobs


def _judge_passes(plan: Plan, config: Config, hours: _Hours) -> int:
    """Add every judge pass of the run (the same in both modes); return their count."""
    groups = judge_pass_groups(config, plan.cells.values())
    return _add_packs(plan, config, hours, groups, "judge-pass")


def _mode(
    execution: Literal["per-cell", "per-model"], hours: _Hours, jobs: JobCounts
) -> ModePreview:
    gpu, wall = PhaseHours(**hours.gpu), PhaseHours(**hours.wall)
    share = gpu.outside_generation / gpu.total if gpu.total > 0 else None
    return ModePreview(
        execution=execution,
        jobs=jobs,
        gpu_hours=gpu,
        job_hours=wall,
        gpu_hours_total=gpu.total,
        overhead_share=share,
    )


def per_cell_preview(plan: Plan, config: Config) -> ModePreview:
    """One job per cell, one load-only baseline per server settings, the judge passes."""
    hours = _Hours()
    for cell in plan.cells.values():
        hours.add_job(_gpus(plan, cell.model), estimate(plan, config, "cell", cell.id))
    for base in plan.baselines.values():
        hours.add_job(_gpus(plan, base.model), estimate(plan, config, "baseline", base.id))
    passes = _judge_passes(plan, config, hours)
    jobs = JobCounts(cell=len(plan.cells), baseline=len(plan.baselines), model=0, judge_pass=passes)
    return _mode("per-cell", hours, jobs)


def per_model_preview(plan: Plan, config: Config) -> ModePreview:
    """One job per (model, server settings) and time chunk (per sampling setting too where
    the server keeps its first request's: ``model_job_groups``), the judge passes."""
    hours = _Hours()
    groups = model_job_groups(plan, plan.cells.values())
    model_jobs = _add_packs(plan, config, hours, groups, "model")
    passes = _judge_passes(plan, config, hours)
    jobs = JobCounts(cell=0, baseline=0, model=model_jobs, judge_pass=passes)
    return _mode("per-model", hours, jobs)


def _rates(plan: Plan, config: Config) -> tuple[ModelRate, ...]:
    """The tokens per second each served model gets, at the connections it is used with."""
    connections: dict[str, set[int]] = {}
    for cell in plan.cells.values():
        connections.setdefault(cell.model, set()).add(cell.max_connections)
        if cell.judge:
            judge = config.judges[cell.judge]
            connections.setdefault(judge.model, set()).add(judge.max_connections)
    out = []
    for model, conns in connections.items():
        rates = rates_of(plan, config, model)
        per_c = {}
        for c in sorted(conns):
            tokens = rates.measured_tokens_per_s(c) or rates.decode_tokens_per_s(c)
            if tokens is not None:
                per_c[str(c)] = tokens
        load = load_seconds(plan, config, model)
        out.append(
            ModelRate(model=model, source=rates.note, decode_tokens_per_s=per_c, load_s=load)
        )
    return tuple(out)


def cost_preview(plan: Plan, config: Config) -> CostPreview:
    """What the run costs in both execution modes, by phase, from the same estimates that set
    each job's time limit; not measurements. Unrounded: printing rounds."""
    planner, window_s = config.planner, config.cluster.accounting_window_s
    return CostPreview(
        execution=config.execution,
        cells=len(plan.cells),
        judged_cells=sum(1 for c in plan.cells.values() if c.judge),
        modes=(per_cell_preview(plan, config), per_model_preview(plan, config)),
        rates=_rates(plan, config),
        assumptions=CostAssumptions(
            server_start_s=planner.server_start_s,
            load_gb_per_s=planner.load_gb_per_s,
            accounting_window_s=window_s,
            pad_margin_s=config.cluster.pad_margin_s if window_s > 0 else 0.0,
            inspect_overhead_s=overhead_seconds(config),
            judge_overhead_s=judge_overhead_seconds(config),
            job_overhead_s={kind: job_overhead_seconds(config, kind) for kind in RUN_KINDS},
            throughput_table=planner.throughput_table or "config/throughput.yaml",
            calibration=planner.calibration,
        ),
    )
