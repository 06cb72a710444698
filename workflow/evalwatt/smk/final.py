"""The final rule (workflow/rules/final.smk): the final table (one row per cell), the
fastest-setting view and the audit; and what ``rule all`` asks of the run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evalwatt.base.layout import FINAL_BEST, FINAL_FORMATS, FINAL_TABLE, Layout
from evalwatt.config.load import Config
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import CellRecord
from evalwatt.jobs.run import RunJobs
from evalwatt.report.audit import write_audit
from evalwatt.smk.common import rule_log
from evalwatt.table.final import to_table, write_table
from evalwatt.table.study_view import best_view


def final_files(layout: Layout) -> dict[str, str]:
    files = {
        f"{name}_{fmt}": str(layout.final(name, fmt))
        for name in (FINAL_TABLE, FINAL_BEST)
        for fmt in FINAL_FORMATS
    }
    files["audit"] = str(layout.audit("md"))
    files["audit_table"] = str(layout.audit("parquet"))
    return files


def final_outputs(run: RunJobs) -> list[str]:
    """Everything a run must have, each job's result included: Snakemake does not rerun a job
    whose output was deleted while what it feeds is still there, unless it is a target."""
    layout = run.layout
    results = [str(run.result(kind, job_id)) for kind, job_id in run.jobs()]
    energy = [str(layout.cell_energy(c)) for c in run.plan.cells]
    return [str(layout.plan()), *results, *energy, *final_files(layout).values()]


def write_final(config: Config, records: Iterable[str], outputs: Any, log: Sequence[str]) -> None:
    """The final table, its fastest-setting view (Parquet, CSV, Markdown) and the audit."""
    with rule_log(log[0], outputs):
        loaded = [read_contract(CellRecord, p) for p in records]
        table = to_table([r.row for r in loaded])
        title = f"evalwatt run {config.run}"
        write_table(table, *_paths(outputs, FINAL_TABLE), f"{title}: energy per cell")
        write_table(
            best_view(table),
            *_paths(outputs, FINAL_BEST),
            f"{title}: fastest max_connections per setting",
        )
        write_audit(config, loaded, outputs.audit_table, outputs.audit)


def _paths(outputs: Any, name: str) -> tuple[Path, Path, Path]:
    """The Parquet, CSV and Markdown outputs of one table (``final_files``'s names)."""
    parquet, csv, md = (Path(getattr(outputs, f"{name}_{fmt}")) for fmt in FINAL_FORMATS)
    return parquet, csv, md
