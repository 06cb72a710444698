"""What the Snakemake rules call: thin adapters from wildcards to the evalwatt package.

Rule files stay a table of contents; the logic lives in importable, tested modules. Every
fact about a job (its model, resources, environment, paths) comes from ``evalwatt.jobs.resolve``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from evalwatt.base.atomic import write_json, write_text
from evalwatt.base.layout import FINAL_BEST, FINAL_FORMATS, FINAL_TABLE, JobFiles, Layout
from evalwatt.base.vocabulary import JobKind
from evalwatt.config.load import Config, from_dict
from evalwatt.contracts.contract import read_contract, write_contract
from evalwatt.contracts.record import CellRecord
from evalwatt.energy.cluster.collect import collect_job, summary
from evalwatt.energy.cluster.common import Settings
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import Job, Scheduler, planned_jobs, resolve_job
from evalwatt.plan.estimate import cost_preview
from evalwatt.plan.matrix import Plan, plan_run
from evalwatt.report.audit import write_audit
from evalwatt.report.figures.report import (
    draw_report_figures,
    write_markdown_pages,
    write_plan_page,
)
from evalwatt.report.figures.report import figure_specs as specs
from evalwatt.table.cells import build_record
from evalwatt.table.final import best_view, read_table, to_table, write_table

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def load(config: Mapping[str, Any], configfiles: Iterable[str | Path]) -> Config:
    """Validate Snakemake's config; a model sheet is read relative to the last config file."""
    files = [Path(f) for f in configfiles]
    base = files[-1].parent if files else Path("config")
    origin = str(files[-1]) if files else "config"
    return from_dict(config, base, origin=origin)


def plan(config: Config) -> Plan:
    return plan_run(config)


def layout(config: Config) -> Layout:
    return Layout.of(config.results_dir, config.run)


