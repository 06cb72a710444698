"""The job rules (workflow/rules/jobs.smk): render a job's spec.json and job.sbatch, and what
the rule that runs it asks of Snakemake (inputs, CPUs, resources, conda environment), each from
the job of the rule's ``{kind}`` and ``{job}`` wildcards (``evalwatt.jobs.resolve``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalwatt.base.atomic import write_text
from evalwatt.base.layout import Layout
from evalwatt.config.load import Config
from evalwatt.contracts.contract import write_contract
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import Job, Scheduler, resolve_job
from evalwatt.plan.matrix import Plan
from evalwatt.smk.common import rule_log


@dataclass
class RunJobs:
    """The run's jobs as the job rules see them, each resolved once.

    Snakemake asks the same job's params, threads, resources and conda environment several
    times while it builds and prints the DAG (seven calls per job in a dry run); resolving a
    job each time was most of evalwatt's cost in ``snakemake -n`` (benchmarks/plan_scale.py).
    CONFIG and PLAN do not change within a Snakemake run, so a job resolved once stays right.
    """

    config: Config
    plan: Plan
    layout: Layout
    _resolved: dict[tuple[str, str], Job] = field(default_factory=dict, repr=False)

    def job(self, wildcards: Any) -> Job:
        """The job of a rule's ``{kind}`` and ``{job}`` wildcards."""
        key = (wildcards.kind, wildcards.job)
        if key not in self._resolved:
            self._resolved[key] = resolve_job(
                self.config, self.plan, self.layout, wildcards.kind, wildcards.job
            )
        return self._resolved[key]

    def inputs(self, wildcards: Any) -> dict[str, str]:
        """A job's script; a judge job also needs its cell's answers."""
        inputs = {"script": str(self.layout.job_script(wildcards.kind, wildcards.job))}
        if wildcards.kind == "judge":
            inputs["cell"] = str(self.layout.run_result("cell", wildcards.job))
        return inputs

    def spec_text(self, wildcards: Any) -> str:
        """The spec as JSON: a rule parameter, so that a changed spec re-renders the job."""
        return self.job(wildcards).spec.model_dump_json()

    def cpus(self, wildcards: Any) -> int:
        return self.job(wildcards).resources.cpus

    def conda_env(self, wildcards: Any) -> str:
        """The pinned environment of a job's backend (with --software-deployment-method
        conda)."""
        return str(self.job(wildcards).conda_env)

    def resources(self) -> dict[str, Any]:
        """Snakemake resources of the job rule; the Slurm executor turns them into sbatch
        flags."""
        return {
            "gpu": lambda w: self.job(w).resources.gpus,
            "cpus_per_task": lambda w: self.job(w).resources.cpus,
            # the estimate x margin, growing with each retry (a TIMEOUT comes back with more time)
            "runtime": lambda w, attempt: self.job(w).resources.runtime_minutes(attempt),
            **Scheduler.of(self.config).slurm_executor_resources(),
        }

    def write(self, wildcards: Any, output: Any, log: Sequence[str]) -> None:
        """Write a job's spec.json and job.sbatch (the rule's ``spec`` and ``script``
        outputs)."""
        with rule_log(log[0], output):
            job = self.job(wildcards)
            write_contract(output.spec, job.spec)
            write_text(output.script, render_script(job))
            Path(output.script).chmod(0o755)
