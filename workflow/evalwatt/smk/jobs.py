"""The job rules (workflow/rules/jobs.smk): render a job's spec.json and job.sbatch, and what
the rule that runs it asks of Snakemake (inputs, CPUs, resources, conda environment), each from
the job of the rule's ``{kind}`` and ``{job}`` wildcards (``evalwatt.jobs.run``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalwatt.base.atomic import write_text
from evalwatt.base.layout import Layout
from evalwatt.contracts.contract import write_contract
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import Job, Scheduler
from evalwatt.jobs.run import RunJobs
from evalwatt.smk.common import rule_log


@dataclass
class JobRules:
    """The run's jobs (``evalwatt.jobs.run.RunJobs``) as the job rules see them: by the rule's
    ``{kind}`` and ``{job}`` wildcards, each job resolved once."""

    run: RunJobs

    @property
    def layout(self) -> Layout:
        return self.run.layout

    def job(self, wildcards: Any) -> Job:
        """The job of a rule's ``{kind}`` and ``{job}`` wildcards."""
        return self.run.job(wildcards.kind, wildcards.job)

    def inputs(self, wildcards: Any) -> dict[str, str | list[str]]:
        """A job's script; a judge pass also needs its cells' answers (each cell's result, or
        the job that writes it)."""
        job = self.job(wildcards)
        inputs: dict[str, str | list[str]] = {"script": str(job.script)}
        if wildcards.kind != "judge-pass":
            return inputs
        cells = job.pack.cells if job.pack is not None else ()
        return {**inputs, "cells": [str(self.run.cell_input(c)) for c in cells]}

    def spec_text(self, wildcards: Any) -> str:
        """The spec as JSON: a rule parameter, so that a changed spec re-renders the job."""
        return self.job(wildcards).spec_json

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
            **Scheduler.of(self.run.config).slurm_executor_resources(),
        }

    def write(self, wildcards: Any, output: Any, log: Sequence[str]) -> None:
        """Write a job's spec.json and job.sbatch (the rule's ``spec`` and ``script``
        outputs)."""
        with rule_log(log[0], output):
            job = self.job(wildcards)
            write_contract(output.spec, job.spec)
            write_text(output.script, render_script(job))
            Path(output.script).chmod(0o755)
