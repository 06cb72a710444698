"""What the Snakemake report shows: every figure a run can have, known from its plan before the
table exists, and the pages (final table, plan and cost preview, audit summary) as HTML.

Snakemake must know a rule's outputs before it runs, but a figure may have nothing to draw (no
reasoning/non-reasoning pair in the table, one ``max_connections`` only). Such a figure is
written as a card that says, in words, that it was not drawn and why: never an empty or made-up
plot. ``report.figure_specs`` names every figure; ``draw_report_figures`` writes each one, drawn or
carded, to the path the rule declared.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa

from evalwatt.base.atomic import atomic_path, write_text
from evalwatt.base.errors import UserError
from evalwatt.base.layout import JobFiles, Layout
from evalwatt.config.load import Config
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.plan import PlanFile
from evalwatt.energy.trace import TraceError
from evalwatt.plan import preview
from evalwatt.plan.matrix import plan_run
from evalwatt.report.figure_specs import FigureSpec
from evalwatt.report.figures import make_figures, power_timeline, write_index
from evalwatt.report.figures._common import FigureResult, new_figure, pick_family
from evalwatt.report.preview_check import PreviewCheckError, run_check

# The energy family of the table figures, and the in-job trace that holds the same energy.
FAMILY_TRACE = {"gpu": "nvml", "cpu": "rapl", "cpu_est": "cpu-model"}
TRACE_ORDER = ("nvml", "rapl", "cpu-model")


def not_drawn(path: Path | str, title: str, reason: str) -> None:
    """A card in place of a figure that has nothing to draw: its title and the reason, as
    text; no axes, so it cannot be read as data."""
    fig = new_figure(7.5, 2.2)
    fig.patch.set_facecolor("#f4f4f4")
    fig.text(0.5, 0.72, f"{title}: not drawn", ha="center", va="center", fontsize=12,
             weight="bold", color="#333333")  # fmt: skip
    fig.text(0.5, 0.38, _wrap(reason, 90), ha="center", va="center", fontsize=9, color="#333333")
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", metadata={"Software": None})


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def draw_report_figures(
    table: pa.Table,
    specs: Iterable[FigureSpec],
    outputs: Mapping[str, Path | str],
    job_dirs: Mapping[str, Path],
    index: Path | str,
) -> list[FigureResult]:
    """Draw every figure of ``specs`` to ``outputs[name]`` (a PNG; its SVG beside it), or a
    not-drawn card with the reason. ``job_dirs`` maps a power timeline's name to the job's
    folder (its traces and timeline). The results, reasons included, go to ``index``."""
    specs = list(specs)
    out_dir = Path(next(iter(outputs.values()))).parent
    results = {r.name: r for r in make_figures(table, out_dir)}
    family = pick_family(table.to_pylist(), None)
    for spec in specs:
        if spec.name in job_dirs:
            results[spec.name] = _timeline(job_dirs[spec.name], family, out_dir, spec)
    for spec in specs:
        result = results.get(spec.name)
        if result is None:
            raise UserError(f"no figure {spec.name} was made: the report expects it")
        target = Path(outputs[spec.name])
        if result.skipped is not None:
            not_drawn(target, spec.label[1], result.skipped)
        elif Path(result.files[0]) != target:
            raise UserError(f"figure {spec.name} was drawn to {result.files[0]}, not {target}")
    ordered = [results[s.name] for s in specs]
    write_index(ordered, index)
    return ordered


def _timeline(job_dir: Path, family: str, out_dir: Path, spec: FigureSpec) -> FigureResult:
    """The job's power timeline from the trace of the table's energy family, else the first
    trace the job has; a job with no trace, or a bad one, gets the reason instead."""
    files = JobFiles(job_dir)
    order = [FAMILY_TRACE[family], *(s for s in TRACE_ORDER if s != FAMILY_TRACE[family])]
    found = [files.trace(s) for s in order if files.trace(s).exists()]
    if not found:
        return FigureResult(spec.name, "", (), skipped=f"{job_dir} has no trace file")
    try:
        return power_timeline(
            found[0], files.timeline, out_dir, name=spec.name, title=f"{spec.label[1]}"
        )
    except TraceError as exc:
        return FigureResult(spec.name, "", (), skipped=f"{found[0]}: {exc}")


# --- pages: the final table, the plan and its cost preview, the audit -------------------------

_STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1.5em; color: #222; background: #fff; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; }
th { background: #eee; }
code { background: #f4f4f4; }
"""


def markdown_page(title: str, markdown: str) -> str:
    """A standalone HTML page of Markdown text (tables included)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}</body></html>\n"
    )


def write_markdown_pages(path: Path | str, title: str, parts: Iterable[Path | str]) -> None:
    """One HTML page of Markdown files (the final table's .md files, the audit's)."""
    text = "\n\n".join(Path(p).read_text(encoding="utf-8") for p in parts)
    write_text(path, markdown_page(title, text))


def plan_markdown(plan: PlanFile) -> str:
    """The plan file (plan/plan.json: GPUs per model and why, the cost preview of both
    execution modes) as Markdown; the preview's numbers are the plan rule's, rounded here only."""
    cost = plan.cost
    lines = [
        f"# Plan of run {plan.run}",
        "",
        f"{cost.cells} cells ({cost.judged_cells} judge-scored); execution `{cost.execution}`.",
        "",
        "| model | backend | GPUs | CPUs | VRAM GB | why |",
        "|---|---|---|---|---|---|",
    ]
    for m in plan.models:
        lines.append(
            f"| {m.model} | {m.backend} | {m.gpus} | {m.cpus} | "
            f"{m.vram_gb:.1f} | {m.reason.replace('|', '/')} |"
        )
    lines += [
        "",
        "## GPU-hour preview",
        "",
        "Both execution modes, by phase: the throughput model's estimates (the same that set "
        "each job's time limit), not measurements; `evalwatt preview-check` compares them with "
        "a run's measured GPU-seconds.",
        "",
        *preview.markdown(preview.phase_rows(cost)),
        "",
        *preview.markdown(preview.job_rows(cost)),
        "",
        *preview.markdown(preview.rate_rows(cost)),
        "",
        "Assumptions: " + ", ".join(f"`{k}` = {v}" for k, v in preview.assumption_items(cost)),
        "",
        "## Cells",
        "",
        "| cell | model | benchmark | temperature | max_connections | baseline | judge |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in plan.cells:
        lines.append(
            f"| {c.id} | {c.model} | {c.benchmark} | {c.temperature:g} | "
            f"{c.max_connections} | {c.baseline} | {c.judge or '–'} |"
        )
    return "\n".join(lines) + "\n"


def write_preview_check_page(config: Config, path: Path | str) -> None:
    """The report's page: the check of the run's results on disk. A result the check cannot
    read makes the page say so (the rest of the report does not depend on it)."""
    layout = Layout.of(config.results_dir, config.run)
    try:
        text, _ = run_check(config, plan_run(config), layout)
    except PreviewCheckError as exc:
        text = f"# Preview against the run {config.run}\n\nNot compared: {exc}\n"
    write_text(path, markdown_page(f"evalwatt run {config.run}: preview check", text))


def write_plan_page(plan_json: Path | str, path: Path | str) -> None:
    plan = read_contract(PlanFile, plan_json)
    write_text(path, markdown_page(f"Plan of run {plan.run}", plan_markdown(plan)))
