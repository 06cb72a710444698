"""One job of a run, worked out once: everything the renderer, the Snakemake rules, the
runtime and the energy step need to know about it.

A job is a (kind, id): a *cell* (its id is the cell's), a load-only *baseline* (its id is the
server settings' id), a per-model *model* job or a *judge-pass* (their id is their pack's,
``evalwatt.jobs.pack``: the cells they run are not in the id's text, so they are resolved from
their ``Pack``). ``judge`` is the per-cell result a judge pass writes: resolved as the pass of
that one cell, it gives the spec and folder of a cell's judgement. ``resolve_job`` finds a
job's model, server settings and command, resources, interpreter and paths from the config and
the plan; nothing else works them out again.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from evalwatt.base.errors import UserError
from evalwatt.base.layout import JobFiles, Layout
from evalwatt.base.paths import REPO_DIR
from evalwatt.base.vocabulary import JOB_KINDS, JobKind
from evalwatt.config.load import Config
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.run_config import Judge
from evalwatt.contracts.spec import (
    CooldownSpec,
    EvaluationSpec,
    JobSpec,
    JudgedCell,
    JudgingSpec,
    ModelSpec,
    PackedCell,
    PackSpec,
    SamplerSpec,
    ServerSettings,
    ServerSpec,
    WarmUpSpec,
)
from evalwatt.jobs.pack import PACK_KINDS, Pack
from evalwatt.plan.estimate import estimate
from evalwatt.plan.matrix import Cell, Plan, baseline_id, server_settings
from evalwatt.runtime.backends import backend

JOB_NAME_MAX = 120


class JobError(UserError):
    """A job that cannot be worked out: not in the plan, or its model cannot be found."""


@dataclass(frozen=True)
class Scheduler:
    """What the cluster's scheduler is asked for, the same for every job of a run."""

    time_limit_min: int
    mem_mb_per_cpu: int
    partition: str | None
    account: str | None
    qos: str | None
    constraint: str | None
    modules: tuple[str, ...]

    @classmethod
    def of(cls, config: Config) -> Scheduler:
        """The cluster section's settings of the same names."""
        names = {f.name for f in fields(cls)}
        return cls(**config.cluster.model_dump(include=names))

    def slurm_executor_resources(self) -> dict[str, Any]:
        """The Snakemake Slurm executor's names for these settings (set ones only). The time
        limit is per job (Resources.runtime_minutes); one node always: `--gpus=N` alone may
        spread N GPUs over several nodes."""
        out: dict[str, Any] = {"nodes": 1, "mem_mb_per_cpu": self.mem_mb_per_cpu}
        if self.partition:
            out["slurm_partition"] = self.partition
        if self.account:
            out["slurm_account"] = self.account
        # The plugin's own resources, which it passes shell-quoted (-C '...', --qos='...');
        # never slurm_extra, which it pastes unquoted into a command line run by /bin/sh.
        if self.qos:
            out["qos"] = self.qos
        if self.constraint:
            out["constraint"] = self.constraint
        return out


@dataclass(frozen=True)
class Resources:
    """What one job gets: GPUs of one node, CPUs, time, and the run's scheduler settings."""

    gpus: int
    cpus: int
    scheduler: Scheduler
    runtime_min: tuple[int, ...]
    """The time limit of attempts 1, 2, 3... (evalwatt.plan.estimate.runtime_minutes)."""

    def runtime_minutes(self, attempt: int = 1) -> int:
        """The time limit of the ``attempt``-th try: more on each retry, up to the cap."""
        return self.runtime_min[min(max(attempt, 1), len(self.runtime_min)) - 1]


@dataclass(frozen=True)
class Job:
    """One job, resolved: ask it rather than the config or the plan."""

    spec: JobSpec
    """What the runtime does: written as spec.json."""
    model: ModelEntry
    """The model's entry in the config (parameters, family, ...)."""
    resources: Resources
    python: str
    """The interpreter the job script runs the runtime with."""
    env: tuple[tuple[str, str], ...]
    """Variables the job script exports, sorted."""
    script: Path
    spec_path: Path
    files: JobFiles
    conda_env: Path
    cell: Cell | None
    """The cell of a cell job, or of a cell's judgement."""
    pack: Pack | None = None
    """The cells of a model job or a judge pass."""

    @property
    def kind(self) -> JobKind:
        # a cell's judge job runs as a judge pass of that one cell (spec kind judge-pass),
        # in judges/<cell>/, and writes that cell's judge result
        return "judge" if self.spec.kind == "judge-pass" and self.cell else self.spec.kind

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def model_name(self) -> str:
        return self.spec.model.name

    @property
    def baseline_id(self) -> str:
        return self.spec.server.baseline_id

    @property
    def judged(self) -> bool:
        """Whether the cell of this job is scored by a judge job."""
        return self.cell is not None and self.cell.judge is not None

    @property
    def scheduler_name(self) -> str:
        return f"ew-{self.kind}-{self.job_id}"[:JOB_NAME_MAX]

    @cached_property
    def spec_json(self) -> str:
        """The spec as JSON (the render rule's parameter), dumped once: Snakemake asks a
        job's parameters more than once, and a judge pass's spec lists hundreds of cells."""
        return self.spec.model_dump_json()


