"""The rows the GLMM is fitted to: a table read, checked and reduced to the study's view.

Input: the final table (Parquet or CSV) or any CSV/Parquet with the columns ``model,
benchmark, total_params_b, quantized, reasoning, moe`` and an energy column in Wh per question
(booleans as true/false or 1/0). A final table is read through its versioned reader
(``evalwatt.table.final.read_any_table``): one of another schema version is refused. It has
``weight_bits`` instead of ``quantized``: quantized means fewer than 16 bits per weight.

Where a (model, benchmark) has several rows (temperatures, max_connections), the study's view
is kept (``evalwatt.table.study_view``): the lowest temperature, then the shortest inference.
Several rows that no duration tells apart (a table without ``inference_duration_s``) are
refused if one of them has an energy: which one is the study's is unknown (if none has, the
pair is left out like any null energy). The view is taken before energy is looked at, as the
figures take it: a pair whose fastest run has no energy is left out, not replaced by a slower
run. Rows left out for a null energy are counted in the notes, with their reasons.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from evalwatt.base.errors import UserError
from evalwatt.table.final import read_any_table
from evalwatt.table.study_view import study_view

UNIT = "mWh per billion parameters per question"
DEFAULT_ENERGY_COLUMN = "gpu_energy_per_question_wh"
REQUIRED = ("model", "benchmark", "total_params_b", "reasoning", "moe")
FACTORS = ("quantized", "reasoning", "moe")

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}

Row = dict[str, Any]


@dataclass(frozen=True)
class GlmmData:
    """The rows the model is fitted to, one per (model, benchmark)."""

    energy_column: str
    models: list[str]
    benchmarks: list[str]  # sorted; the index of bench_idx
    bench_idx: np.ndarray  # int, per row
    quantized: np.ndarray  # 0/1 float, per row
    reasoning: np.ndarray
    moe: np.ndarray
    y: np.ndarray  # E/P, mWh per billion parameters per question
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.y.size)


def load_table(path: Path | str) -> pa.Table:
    """A .parquet or .csv file as a table; anything unreadable, or a final table of another
    schema version, is a UserError."""
    return read_any_table(path)


def _flag(value: Any, column: str, where: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return float(value.strip().lower() in _TRUE)
    raise UserError(f"{where}: {column} is {value!r}, expected true/false or 1/0")


def _number(value: Any, column: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UserError(f"{where}: {column} is {value!r}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"{where}: {column} is {value!r}, not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise UserError(f"{where}: {column} is {value!r}, expected a finite number above zero")
    return number


def _check_columns(names: set[str], energy_column: str) -> None:
    missing = [c for c in (*REQUIRED, energy_column) if c not in names]
    if "quantized" not in names and "weight_bits" not in names:
        missing.append("quantized (or weight_bits)")
    if missing:
        raise UserError(
            f"the table has no column {', '.join(missing)}; the GLMM needs model, benchmark, "
            f"total_params_b, quantized, reasoning, moe and an energy column in Wh per question "
            f"(--energy-column, default {DEFAULT_ENERGY_COLUMN})"
        )


def _study_rows(rows: list[Row], energy_column: str, notes: list[str]) -> list[Row]:
    """One row per (model, benchmark), the study's view. Several rows no duration tells apart
    are refused when one has an energy (which to fit is unknown); when none has, the pair is
    left out for its null energy whichever row is kept (a setting whose runs all failed)."""
    view = study_view(rows)
    for group in view.undecided:
        if any(rows[i][energy_column] is not None for i in group):
            first = rows[group[0]]
            raise UserError(
                f"model {first['model']}, benchmark {first['benchmark']}: {len(group)} rows "
                "and no inference_duration_s to choose one; give one row per (model, benchmark)"
            )
    if view.merged:
        notes.append(
            f"{view.merged} (model, benchmark) pairs had several rows: kept the lowest "
            "temperature, then the shortest inference (the study's view)"
        )
    return view.take(rows)


def _with_energy(rows: list[Row], energy_column: str, notes: list[str]) -> list[Row]:
    """The rows whose energy is known; the others counted in the notes, by reason."""
    kept = [r for r in rows if r[energy_column] is not None]
    if len(kept) < len(rows):
        null_reason = energy_column.replace("_per_question_wh", "_null_reason")
        reasons = Counter(
            str(r.get(null_reason) or "no reason given") for r in rows if r[energy_column] is None
        )
        why = "; ".join(f"{k} ({v})" for k, v in sorted(reasons.items()))
        notes.append(f"{len(rows) - len(kept)} rows with a null {energy_column} left out: {why}")
    return kept


def _values(row: Row, energy_column: str) -> dict[str, float]:
    """One row's E/P and its three factors as numbers, each checked."""
    where = f"model {row['model']}, benchmark {row['benchmark']}"
    params = _number(row["total_params_b"], "total_params_b", where)
    energy = _number(row[energy_column], energy_column, where)
    if "quantized" in row:
        quantized = _flag(row["quantized"], "quantized", where)
    else:
        quantized = float(_number(row["weight_bits"], "weight_bits", where) < 16)
    return {
        "y": energy * 1000.0 / params,
        "quantized": quantized,
        "reasoning": _flag(row["reasoning"], "reasoning", where),
        "moe": _flag(row["moe"], "moe", where),
    }