@contextmanager
def rule_log(path: str | Path, outputs: Iterable[str] = ()) -> Iterator[TextIO]:
    """Write a ``run:`` rule's declared log: when it ran, what it wrote, or its traceback.

    Snakemake runs ``run:`` bodies inside its own process, where redirecting stdout would
    catch other rules' output too; the log says what this rule did instead (the body may
    add lines to the log it is given).
    """
    started = time.time()
    with open(path, "w", encoding="utf-8") as log:
        log.write(f"started {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        try:
            yield log
        except BaseException:
            log.write(traceback.format_exc())
            raise
        for out in outputs:
            log.write(f"wrote {out} ({Path(out).stat().st_size} bytes)\n")
        log.write(f"done in {time.time() - started:.2f} s\n")


def final_files(layout: Layout) -> dict[str, str]:
    files = {
        f"{name}_{fmt}": str(layout.final(name, fmt))
        for name in (FINAL_TABLE, FINAL_BEST)
        for fmt in FINAL_FORMATS
    }
    files["audit"] = str(layout.audit("md"))
    files["audit_table"] = str(layout.audit("parquet"))
    return files


def final_outputs(layout: Layout, plan: Plan) -> list[str]:
    """Everything a run must have, each job's result included: Snakemake does not rerun a job
    whose output was deleted while what it feeds is still there, unless it is a target."""
    results = [str(layout.run_result(kind, job_id)) for kind, job_id in planned_jobs(plan)]
    energy = [str(layout.cell_energy(c)) for c in plan.cells]
    return [str(layout.plan()), *results, *energy, *final_files(layout).values()]


def write_plan(config: Config, plan: Plan, output: Sequence[str], log: Sequence[str]) -> None:
    with rule_log(log[0], output):
        cost = cost_preview(plan, config)
        write_json(output[0], {"run": config.run, **plan.to_json(), "cost": cost})


# --- jobs -------------------------------------------------------------------------------------


def job(config: Config, plan: Plan, layout: Layout, wildcards: Any) -> Job:
    """The job of a rule's ``{kind}`` and ``{job}`` wildcards."""
    return resolve_job(config, plan, layout, wildcards.kind, wildcards.job)


def job_inputs(plan: Plan, layout: Layout, wildcards: Any) -> dict[str, str]:
    """A job's script; a judge job also needs its cell's answers."""
    inputs = {"script": str(layout.job_script(wildcards.kind, wildcards.job))}
    if wildcards.kind == "judge":
        inputs["cell"] = str(layout.run_result("cell", wildcards.job))
    return inputs


def job_spec_text(config: Config, plan: Plan, layout: Layout, wildcards: Any) -> str:
    """The spec as JSON: a rule parameter, so that a changed spec re-renders the job."""
    return job(config, plan, layout, wildcards).spec.model_dump_json()


def write_job(
    config: Config, plan: Plan, layout: Layout, wildcards: Any, output: Any, log: Sequence[str]
) -> None:
    """Write a job's spec.json and job.sbatch (the rule's ``spec`` and ``script`` outputs)."""
    with rule_log(log[0], output):
        j = job(config, plan, layout, wildcards)
        write_contract(output.spec, j.spec)
        write_text(output.script, render_script(j))
        Path(output.script).chmod(0o755)


def job_resources(config: Config, plan: Plan, layout: Layout) -> dict[str, Any]:
    """Snakemake resources of the job rule; the Slurm executor turns them into sbatch flags."""
    return {
        "gpu": lambda w: job(config, plan, layout, w).resources.gpus,
        "cpus_per_task": lambda w: job(config, plan, layout, w).resources.cpus,
        # the estimate x margin, growing with each retry (a TIMEOUT comes back with more time)
        "runtime": lambda w, attempt: job(config, plan, layout, w).resources.runtime_minutes(
            attempt
        ),
        **Scheduler.of(config).slurm_executor_resources(),
    }


def job_cpus(config: Config, plan: Plan, layout: Layout, wildcards: Any) -> int:
    return job(config, plan, layout, wildcards).resources.cpus


def job_conda_env(config: Config, plan: Plan, layout: Layout, wildcards: Any) -> str:
    """The pinned environment of a job's backend (with --software-deployment-method conda)."""
    return str(job(config, plan, layout, wildcards).conda_env)


# --- energy and the final table ---------------------------------------------------------------


def energy_inputs(config: Config, plan: Plan, layout: Layout, cell_id: str) -> dict[str, str]:
    """The results a cell's energy comes from: its own, its baseline's, its judge job's."""
    cell = resolve_job(config, plan, layout, "cell", cell_id)
    inputs = {
        "cell": str(cell.files.result),
        "baseline": str(layout.run_result("baseline", cell.baseline_id)),
    }
    if cell.judged:
        inputs["judge"] = str(layout.run_result("judge", cell_id))
    jobs: list[tuple[JobKind, str]] = [("cell", cell_id), ("baseline", cell.baseline_id)]
    jobs += [("judge", cell_id)] if cell.judged else []
    for kind, job_id in jobs:  # the cluster's accounting, collected on the login node
        for source in config.raw["accounting"]["sources"]:
            inputs[f"{kind}_{source}"] = str(layout.job_files(kind, job_id).accounting(source))
    return inputs


# --- the cluster's accounting -----------------------------------------------------------------


def collects_accounting(config: Config) -> bool:
    """Whether any cluster source is configured (the collection rule exists only then)."""
    return bool(config.raw["accounting"]["sources"])


def accounting_files(config: Config, layout: Layout) -> dict[str, str]:
    """The collection rule's outputs, one raw file per source, as ``{kind}``/``{job}``
    patterns."""
    files = JobFiles(layout.root / "{kind}s" / "{job}")
    return {
        source.replace("-", "_"): str(files.accounting(source))
        for source in config.raw["accounting"]["sources"]
    }


def collect_accounting(config: Config, result: str, outputs: Any, log: Sequence[str]) -> None:
    """Collect every cluster source's record of one finished job (on the login node). A
    source that gave no answer is written with its reason and reported as ERROR in the log
    and on stderr; the energy step and the audit carry it as a null."""
    import sys

    with rule_log(log[0], outputs) as out:
        lines = summary(collect_job(Settings.of(config.raw), Path(result).parent))
        for line in lines:
            out.write(line + "\n")
            if line.startswith("ERROR"):
                print(f"evalwatt collect_accounting {result}: {line}", file=sys.stderr)


def write_record(
    config: Config, plan: Plan, layout: Layout, wildcards: Any, output: Any, log: Sequence[str]
) -> None:
    with rule_log(log[0], output):
        write_contract(output[0], build_record(config, plan, layout, wildcards.cell))


def write_final(config: Config, records: Iterable[str], outputs: Any, log: Sequence[str]) -> None:
    with rule_log(log[0], outputs):
        _write_final(config, records, outputs)


def _write_final(config: Config, records: Iterable[str], outputs: Any) -> None:
    loaded = [read_contract(CellRecord, p) for p in records]
    table = to_table([r.row for r in loaded])
    write_table(
        table,
        Path(outputs.energy_table_parquet),
        Path(outputs.energy_table_csv),
        Path(outputs.energy_table_md),
        f"evalwatt run {config.run}: energy per cell",
    )
    write_table(
        best_view(table),
        Path(outputs.energy_table_best_parquet),
        Path(outputs.energy_table_best_csv),
        Path(outputs.energy_table_best_md),
        f"evalwatt run {config.run}: fastest max_connections per setting",
    )
    write_audit(config, loaded, outputs.audit_table, outputs.audit)


# --- the figures and the report's pages ---------------------------------------------------------

REPORT_CAPTIONS = "../report"
"""The captions' folder (workflow/report/), relative to the rule files (workflow/rules/):
Snakemake resolves a ``report(caption=...)`` from the file of the rule that declares it."""
REPORT_TABLES = "Tables: results, plan, audit"


def report_jobs(plan: Plan) -> list[tuple[JobKind, str]]:
    """The jobs whose power timeline the report draws: the plan's first cell and its baseline."""
    first = next(iter(plan.cells.values()))
    return [("cell", first.id), ("baseline", first.baseline)]


def figure_specs(plan: Plan) -> list[Any]:
    """Every figure of the run (evalwatt.report.figures.report.FigureSpec), known from the plan."""
    return specs({c.benchmark for c in plan.cells.values()}, report_jobs(plan))


def figure_inputs(plan: Plan, layout: Layout) -> dict[str, str]:
    """The final table and the results of the jobs drawn (their traces are beside them)."""
    inputs = {"table": str(layout.final())}
    for kind, job_id in report_jobs(plan):
        inputs[kind] = str(layout.run_result(kind, job_id))
    return inputs


def figure_outputs(plan: Plan, layout: Layout, report: Any) -> dict[str, Any]:
    """The figures rule's outputs: one PNG per figure, flagged with Snakemake's ``report``
    (its caption, category, subcategory, label), and the index of the figures."""
    outputs: dict[str, Any] = {
        spec.name: report(
            str(layout.figure(spec.name)),
            caption=f"{REPORT_CAPTIONS}/{spec.caption}",
            category=spec.category,
            subcategory=spec.subcategory,
            labels={spec.label[0]: spec.label[1]},
        )
        for spec in figure_specs(plan)
    }
    outputs["index"] = str(layout.figure_index())
    return outputs


def write_figures(plan: Plan, layout: Layout, input: Any, output: Any, log: Sequence[str]) -> None:
    """Draw every figure (or its not-drawn card) to the paths the rule declared."""
    specs = figure_specs(plan)
    outputs = dict(output.items())
    job_dirs = {
        f"power_timeline__{kind}": Path(getattr(input, kind)).parent
        for kind, _ in report_jobs(plan)
    }
    with rule_log(log[0], output) as out:
        results = draw_report_figures(
            read_table(input.table),
            specs,
            {s.name: outputs[s.name] for s in specs},
            job_dirs,
            output.index,
        )
        for r in results:
            out.write(f"{r.name}: {'not drawn: ' + r.skipped if r.skipped else 'drawn'}\n")


def report_page_inputs(layout: Layout) -> dict[str, str]:
    return {
        "table": str(layout.final(FINAL_TABLE, "md")),
        "best": str(layout.final(FINAL_BEST, "md")),
        "plan": str(layout.plan()),
        "audit": str(layout.audit("md")),
    }


def report_page_outputs(layout: Layout, report: Any) -> dict[str, Any]:
    """The report's pages (HTML), each flagged with its caption under workflow/report/."""
    what = {
        "energy_table": "final table: every cell, then the fastest setting",
        "plan": "plan: GPUs per model, cells, GPU-hour preview",
        "audit": "audit summary: job by job, every energy source",
    }
    return {
        name: report(
            str(layout.report_page(name)),
            caption=f"{REPORT_CAPTIONS}/{name}.rst",
            category=REPORT_TABLES,
            subcategory="Run",
            labels={"page": what[name]},
        )
        for name in what
    }


def write_report_pages(config: Config, input: Any, output: Any, log: Sequence[str]) -> None:
    """The final table (both views), the plan with its cost preview and the audit, as HTML."""
    with rule_log(log[0], output):
        title = f"evalwatt run {config.run}"
        pages = [input.table, input.best]
        write_markdown_pages(output.energy_table, f"{title}: final table", pages)
        write_plan_page(input.plan, output.plan)
        write_markdown_pages(output.audit, f"{title}: audit", [input.audit])


def report_outputs(layout: Layout, plan: Plan) -> list[str]:
    """What the report shows, for ``rule all``: a normal run draws the figures and pages."""
    figures = [str(layout.figure(s.name)) for s in figure_specs(plan)]
    pages = [str(layout.report_page(name)) for name in ("energy_table", "plan", "audit")]
    return [*figures, str(layout.figure_index()), *pages]