def _model_of(
    config: Config, plan: Plan, kind: JobKind, job_id: str, pack: Pack | None
) -> tuple[str, Cell | None]:
    if kind not in JOB_KINDS:
        raise JobError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
    if kind in PACK_KINDS:
        if pack is None or pack.kind != kind or pack.id != job_id:
            raise JobError(
                f"no {kind} job {job_id!r} in this run: its cells come from its pack "
                "(evalwatt.jobs.run.RunJobs), and none has that id"
            )
        return pack.model, None
    if kind == "baseline":
        if job_id not in plan.baselines:
            raise JobError(f"no baseline {job_id!r} in the plan")
        return plan.baselines[job_id].model, None
    if job_id not in plan.cells:
        raise JobError(f"no cell {job_id!r} in the plan")
    cell = plan.cells[job_id]
    if kind == "cell":
        return cell.model, cell
    if not cell.judge:
        raise JobError(f"cell {job_id} has no judge job: its benchmark is not judged")
    return config.judges[cell.judge].model, cell


def _server(
    config: Config, plan: Plan, kind: JobKind, job_id: str, model: ModelEntry, pack: Pack | None
) -> tuple[ServerSettings, str]:
    """The job's server settings and their baseline id, from the plan's baselines. A judge
    model with no cells of its own has no baseline in the plan: its settings are worked out
    by the planner's own functions."""
    if kind == "baseline":
        return plan.baselines[job_id].server, job_id
    if kind in ("cell", "model"):
        base = plan.baselines[pack.group if pack else plan.cells[job_id].baseline]
        return base.server, base.id
    for base in plan.baselines.values():
        if base.model == model.name:
            return base.server, base.id
    settings = server_settings(model, plan.models[model.name], config)
    return settings, baseline_id(model, settings)


def _evaluation(config: Config, cell: Cell) -> EvaluationSpec:
    bench = config.benchmarks[cell.benchmark]
    return EvaluationSpec(
        benchmark=cell.benchmark,
        task=bench.task,
        task_args=bench.task_args,
        limit=bench.limit,
        max_connections=cell.max_connections,
        temperature=cell.temperature,
        top_p=cell.sampling.top_p,
        top_k=cell.sampling.top_k,
        max_tokens=cell.sampling.max_tokens,
        score_in_job=not cell.judge,
    )


def _judging(absolute: Layout, cell_ids: tuple[str, ...], judge: Judge) -> JudgingSpec:
    """A judge pass: each cell's result scored, its judgement in the cell's judged folder
    (``absolute``: the run's layout from its resolved root, as specs hold absolute paths)."""
    judged = tuple(
        JudgedCell(
            cell_id=c,
            cell_result=absolute.run_result("cell", c),
            run_dir=absolute.run_dir("judge", c),
        )
        for c in cell_ids
    )
    return JudgingSpec(
        temperature=judge.temperature,
        max_connections=judge.max_connections,
        max_tokens=judge.max_tokens,
        cells=judged,
    )


def _packing(config: Config, plan: Plan, absolute: Layout, pack: Pack) -> PackSpec:
    """A model job: its cells in the pack's order, each in its own folder."""
    settings = config.per_model
    return PackSpec(
        reference_idle_s=settings.reference_idle_s,
        cooldown=CooldownSpec(max_s=settings.cooldown_max_s, margin_w=settings.cooldown_margin_w),
        cells=tuple(
            PackedCell(
                cell_id=c,
                run_dir=absolute.run_dir("cell", c),
                evaluation=_evaluation(config, plan.cells[c]),
            )
            for c in pack.cells
        ),
    )


def _work(
    config: Config,
    plan: Plan,
    absolute: Layout,
    kind: JobKind,
    cell: Cell | None,
    pack: Pack | None,
) -> dict[str, Any]:
    """The spec's part that says what the job runs: a cell's evaluation, a model job's cells,
    or the cells a judge pass scores (one cell: a cell's judgement)."""
    if kind == "cell" and cell:
        return {"evaluation": _evaluation(config, cell)}
    if kind == "model" and pack:
        return {"pack": _packing(config, plan, absolute, pack)}
    if kind == "judge" and cell and cell.judge:
        return {"judging": _judging(absolute, (cell.id,), config.judges[cell.judge])}
    if kind == "judge-pass" and pack:
        return {"judging": _judging(absolute, pack.cells, config.judges[pack.group])}
    return {}


