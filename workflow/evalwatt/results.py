"""The result schema: one row per cell, shared by the writer and every reader.

Units are in column names. Energy columns come in three families that never mix measured and
modelled numbers: ``gpu_*`` (NVML counters, measured), ``cpu_*`` (RAPL counters, measured)
and ``cpu_est_*`` (CPU time x a per-core power: an estimate). Each family has a
``*_energy_source`` naming where its numbers come from, and ``*_energy_null_reason`` saying
why a value is null. Nulls are never zeros.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from evalwatt.errors import UserError
from evalwatt.atomic import atomic_path, write_text

SCHEMA_VERSION = 1

DOMAINS = ("gpu", "cpu", "cpu_est")
DOMAIN_TITLES = {
    "gpu": "GPU energy, measured (NVML energy counter)",
    "cpu": "CPU package energy, measured (RAPL counter)",
    "cpu_est": "CPU energy, ESTIMATE (CPU time x watts per core)",
}

_f, _i, _s = pa.float64(), pa.int64(), pa.string()

IDENTITY = [
    ("run", _s, "run name"),
    ("cell_id", _s, "cell identifier (model__benchmark__t<temperature>__c<max_connections>)"),
    ("model", _s, "model name"),
    ("hf_id", _s, "Hugging Face repository id"),
    ("benchmark", _s, "benchmark name"),
    ("task", _s, "Inspect task"),
    ("temperature", _f, "sampling temperature"),
    ("top_p", _f, "top-p (null: server default)"),
    ("top_k", _i, "top-k (null: server default)"),
    ("max_tokens", _i, "max generated tokens (null: unset)"),
    ("max_connections", _i, "Inspect max_connections (static, adaptive off)"),
    ("sample_limit", _i, "samples asked for (null: all)"),
    ("backend", _s, "inference server"),
    ("gpus", _i, "GPUs of the job (tensor-parallel size)"),
    ("cpus", _i, "CPUs of the job"),
    ("total_params_b", _f, "total parameters, billions"),
    ("active_params_b", _f, "active parameters per token, billions"),
    ("weight_bits", _i, "bits per stored weight"),
    ("moe", pa.bool_(), "mixture of experts"),
    ("reasoning", pa.bool_(), "reasoning model"),
    ("cluster", _s, "cluster name"),
    ("gpu_model", _s, "GPU model of the cluster"),
]
OUTCOME = [
    ("samples_total", _i, "samples in the evaluation"),
    ("samples_completed", _i, "samples completed without error"),
    ("score", _f, "headline score (metric in score_metric)"),
    ("score_stderr", _f, "standard error of the score"),
    ("score_metric", _s, "metric of score (accuracy, mean)"),
    ("scorer", _s, "Inspect scorer"),
    ("scored_by", _s, "in-job (unit tests, exact match) or judge job"),
    ("judge_model", _s, "judge model, for judge-scored benchmarks"),
    ("input_tokens", _i, "input tokens of the evaluated model"),
    ("output_tokens", _i, "output tokens of the evaluated model"),
]
DURATIONS = [
    ("load_duration_s", _f, "load_start -> ready of the cell"),
    ("inference_duration_s", _f, "inference_start -> inference_end"),
    ("pad_duration_s", _f, "pad_start -> pad_end of the cell"),
    ("job_duration_s", _f, "job_start -> job_end of the cell"),
    ("baseline_load_duration_s", _f, "load_start -> ready of the baseline"),
    ("baseline_job_duration_s", _f, "job_start -> job_end of the baseline"),
    ("judge_duration_s", _f, "inference_start -> inference_end of the judge job"),
]
ENERGY_TERMS = [
    ("inference_energy_j", "phase-resolved: counter over [inference_start, inference_end]"),
    ("job_energy_j", "counter over the whole cell job"),
    ("pad_energy_j", "counter over the cell's padding sleep"),
    ("baseline_job_energy_j", "counter over the whole load-only job"),
    ("baseline_pad_energy_j", "counter over the baseline's padding sleep"),
    ("net_energy_j", "whole-job method: (job - pad) - (baseline_job - baseline_pad)"),
    ("method_gap_j", "net - inference"),
    ("method_gap_pct", "100 x (net - inference) / inference"),
    ("judge_energy_j", "judge job, counter over its scoring window"),
    ("energy_per_question_wh", "inference energy / 3600 / completed samples"),
    ("net_energy_per_question_wh", "net energy / 3600 / completed samples"),
    ("energy_per_1k_output_tokens_wh", "inference energy / 3600 / (output tokens / 1000)"),
]
JOBS = [
    ("job_id", _s, "Slurm job id of the cell, or local:<host>:<job_start>"),
    ("baseline_id", _s, "load-only baseline of this cell"),
    ("baseline_job_id", _s, "Slurm job id of the baseline, or local:<host>:<job_start>"),
    ("judge_job_id", _s, "Slurm job id of the judge job"),
    ("host", _s, "node that ran the cell"),
    ("energy_method", _s, "how the energy columns were computed"),
    ("schema_version", _i, "version of this schema"),
]


def _energy_fields() -> list[tuple[str, pa.DataType, str]]:
    fields = []
    for domain in DOMAINS:
        fields.append((f"{domain}_energy_source", _s, f"{DOMAIN_TITLES[domain]}: source"))
        for name, doc in ENERGY_TERMS:
            fields.append((f"{domain}_{name}", _f, f"{DOMAIN_TITLES[domain]}: {doc}"))
        fields.append((f"{domain}_energy_null_reason", _s, "why this family's values are null"))
    return fields


COLUMNS = IDENTITY + OUTCOME + DURATIONS + _energy_fields() + JOBS
TABLE_SCHEMA = pa.schema(
    [pa.field(name, dtype, metadata={"doc": doc}) for name, dtype, doc in COLUMNS],
    metadata={"evalwatt.schema_version": str(SCHEMA_VERSION)},
)
ENERGY_METHOD = (
    "phase-resolved counter difference over the inference window (energy_per_question); "
    "whole-job (job - pad) - (baseline - baseline pad), the study's method (net_*)"
)


class SchemaVersionError(UserError):
    """A results file written by another version of the schema."""


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (dicts keyed by column name) as a table of the result schema; unknown keys fail."""
    names = set(TABLE_SCHEMA.names)
    for row in rows:
        extra = set(row) - names
        if extra:
            raise KeyError(f"columns not in the result schema: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=TABLE_SCHEMA)


def best_view(table: pa.Table) -> pa.Table:
    """Per (model, benchmark, temperature), the max_connections with the shortest inference,
    as the study kept them."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in table.to_pylist():
        key = (row["model"], row["benchmark"], row["temperature"])
        duration = row["inference_duration_s"]
        kept = best.get(key)
        if kept is None or (
            duration is not None
            and (kept["inference_duration_s"] is None or duration < kept["inference_duration_s"])
        ):
            best[key] = row
    return to_table([best[k] for k in sorted(best, key=lambda k: tuple(map(str, k)))])


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
        "'–' is a null: see the *_energy_null_reason columns of the Parquet/CSV files.",
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


def read_table(path: Path | str) -> pa.Table:
    """Read a final table, refusing one of another schema version."""
    table = pq.read_table(path)
    version = (table.schema.metadata or {}).get(b"evalwatt.schema_version", b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise SchemaVersionError(
            f"{path}: schema_version {version}, this evalwatt reads {SCHEMA_VERSION}"
        )
    return table


def describe_columns() -> str:
    """The schema as Markdown (docs/outputs.md is generated from it)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{n}` | {t} | {d} |" for n, t, d in COLUMNS]
    return "\n".join(lines) + "\n"
