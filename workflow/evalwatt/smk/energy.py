"""The energy rules (workflow/rules/energy.smk): the cluster's accounting of each job,
collected on the login node once it ended, and each cell's energy record."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalwatt.base.layout import Layout
from evalwatt.base.vocabulary import JobKind
from evalwatt.config.load import Config
from evalwatt.contracts.contract import write_contract
from evalwatt.energy.cluster.collect import collect_job, summary
from evalwatt.energy.cluster.settings import Settings
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.matrix import Plan
from evalwatt.smk.common import job_files, rule_log
from evalwatt.table.cells import build_record


def energy_inputs(config: Config, run: RunJobs, cell_id: str) -> dict[str, str]:
    """The results a cell's energy comes from, and each job's accounting when cluster sources
    are configured. Per-cell execution: its cell job, its baseline, its judgement. Per-model:
    its result (or the model job that writes it; the model job's reference idle is the
    baseline), its judgement (or the judge pass that writes it)."""
    plan, layout = run.plan, run.layout
    if cell_id not in plan.cells:
        raise ValueError(f"cell_energy: no cell {cell_id!r} in the plan")
    cell = plan.cells[cell_id]
    inputs = {"cell": str(run.cell_input(cell_id))}
    jobs: list[tuple[JobKind, str]] = []
    if run.per_model:
        jobs += [packed] if (packed := run.packed_in("cell", cell_id)) else []
    else:
        inputs["baseline"] = str(run.result("baseline", cell.baseline))
        jobs += [("cell", cell_id), ("baseline", cell.baseline)]
    if cell.judge:
        inputs["judge"] = str(run.judged_input(cell_id))
        jobs += [judged] if (judged := run.packed_in("judge", cell_id)) else []
    for kind, job_id in jobs:  # the cluster's accounting, collected on the login node
        for source in config.accounting.sources:
            inputs[f"{kind}_{source}"] = str(layout.job_files(kind, job_id).accounting(source))
    return inputs


def collects_accounting(config: Config) -> bool:
    """Whether any cluster source is configured (the collection rule exists only then)."""
    return bool(config.accounting.sources)


def accounting_files(config: Config, layout: Layout, rule: str) -> dict[str, str]:
    """A collection rule's outputs, one raw file per source, as ``{kind}``/``{job}`` patterns
    of the jobs of the run rule ``rule``."""
    files = job_files(layout, rule)
    return {
        source.replace("-", "_"): str(files.accounting(source))
        for source in config.accounting.sources
    }


def collect_accounting(config: Config, result: str, outputs: Any, log: Sequence[str]) -> None:
    """Collect every cluster source's record of one finished job (on the login node). A
    source that gave no answer is written with its reason and reported as ERROR in the log
    and on stderr; the energy step and the audit carry it as a null."""
    with rule_log(log[0], outputs) as out:
        lines = summary(collect_job(Settings.of(config), Path(result).parent))
        for line in lines:
            out.write(line + "\n")
            if line.startswith("ERROR"):
                print(f"evalwatt collect_accounting {result}: {line}", file=sys.stderr)


def write_record(
    config: Config, plan: Plan, layout: Layout, wildcards: Any, output: Any, log: Sequence[str]
) -> None:
    with rule_log(log[0], output):
        write_contract(output[0], build_record(config, plan, layout, wildcards.cell))
