"""One job of a run, worked out once: everything the renderer, the Snakemake rules, the
runtime and the energy step need to know about it.

A job is a (kind, id): a *cell* (its id is the cell's), a load-only *baseline* (its id is the
server settings' id) or the *judge* job of a cell (the cell's id). ``resolve_job`` finds its
model, server settings and command, baseline, resources, interpreter and paths from the
config and the plan; nothing else works them out again.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
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
    EvaluationSpec,
    JobSpec,
    JudgingSpec,
    ModelSpec,
    SamplerSpec,
    ServerSettings,
    ServerSpec,
)
from evalwatt.plan.estimate import runtime_minutes
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
    """The cell of a cell or judge job."""

    @property
    def kind(self) -> JobKind:
        return self.spec.kind

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


def _model_of(config: Config, plan: Plan, kind: JobKind, job_id: str) -> tuple[str, Cell | None]:
    if kind not in JOB_KINDS:
        raise JobError(f"unknown job kind {kind!r}; known: {', '.join(JOB_KINDS)}")
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
    config: Config, plan: Plan, kind: JobKind, job_id: str, model: ModelEntry
) -> tuple[ServerSettings, str]:
    """The job's server settings and their baseline id, from the plan's baselines. A judge
    model with no cells of its own has no baseline in the plan: its settings are worked out
    by the planner's own functions."""
    if kind == "baseline":
        return plan.baselines[job_id].server, job_id
    if kind == "cell":
        base = plan.baselines[plan.cells[job_id].baseline]
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


def _judging(config: Config, layout: Layout, cell: Cell, judge: Judge) -> JudgingSpec:
    return JudgingSpec(
        cell_id=cell.id,
        cell_result=layout.run_result("cell", cell.id).resolve(),
        temperature=judge.temperature,
        max_connections=judge.max_connections,
        max_tokens=judge.max_tokens,
    )


def resolve_job(config: Config, plan: Plan, layout: Layout, kind: JobKind, job_id: str) -> Job:
    """Everything about one job; raises JobError for a (kind, id) not in the plan."""
    name, cell = _model_of(config, plan, kind, job_id)
    model = config.model(name)
    server, base_id = _server(config, plan, kind, job_id, model)
    judging = None
    if kind == "judge" and cell and cell.judge:
        judging = _judging(config, layout, cell, config.judges[cell.judge])
    job_cfg = config.job
    python = job_cfg.python or sys.executable
    engine = backend(model.backend)
    spec = JobSpec(
        kind=kind,
        job_id=job_id,
        run=config.run,
        run_dir=layout.run_dir(kind, job_id).resolve(),
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
        pad=config.cluster.pad(),
        sampler=SamplerSpec(
            interval_s=job_cfg.sample_interval_s,
            cpu_watts_per_core=job_cfg.cpu_watts_per_core,
        ),
        evaluation=_evaluation(config, cell) if kind == "cell" and cell else None,
        judging=judging,
    )
    mplan = plan.models[name]
    return Job(
        spec=spec,
        model=model,
        resources=Resources(
            gpus=mplan.gpus,
            cpus=mplan.cpus,
            scheduler=Scheduler.of(config),
            runtime_min=tuple(
                runtime_minutes(plan, config, kind, job_id, attempt) for attempt in (1, 2, 3, 4)
            ),
        ),
        python=python,
        env=tuple(sorted(job_cfg.env.items())),
        script=layout.job_script(kind, job_id),
        spec_path=layout.job_spec(kind, job_id),
        files=layout.job_files(kind, job_id),
        conda_env=REPO_DIR / engine.conda_env,
        cell=cell,
    )


def planned_jobs(plan: Plan) -> Iterator[tuple[JobKind, str]]:
    """Every job of the plan: baselines, then each cell and its judge job."""
    for base_id in plan.baselines:
        yield "baseline", base_id
    for cell in plan.cells.values():
        yield "cell", cell.id
        if cell.judge:
            yield "judge", cell.id
