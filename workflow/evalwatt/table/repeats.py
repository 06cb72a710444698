"""Mean and spread of a cell over its repeats (``evalwatt submit CELL --repeats N``).

A cell and its repeats (ids ``<cell>__r<n>``, ``evalwatt.base.layout.repeat_of``) are measurements
of the same settings; ``repeat_spread`` groups table rows by their cell and gives, for each
numeric column asked for, how many values there were, their mean, sample standard deviation
(n - 1), minimum and maximum. Pure: rows in, rows out, no files.

A null value (a missing measurement, with its reason in its row) is left out and counted: the
``<column>_n`` says how many values the mean stands on. Fewer than two values give a null
standard deviation, never 0; no value at all gives nulls throughout.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalwatt.base.atomic import atomic_path, write_text
from evalwatt.base.errors import UserError
from evalwatt.base.layout import FINAL_REPEATS, repeat_of
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.table.cells import build_record
from evalwatt.table.final import flat_columns

DEFAULT_COLUMNS = (
    "gpu_inference_energy_j",
    "gpu_net_energy_j",
    "gpu_energy_per_question_wh",
    "cpu_inference_energy_j",
    "cpu_est_inference_energy_j",
    "cpu_est_energy_per_question_wh",
    "inference_duration_s",
    "job_duration_s",
    "output_tokens",
    "score",
)
"""Columns of the final table (flat names) whose spread over repeats is reported."""


@dataclass(frozen=True)
class Spread:
    """Summary of one column over a cell's measurements; units are the column's."""

    n: int
    """values that were not null"""
    mean: float | None
    std: float | None
    """sample standard deviation (n - 1); null below two values"""
    min: float | None
    max: float | None


def spread(values: Iterable[float | int | None]) -> Spread:
    """Mean and spread of the non-null values; a NaN or infinity is refused (a missing
    value is a null with a reason, never a NaN)."""
    kept = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise TypeError(f"not a number: {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"not a finite number: {v!r}")
        kept.append(float(v))
    if not kept:
        return Spread(0, None, None, None, None)
    std = statistics.stdev(kept) if len(kept) >= 2 else None
    return Spread(len(kept), statistics.fmean(kept), std, min(kept), max(kept))


def cell_of(row_id: str) -> str:
    """The cell a row belongs to: its own id, or the cell of a repeat."""
    rep = repeat_of(row_id)
    return rep[0] if rep else row_id


def repeat_spread(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str] = DEFAULT_COLUMNS,
    *,
    id_column: str = "cell_id",
) -> list[dict[str, Any]]:
    """One row per cell that has at least one repeat: ``cell_id``, ``measurements`` (the
    cell's own row and its repeats), ``repeat_ids``, then ``<column>_{n,mean,std,min,max}``
    for each column. A column absent from every row of a cell is a ``KeyError`` (a misspelt
    column must not read as "no values"). Cells without repeats are left out: their single
    value is already in the table."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(cell_of(str(row[id_column])), []).append(row)
    out = []
    for cell_id in sorted(groups):
        members = groups[cell_id]
        repeat_ids = sorted(
            (str(r[id_column]) for r in members if repeat_of(str(r[id_column]))),
            key=lambda i: repeat_of(i)[1],  # type: ignore[index]
        )
        if not repeat_ids:
            continue
        summary: dict[str, Any] = {
            "cell_id": cell_id,
            "measurements": len(members),
            "repeat_ids": repeat_ids,
        }
        for column in columns:
            if not any(column in r for r in members):
                raise KeyError(f"column {column!r} is in no row of cell {cell_id}")
            s = spread(r.get(column) for r in members)
            summary |= {
                f"{column}_n": s.n,
                f"{column}_mean": s.mean,
                f"{column}_std": s.std,
                f"{column}_min": s.min,
                f"{column}_max": s.max,
            }
        out.append(summary)
    return out


# --- the repeats table (``evalwatt repeats``) --------------------------------------------------


def repeat_rows(config: Any, plan: Any, layout: Any) -> list[dict[str, Any]]:
    """Table rows of every cell that has finished repeats, and of those repeats: the cell's
    own row when its result exists, then one per repeat whose result exists. Repeats run
    outside the DAG (``evalwatt submit``), so this reads what is on disk."""
    rows: list[dict[str, Any]] = []
    for cell_id in plan.cells:
        done = [
            rid
            for rid in layout.repeat_ids(cell_id)
            if layout.run_result("cell", rid).is_file()
            and read_contract(JobResult, layout.run_result("cell", rid)).status == "ok"
        ]
        if not done:
            continue
        if layout.run_result("cell", cell_id).is_file():
            rows.append(flat_columns(build_record(config, plan, layout, cell_id).row.model_dump()))
        for rid in done:
            n = repeat_of(rid)[1]  # type: ignore[index]
            record = build_record(config, plan, layout, cell_id, repeat=n)
            rows.append(flat_columns(record.row.model_dump()))
    return rows


def write_repeats_table(config: Any, plan: Any, layout: Any) -> Any:
    """Write final/energy_table_repeats.{parquet,csv,md}; return the Parquet path. A run
    without finished repeats is an error, not an empty table."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    summary = repeat_spread(repeat_rows(config, plan, layout))
    if not summary:
        raise UserError(
            f"run {config.run}: no cell has a finished repeat; send some with "
            "`evalwatt submit CELL --repeats N`"
        )
    for row in summary:
        row["repeat_ids"] = ",".join(row["repeat_ids"])
    table = pa.Table.from_pylist(summary)
    with atomic_path(layout.final(FINAL_REPEATS, "parquet")) as tmp:
        pq.write_table(table, tmp)
    with atomic_path(layout.final(FINAL_REPEATS, "csv")) as tmp:
        pacsv.write_csv(table, tmp)
    lines = [
        f"# evalwatt run {config.run}: repeats (mean, sample sd, min, max; n = values)",
        "",
        "| cell | measurements | GPU inference J mean | sd | CPU est. inference J mean | sd |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary:
        cells = [
            r["cell_id"],
            r["measurements"],
            r["gpu_inference_energy_j_mean"],
            r["gpu_inference_energy_j_std"],
            r["cpu_est_inference_energy_j_mean"],
            r["cpu_est_inference_energy_j_std"],
        ]
        lines.append(
            "| "
            + " | ".join(
                "–" if c is None else f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells
            )
            + " |"
        )
    write_text(layout.final(FINAL_REPEATS, "md"), "\n".join(lines) + "\n")
    return layout.final(FINAL_REPEATS, "parquet")
