"""The final table: its Arrow schema, derived from the row contract, and its three forms.

``contracts.row.TableRow`` is the one definition of a row; ``TABLE_SCHEMA`` is built from its
fields (names, types, descriptions), each family of energy columns flattened with its prefix
(``gpu_inference_energy_j``), followed by the columns ``evalwatt.table.derived`` computes from them
(Wh per correct answer, score per Wh, the generation share of GPU time), which ``to_table``
appends to every row. Units are in column names. Nulls are never zeros:
``*_energy_null_reason`` says why a family's values are null, ``<derived>_null_reason`` why a
derived value is.

A final table is read back only through ``read_table`` (or ``read_any_table``, for readers that
also take a user's own table), which refuse one written by another schema version.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evalwatt.base.atomic import atomic_path, write_text
from evalwatt.base.errors import UserError
from evalwatt.base.vocabulary import FAMILY_TITLES, Family
from evalwatt.contracts.contract import SchemaVersionError
from evalwatt.contracts.row import FamilyColumns, TableRow
from evalwatt.table.derived import REVISION as DERIVED_REVISION
from evalwatt.table.derived import derived_columns, derived_fields

__all__ = ["SCHEMA_VERSION", "TABLE_SCHEMA", "SchemaVersionError"]

ROW_SCHEMA_VERSION = TableRow.known_version()
# The table is the row contract's columns plus the derived ones, so its version moves with
# both: a new row contract (TableRow's schema_version) or a new revision of the derived columns
# (evalwatt.table.derived.REVISION) each bump it. Both only grow, so the sum never repeats.
SCHEMA_VERSION = ROW_SCHEMA_VERSION + DERIVED_REVISION
SCHEMA_VERSION_DOC = (
    "version of the final table's schema (the file's evalwatt.schema_version metadata): "
    "the row contract's version + the derived columns' revision"
)
ENERGY_METHOD = (
    "phase-resolved counter difference over the generation window, first request to last "
    "response (energy_per_question); "
    "whole-job (job - pad) - (baseline - baseline pad), the study's method (net_*)"
)

_FAMILIES = {f.value for f in Family}
_ARROW_TYPES = {float: pa.float64(), int: pa.int64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a row field: ``X | None`` is a nullable X, a ``Literal`` its values'."""
    if get_origin(annotation) in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return _arrow_type(inner)
    if get_origin(annotation) is Literal:
        (kind,) = {type(v) for v in get_args(annotation)}
        return _ARROW_TYPES[kind]
    return _ARROW_TYPES[annotation]


def _fields() -> list[pa.Field]:
    fields = []
    for name, info in TableRow.model_fields.items():
        if info.annotation is FamilyColumns:
            family = Family(name)
            for sub, sub_info in FamilyColumns.model_fields.items():
                doc = f"{FAMILY_TITLES[family]}: {sub_info.description}"
                dtype = _arrow_type(sub_info.annotation)
                fields.append(pa.field(f"{family}_{sub}", dtype, metadata={"doc": doc}))
        else:
            doc = SCHEMA_VERSION_DOC if name == "schema_version" else str(info.description)
            fields.append(pa.field(name, _arrow_type(info.annotation), metadata={"doc": doc}))
    return fields


_ROW_FIELDS = _fields()
ROW_COLUMNS = frozenset(f.name for f in _ROW_FIELDS)
"""The columns a row gives; the derived ones are computed from them by ``to_table``."""
TABLE_SCHEMA = pa.schema(
    [*_ROW_FIELDS, *derived_fields()],
    metadata={"evalwatt.schema_version": str(SCHEMA_VERSION)},
)


