"""The final table's schema: columns, units, versioning, derived columns, flattened energy
(its best view: test_study_view.py)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from study_table import cell_row as _row

from evalwatt.base.errors import UserError
from evalwatt.base.vocabulary import Family
from evalwatt.contracts.record import FamilyUnavailable
from evalwatt.contracts.row import FamilyColumns, TableRow
from evalwatt.table.cells import energy_columns
from evalwatt.table.derived import REVISION, derived_fields
from evalwatt.table.final import (
    ROW_SCHEMA_VERSION,
    SCHEMA_VERSION,
    TABLE_SCHEMA,
    SchemaVersionError,
    read_any_table,
    read_table,
    to_table,
    write_table,
)

DOMAIN_PREFIXES = ("gpu_", "cpu_est_", "cpu_")
NOT_ENERGY = {"gpu_model", "gpus", "cpus", "energy_method"}  # energy_method: a sentence


def _energy_columns() -> list[str]:
    return [
        n
        for n in TABLE_SCHEMA.names
        if n not in NOT_ENERGY and (n.startswith(DOMAIN_PREFIXES) or "energy" in n)
    ]


def test_the_arrow_schema_is_the_row_model_flattened_then_the_derived_columns():
    """TABLE_SCHEMA is derived from TableRow (same columns, same order, same nullability),
    followed by the derived columns of evalwatt.table.derived."""
    names = []
    for name, info in TableRow.model_fields.items():
        if info.annotation is FamilyColumns:
            names += [f"{name}_{sub}" for sub in FamilyColumns.model_fields]
        else:
            names.append(name)
    assert TABLE_SCHEMA.names == names + [f.name for f in derived_fields()]
    assert TABLE_SCHEMA.field("moe").type == pa.bool_()
    assert TABLE_SCHEMA.field("top_k").type == pa.int64()
    assert TABLE_SCHEMA.field("scored_by").type == pa.string()
    assert TABLE_SCHEMA.field("schema_version").type == pa.int64()
    assert (
        TABLE_SCHEMA.field("cpu_est_judge_energy_j")
        .metadata[b"doc"]
        .startswith(b"CPU energy, ESTIMATE")
    )


def test_the_table_version_moves_with_the_row_contract_and_the_derived_columns():
    assert TableRow.known_version() == ROW_SCHEMA_VERSION
    assert SCHEMA_VERSION == ROW_SCHEMA_VERSION + REVISION
    assert SCHEMA_VERSION >= 4  # 4: the derived columns joined the table
    assert TABLE_SCHEMA.metadata[b"evalwatt.schema_version"] == str(SCHEMA_VERSION).encode()
    assert b"final table's schema" in TABLE_SCHEMA.field("schema_version").metadata[b"doc"]


def test_a_table_row_model_fills_every_column():
    families = {f: FamilyColumns() for f in ("gpu", "cpu", "cpu_est")}
    row = TableRow(**{**_full_row(), **families, "cpu_est": FamilyColumns(inference_energy_j=5.0)})
    (back,) = to_table([row]).to_pylist()
    assert set(back) == set(TABLE_SCHEMA.names)
    assert back["cpu_est_inference_energy_j"] == 5.0 and back["gpu_inference_energy_j"] is None
    assert back["schema_version"] == SCHEMA_VERSION  # the table's, not the row contract's
    assert back["correct_answers"] == 1.0  # accuracy 1.0 of 1 completed sample
    assert back["generation_share_of_gpu_time_pct"] == 50.0
    assert back["cpu_est_energy_per_correct_answer_wh"] is None
    assert back["cpu_est_energy_per_correct_answer_wh_null_reason"] == (
        "cpu_est_energy_per_question_wh is null: no reason recorded"
    )


def _full_row() -> dict:
    return {
        "run": "unit",
        "cell_id": "m__b__t0__c10",
        "model": "m",
        "hf_id": "org/m",
        "benchmark": "b",
        "task": "t",
        "temperature": 0.0,
        "top_p": None,
        "top_k": None,
        "max_tokens": None,
        "max_connections": 10,
        "sample_limit": None,
        "backend": "llama-cpp",
        "gpus": 0,
        "cpus": 2,
        "total_params_b": 0.1,
        "active_params_b": 0.1,
        "weight_bits": 4,
        "moe": False,
        "reasoning": False,
        "cluster": "c",
        "gpu_model": "none",
        "samples_total": 1,
        "samples_completed": 1,
        "score": 1.0,
        "score_stderr": None,
        "score_metric": "accuracy",
        "scorer": "s",
        "score_null_reason": None,
        "scored_by": "in-job",
        "judge_model": None,
        "input_tokens": 1,
        "output_tokens": 1,
        "load_duration_s": 1.0,
        "inference_duration_s": 1.0,
        "pad_duration_s": 0.0,
        "job_duration_s": 2.0,
        "baseline_load_duration_s": 1.0,
        "baseline_job_duration_s": 2.0,
        "judge_duration_s": None,
        "scheduler_job_id": "123",
        "baseline_id": "m__llama-cpp-g0-00000000",
        "baseline_scheduler_job_id": "124",
        "judge_scheduler_job_id": None,
        "host": "h",
        "gpus_allocated": "0",
        "gpus_measured": "GPU-0",
        "energy_method": "e",
    }


def test_to_table_rejects_unknown_columns():
    with pytest.raises(KeyError, match="gpu_energy_kwh"):
        to_table([_row(gpu_energy_kwh=1.0)])


def test_to_table_computes_the_derived_columns_and_refuses_them_given():
    with pytest.raises(KeyError, match=r"computed from the row, not given: \[.correct_answers.\]"):
        to_table([_row(correct_answers=3.0)])
    with pytest.raises(SchemaVersionError, match="row contract is version"):
        to_table([_row(schema_version=ROW_SCHEMA_VERSION - 1)])


def test_to_table_keeps_known_columns_and_nulls_the_rest():
    table = to_table([_row(duration=12.5, gpu_inference_energy_j=1234.5)])
    assert table.schema.equals(TABLE_SCHEMA, check_metadata=True)
    (row,) = table.to_pylist()
    assert row["gpu_inference_energy_j"] == 1234.5
    assert row["cpu_inference_energy_j"] is None
    assert row["inference_duration_s"] == 12.5


def test_energy_columns_carry_their_unit():
    names = _energy_columns()
    assert len(names) > 30  # three families of a dozen terms each
    for name in names:
        assert name.endswith(("_j", "_w", "_wh", "_pct", "_energy_source", "_null_reason")), name
        if name.endswith(("_j", "_w", "_wh", "_pct")):
            assert TABLE_SCHEMA.field(name).type == pa.float64(), name


def test_each_energy_family_has_the_same_columns():
    families = {}
    for domain in ("gpu", "cpu", "cpu_est"):
        families[domain] = sorted(
            n.removeprefix(f"{domain}_")
            for n in _energy_columns()
            if n.startswith(f"{domain}_") and not (domain == "cpu" and n.startswith("cpu_est_"))
        )
    assert families["gpu"] == families["cpu"] == families["cpu_est"]
    assert "energy_source" in families["gpu"] and "energy_null_reason" in families["gpu"]


def test_parquet_round_trip_keeps_schema_version(tmp_path):
    table = to_table(
        [_row(duration=3.0, gpu_inference_energy_j=10.0), _row(conns=100, duration=2.0)]
    )
    paths = [tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "t.md"]
    write_table(table, *paths, title="unit")
    back = read_table(paths[0])
    assert back.schema.metadata[b"evalwatt.schema_version"] == str(SCHEMA_VERSION).encode()
    assert back.to_pylist() == table.to_pylist()
    assert back.schema.field("gpu_inference_energy_j").metadata[b"doc"]
    assert paths[1].read_text().splitlines()[0].startswith('"run","cell_id"')
    markdown = paths[2].read_text()
    assert "| m | b |" in markdown
    assert f"schema_version {SCHEMA_VERSION};" in markdown
    assert "| GPU Wh/correct |" in markdown and "| gen. % of job |" in markdown
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("version", [str(SCHEMA_VERSION - 1).encode(), b"99", None])
def test_read_table_refuses_another_schema_version(tmp_path, version):
    table = to_table([_row(duration=3.0)])
    metadata = dict(table.schema.metadata)
    if version is None:
        del metadata[b"evalwatt.schema_version"]
    else:
        metadata[b"evalwatt.schema_version"] = version
    path = tmp_path / "old.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(SchemaVersionError, match="schema_version"):
        read_table(path)


def test_read_any_table_checks_a_final_table_and_reads_any_other(tmp_path):
    """The GLMM's reader: the final table in either form must be of this version; a table
    that does not say it is one (no metadata, no schema_version column) is read as it is."""
    table = to_table([_row(duration=3.0), _row(conns=100, duration=2.0)])
    paths = [tmp_path / "t.parquet", tmp_path / "t.csv", tmp_path / "t.md"]
    write_table(table, *paths, title="unit")
    assert read_any_table(paths[0]).to_pylist() == table.to_pylist()
    assert read_any_table(paths[1]).column("max_connections").to_pylist() == [10, 100]
    column = table.schema.get_field_index("schema_version")
    old = table.set_column(column, "schema_version", pa.array([SCHEMA_VERSION - 1, SCHEMA_VERSION]))
    pacsv.write_csv(old, tmp_path / "old.csv")
    with pytest.raises(SchemaVersionError, match=f"schema_version {SCHEMA_VERSION - 1}, "):
        read_any_table(tmp_path / "old.csv")
    pq.write_table(table.replace_schema_metadata({b"evalwatt.schema_version": b"3"}), paths[0])
    with pytest.raises(SchemaVersionError, match="schema_version 3;"):
        read_any_table(paths[0])
    mine = pa.table({"model": ["a"], "wh": [1.5]})
    pq.write_table(mine, tmp_path / "mine.parquet")
    assert read_any_table(tmp_path / "mine.parquet").equals(mine)
    with pytest.raises(SchemaVersionError):  # the strict reader takes final tables only
        read_table(tmp_path / "mine.parquet")


def test_an_unreadable_table_is_a_user_error_not_a_traceback(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_table(tmp_path / "absent.parquet")
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(UserError, match="cannot read it"):
        read_table(tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"unknown format \.txt"):
        read_any_table(tmp_path / "t.txt")


# --- flattening energy terms into columns ----------------------------------------------


def test_unavailable_domain_is_null_with_its_reason_never_zero():
    energy = {
        Family.GPU: FamilyUnavailable(unavailable="NVML could not start (no NVIDIA driver?)"),
        Family.CPU: FamilyUnavailable(unavailable="no RAPL package zone"),
    }
    row = energy_columns(energy)
    for domain in ("gpu", "cpu"):
        values = [
            v
            for k, v in row.items()
            if k.startswith(f"{domain}_")
            and k.endswith(("_j", "_wh", "_pct"))
            and not (domain == "cpu" and k.startswith("cpu_est_"))
        ]
        assert values and all(v is None for v in values)
    assert row["gpu_energy_null_reason"] == "NVML could not start (no NVIDIA driver?)"
    assert row["cpu_energy_null_reason"] == "no RAPL package zone"
    assert row["cpu_est_energy_null_reason"] == "not computed"
    assert to_table([_row(**row)]).num_rows == 1  # every flattened column is in the schema
