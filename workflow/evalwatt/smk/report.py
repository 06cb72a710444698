"""The report rules (workflow/rules/report.smk): the figures from the final table and the
power timelines of one cell and its baseline, and the report's pages (final table, plan, audit),
each flagged for ``snakemake --report`` with its caption under workflow/report/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalwatt.base.layout import FINAL_BEST, FINAL_TABLE, REPORT_PAGES, JobFiles, Layout
from evalwatt.base.vocabulary import JobKind
from evalwatt.config.load import Config
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.jobs.run import RunJobs
from evalwatt.plan.matrix import Plan
from evalwatt.report.figure_specs import FigureSpec
from evalwatt.report.figure_specs import figure_specs as specs
from evalwatt.smk.common import rule_log
from evalwatt.table.final import read_table

REPORT_CAPTIONS = "../report"
"""The captions' folder (workflow/report/), relative to the rule files (workflow/rules/):
Snakemake resolves a ``report(caption=...)`` from the file of the rule that declares it."""
REPORT_TABLES = "Tables: results, plan, audit"
PAGE_LABELS = {
    "energy_table": "final table: every cell, then the fastest setting",
    "plan": "plan: GPUs per model, cells, GPU-hour preview",
    "audit": "audit summary: job by job, every energy source",
    "preview_check": "preview check: the GPU-hour preview against the run",
}
"""Each report page and what its label says."""


def report_jobs(plan: Plan, per_model: bool = False) -> list[tuple[JobKind, str]]:
    """The jobs whose power timeline the report draws: the plan's first cell and its baseline
    (per-model execution: the model job of the first cell, whose reference idle is its
    baseline)."""
    first = next(iter(plan.cells.values()))
    return [("cell", first.id)] if per_model else [("cell", first.id), ("baseline", first.baseline)]


def figure_specs(plan: Plan, per_model: bool = False) -> list[FigureSpec]:
    """Every figure of the run, known from the plan."""
    return specs({c.benchmark for c in plan.cells.values()}, report_jobs(plan, per_model))


def figure_inputs(run: RunJobs) -> dict[str, str]:
    """The final table and the results of the jobs drawn (their traces are beside them, or in
    the model job's folder that a packed cell's result names)."""
    inputs = {"table": str(run.layout.final())}
    for kind, job_id in report_jobs(run.plan, run.per_model):
        inputs[kind] = str(run.cell_input(job_id) if kind == "cell" else run.result(kind, job_id))
    return inputs


def figure_outputs(run: RunJobs, report: Any) -> dict[str, Any]:
    """The figures rule's outputs: one PNG per figure, flagged with Snakemake's ``report``
    (its caption, category, subcategory, label), and the index of the figures."""
    layout = run.layout
    outputs: dict[str, Any] = {
        spec.name: report(
            str(layout.figure(spec.name)),
            caption=f"{REPORT_CAPTIONS}/{spec.caption}",
            category=spec.category,
            subcategory=spec.subcategory,
            labels={spec.label[0]: spec.label[1]},
        )
        for spec in figure_specs(run.plan, run.per_model)
    }
    outputs["index"] = str(layout.figure_index())
    return outputs


def write_figures(run: RunJobs, input: Any, output: Any, log: Sequence[str]) -> None:
    """Draw every figure (or its not-drawn card) to the paths the rule declared. matplotlib
    is imported here, by the rule that draws, never while Snakemake builds the DAG."""
    from evalwatt.report.figures.report import draw_report_figures

    all_specs = figure_specs(run.plan, run.per_model)
    outputs = dict(output.items())
    job_dirs = {
        f"power_timeline__{kind}": traces_of(Path(getattr(input, kind)))
        for kind, _ in report_jobs(run.plan, run.per_model)
    }
    with rule_log(log[0], output) as out:
        results = draw_report_figures(
            read_table(input.table),
            all_specs,
            {s.name: outputs[s.name] for s in all_specs},
            job_dirs,
            output.index,
        )
        for r in results:
            out.write(f"{r.name}: {'not drawn: ' + r.skipped if r.skipped else 'drawn'}\n")


def traces_of(result: Path) -> Path:
    """The folder that holds a job's traces: its own, or the model job's of a packed cell."""
    try:
        packed_in = read_contract(JobResult, result).packed_in
    except ContractError:
        packed_in = None
    return JobFiles(result.parent).packing_home(Path(packed_in)) if packed_in else result.parent


def report_page_inputs(layout: Layout) -> dict[str, str]:
    return {
        "table": str(layout.final(FINAL_TABLE, "md")),
        "best": str(layout.final(FINAL_BEST, "md")),
        "plan": str(layout.plan()),
        "audit": str(layout.audit("md")),
    }


def report_page_outputs(layout: Layout, report: Any) -> dict[str, Any]:
    """The report's pages (HTML), each flagged with its caption under workflow/report/."""
    return {
        name: report(
            str(layout.report_page(name)),
            caption=f"{REPORT_CAPTIONS}/{name}.rst",
            category=REPORT_TABLES,
            subcategory="Run",
            labels={"page": label},
        )
        for name, label in PAGE_LABELS.items()
    }


def write_report_pages(config: Config, input: Any, output: Any, log: Sequence[str]) -> None:
    """The final table (both views), the plan with its cost preview and the audit, as HTML
    (the page writers live beside the figures, with matplotlib: imported here, as above)."""
    from evalwatt.report.figures.report import (
        write_markdown_pages,
        write_plan_page,
        write_preview_check_page,
    )

    with rule_log(log[0], output):
        title = f"evalwatt run {config.run}"
        pages = [input.table, input.best]
        write_markdown_pages(output.energy_table, f"{title}: final table", pages)
        write_plan_page(input.plan, output.plan)
        write_markdown_pages(output.audit, f"{title}: audit", [input.audit])
        write_preview_check_page(config, output.preview_check)


def report_outputs(run: RunJobs) -> list[str]:
    """What the report shows, for ``rule all``: a normal run draws the figures and pages."""
    layout = run.layout
    figures = [str(layout.figure(s.name)) for s in figure_specs(run.plan, run.per_model)]
    pages = [str(layout.report_page(name)) for name in REPORT_PAGES]
    return [*figures, str(layout.figure_index()), *pages]