def flat_columns(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the table's columns: each family's fields get the family as prefix."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in _FAMILIES and isinstance(value, Mapping):
            out.update((f"{name}_{k}", v) for k, v in value.items())
        else:
            out[name] = value
    return out


def _table_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One row's columns, checked, with the table's schema_version and the derived columns."""
    extra = set(row) - ROW_COLUMNS
    derived = sorted(extra & set(TABLE_SCHEMA.names))
    if derived:
        raise KeyError(f"derived columns are computed from the row, not given: {derived}")
    if extra:
        raise KeyError(f"columns not in the result schema: {sorted(extra)}")
    version = row.get("schema_version", ROW_SCHEMA_VERSION)
    if version != ROW_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"row {row.get('cell_id')!r} has schema_version {version!r}; the row contract "
            f"is version {ROW_SCHEMA_VERSION}"
        )
    return {**row, "schema_version": SCHEMA_VERSION, **derived_columns(row)}


def to_table(rows: Iterable[Mapping[str, Any] | TableRow]) -> pa.Table:
    """Rows (TableRow, or dicts keyed by row column name) as the final table, the derived
    columns computed; unknown or derived columns given fail."""
    flat = [flat_columns(r.model_dump() if isinstance(r, TableRow) else r) for r in rows]
    return pa.Table.from_pylist([_table_row(r) for r in flat], schema=TABLE_SCHEMA)


_MD_COLUMNS = [
    ("model", "model"),
    ("benchmark", "benchmark"),
    ("temperature", "T"),
    ("max_connections", "conn"),
    ("gpus", "GPUs"),
    ("samples_completed", "n"),
    ("score", "score"),
    ("score_stderr", "± se"),
    ("inference_duration_s", "infer s"),
    ("gpu_energy_per_question_wh", "GPU Wh/q"),
    ("cpu_energy_per_question_wh", "CPU Wh/q"),
    ("cpu_est_energy_per_question_wh", "CPU est. Wh/q"),
    ("gpu_net_energy_per_question_wh", "GPU net Wh/q"),
    ("cpu_est_net_energy_per_question_wh", "CPU est. net Wh/q"),
    ("cpu_est_method_gap_pct", "CPU est. gap %"),
    ("correct_answers", "correct"),
    ("gpu_energy_per_correct_answer_wh", "GPU Wh/correct"),
    ("cpu_est_energy_per_correct_answer_wh", "CPU est. Wh/correct"),
    ("score_per_gpu_wh_per_question", "score per GPU Wh/q"),
    ("generation_share_of_gpu_time_pct", "gen. % of job"),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_markdown(table: pa.Table, title: str) -> str:
    """A readable summary; the Parquet file holds every column."""
    rows = table.to_pylist()
    lines = [
        f"# {title}",
        "",
        f"schema_version {SCHEMA_VERSION}; {len(rows)} rows. "
        "'–' is a null: see the *_null_reason columns of the Parquet/CSV files.",
        "Columns marked 'est.' are modelled estimates, not measurements.",
        "",
    ]
    lines.append("| " + " | ".join(h for _, h in _MD_COLUMNS) + " |")
    lines.append("|" + "---|" * len(_MD_COLUMNS))
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c, _ in _MD_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pa.Table, parquet: Path, csv: Path, markdown: Path, title: str) -> None:
    """Write the three forms of a table, each atomically."""
    with atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    with atomic_path(csv) as tmp:
        pacsv.write_csv(table, tmp)
    write_text(markdown, to_markdown(table, title))


def _read(path: Path, *, csv: bool = False) -> pa.Table:
    """A Parquet (or CSV) file as a table; a missing or unreadable file is a UserError."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return pacsv.read_csv(path) if csv else pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read it ({first})") from None


def _versions(table: pa.Table) -> set[str]:
    """The schema versions a table says it has: a final table's Parquet metadata, or the
    ``schema_version`` column of its CSV form; empty for any other table."""
    metadata = (table.schema.metadata or {}).get(b"evalwatt.schema_version")
    if metadata is not None:
        return {metadata.decode()}
    if "schema_version" in table.column_names:
        return {str(v) for v in table.column("schema_version").to_pylist()}
    return set()


def _check_version(table: pa.Table, path: Path, versions: set[str]) -> pa.Table:
    """The table, if it is of this schema version and of no other."""
    if versions != {str(SCHEMA_VERSION)}:
        found = ", ".join(sorted(versions)) or "?"
        raise SchemaVersionError(
            f"{path}: final table has schema_version {found}; this evalwatt reads "
            f"version {SCHEMA_VERSION} only"
        )
    return table


def read_table(path: Path | str) -> pa.Table:
    """Read a final table (Parquet), refusing one of another schema version, or of none."""
    path = Path(path)
    table = _read(path)
    metadata = (table.schema.metadata or {}).get(b"evalwatt.schema_version", b"?")
    return _check_version(table, path, {metadata.decode()})


def read_any_table(path: Path | str) -> pa.Table:
    """Read a .parquet or .csv table that may be a final table (the GLMM also takes a user's
    own): one that says it is a final table (``_versions``) must be of this schema version;
    any other is read as it is, its columns for its reader to check."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"{path}: unknown format {suffix or '(none)'}: expected .parquet or .csv")
    table = _read(path, csv=suffix == ".csv")
    versions = _versions(table)
    return _check_version(table, path, versions) if versions else table


def describe_columns() -> str:
    """The schema as Markdown (docs/outputs.md is generated from it)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{f.name}` | {f.type} | {f.metadata[b'doc'].decode()} |" for f in TABLE_SCHEMA]
    return "\n".join(lines) + "\n"