def _warm_up(config: Config, judging: JudgingSpec | None, warms_itself: bool) -> WarmUpSpec | None:
    """The warm-up wave of a job whose server does not warm itself: as many requests as the
    most its jobs send at once (a judge's ``max_connections``; a model's largest swept one,
    the same for the baseline, each cell and the model job of a configuration, so that they
    start their work in the same server state); None where the server warms itself or
    ``job.warm_up_wave`` is off."""
    job = config.job
    if warms_itself or not job.warm_up_wave:
        return None
    return WarmUpSpec(
        requests=judging.max_connections if judging else max(config.sweeps.max_connections),
        prompt_words=job.warm_up_prompt_words,
        max_tokens=job.warm_up_max_tokens,
    )


def limit_minutes(config: Config, seconds: float, attempt: int = 1) -> int:
    """The time limit of a job's ``attempt``-th try, from its estimated ``seconds`` (a packed
    job: the whole job's, one load and all its cells, ``Pack.estimate_s``): times
    ``planner.runtime_margin``, at least ``min_runtime_min``, times the attempt number, at
    most the cluster's ``time_limit_min`` (``evalwatt.plan.estimate.runtime_minutes``'s rule,
    with the estimate worked out once for the four attempts)."""
    planner = config.planner
    minutes = max(planner.min_runtime_min, math.ceil(seconds * planner.runtime_margin / 60))
    return int(min(config.cluster.time_limit_min, minutes * max(1, attempt)))


def _runtime_min(
    config: Config, plan: Plan, kind: JobKind, job_id: str, pack: Pack | None
) -> tuple[int, ...]:
    """The time limits of attempts 1 to 4, from one estimate of the job."""
    seconds = pack.estimate_s if pack is not None else estimate(plan, config, kind, job_id).total_s
    return tuple(limit_minutes(config, seconds, attempt) for attempt in (1, 2, 3, 4))


@cache
def _resolved(root: Path) -> Path:
    """A run's folder, absolute (the paths of a spec are): resolved once per process, since
    each ``Path.resolve`` costs a stat per component and a run resolves thousands of jobs."""
    return root.resolve()


def resolve_job(
    config: Config,
    plan: Plan,
    layout: Layout,
    kind: JobKind,
    job_id: str,
    pack: Pack | None = None,
) -> Job:
    """Everything about one job; raises JobError for a (kind, id) not in the plan. A model
    job or a judge pass needs its ``pack`` (``evalwatt.jobs.run.RunJobs`` finds it)."""
    name, cell = _model_of(config, plan, kind, job_id, pack)
    model = config.model(name)
    server, base_id = _server(config, plan, kind, job_id, model, pack)
    absolute = Layout(_resolved(layout.root))
    job_cfg = config.job
    python = job_cfg.python or sys.executable
    engine = backend(model.backend)
    work = _work(config, plan, absolute, kind, cell, pack)
    spec = JobSpec(
        kind="judge-pass" if kind == "judge" else kind,
        job_id=job_id,
        run=config.run,
        run_dir=absolute.run_dir(kind, job_id),
        model=ModelSpec(
            name=name,
            served_name=name,
            backend=model.backend,
            path=config.weights(model),
            hf_id=model.hf_id,
        ),
        server=ServerSpec(
            argv=tuple(engine.server_argv(name, server, python)),
            settings=server,
            baseline_id=base_id,
        ),
        ready_timeout_s=job_cfg.ready_timeout_s,
        warm_up=_warm_up(config, work.get("judging"), engine.warms_itself),
        pad=config.cluster.pad(),
        sampler=SamplerSpec(
            interval_s=job_cfg.sample_interval_s,
            cpu_watts_per_core=job_cfg.cpu_watts_per_core,
        ),
        **work,
    )
    mplan = plan.models[name]
    return Job(
        spec=spec,
        model=model,
        resources=Resources(
            gpus=mplan.gpus,
            cpus=mplan.cpus,
            scheduler=Scheduler.of(config),
            runtime_min=_runtime_min(config, plan, kind, job_id, pack),
        ),
        python=python,
        env=tuple(sorted(job_cfg.env.items())),
        script=layout.job_script(kind, job_id),
        spec_path=layout.job_spec(kind, job_id),
        files=layout.job_files(kind, job_id),
        conda_env=REPO_DIR / engine.conda_env,
        cell=cell,
        pack=pack,
    )