def prepare(table: pa.Table, energy_column: str = DEFAULT_ENERGY_COLUMN) -> GlmmData:
    """The rows to fit, checked; a UserError says what is missing or why it is too small."""
    names = set(table.column_names)
    _check_columns(names, energy_column)
    notes: list[str] = []
    if "quantized" not in names:
        notes.append("quantized = weight_bits < 16")
    rows = _study_rows(table.to_pylist(), energy_column, notes)
    rows = _with_energy(rows, energy_column, notes)
    values = [_values(r, energy_column) for r in rows]

    def column(name: str) -> np.ndarray:
        return np.array([v[name] for v in values], dtype=float)

    benchmarks = sorted({str(r["benchmark"]) for r in rows})
    index = {b: i for i, b in enumerate(benchmarks)}
    data = GlmmData(
        energy_column=energy_column,
        models=sorted({str(r["model"]) for r in rows}),
        benchmarks=benchmarks,
        bench_idx=np.array([index[str(r["benchmark"])] for r in rows], dtype=np.int32),
        quantized=column("quantized"),
        reasoning=column("reasoning"),
        moe=column("moe"),
        y=column("y"),
        notes=notes,
    )
    check_size(data)
    alone = [b for i, b in enumerate(benchmarks) if not data.reasoning[data.bench_idx == i].any()]
    if alone:
        notes.append(
            f"no reasoning model ran {', '.join(alone)}: its γ is the prior's (shrunk to 0, "
            "wide HDI), not a measurement"
        )
    return data


def check_size(data: GlmmData) -> None:
    """Refuse a table the model cannot be fitted to, naming every reason at once."""
    problems = []
    if len(data.benchmarks) < 2:
        problems.append(
            f"{len(data.benchmarks)} benchmark(s): the per-benchmark effects δ and γ need at "
            "least 2"
        )
    if len(data.models) < 3:
        problems.append(f"{len(data.models)} model(s): at least 3 are needed")
    need = 2 * (4 + 2 * max(len(data.benchmarks), 2))
    if data.n < need:
        problems.append(
            f"{data.n} (model, benchmark) rows with energy: at least {need} are needed "
            "(two per coefficient: α, three β, a δ and a γ per benchmark)"
        )
    for factor in FACTORS:
        column = getattr(data, factor)
        if column.size and column.min() == column.max():
            problems.append(
                f"every row has {factor}={'true' if column[0] else 'false'}: β_{factor} cannot "
                f"be estimated without models on both sides"
            )
    if problems:
        raise UserError(
            "table too small for the GLMM: "
            + "; ".join(problems)
            + (f" ({'; '.join(data.notes)})" if data.notes else "")
        )
