"""Config validation: every error names the field, the bad value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from evalwatt.config.load import ConfigError, from_dict, load_config

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
    assert [m["name"] for m in config.models] == [
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
    raw = config.raw
    assert raw["planner"]["vram_overhead"] == 1.3
    assert raw["planner"]["round_three_to_four"] is True
    assert raw["vllm"]["gpu_memory_utilization"] == 0.9
    assert raw["job"]["sample_interval_s"] == 0.1
    assert raw["job"]["env"] == {}
    assert raw["sampling"] == {}
    model = config.model("Qwen2.5-32B-Instruct")
    assert model["quantization"] == "none"
    assert model["gpus"] is None
    assert model["moe"] is False
    assert model["server_args"] == []
    assert config.benchmarks["piqa"]["judge"] is None
    assert config.benchmarks["writingbench"]["limit"] is None
    assert raw["judges"]["qnext"]["max_tokens"] is None
    assert raw["results_dir"] == "results"
    assert raw["cluster"]["pad_margin_s"] == 30


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
    assert model["total_params_b"] == 7.62
    assert model["weight_bits"] == 16
    assert model["attention_heads"] == 28
    assert model["moe"] is False
    assert model["benchmarks"] == ["piqa"]
    assert model["quantization"] == "none"  # default filled


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


def test_defaults_are_copies_and_fill_inside_filled_defaults(small_config):
    """A default `{}` is completed with its own keys' defaults; two configs never share (or
    write into the schema's) default objects."""
    small_config.pop("accounting", None)
    first = from_dict(small_config, Path("."))
    second = from_dict(small_config, Path("."))
    assert first.raw["accounting"]["ceems"]["user_header"] == "X-Grafana-User"
    assert first.raw["accounting"]["headline_order"] == ["nvml"]
    first.raw["accounting"]["headline_order"].append("sacct")
    first.model("Qwen2.5-32B-Instruct")["server_args"].append("--x")
    assert second.raw["accounting"]["headline_order"] == ["nvml"]
    assert from_dict(small_config, Path(".")).model("Qwen2.5-32B-Instruct")["server_args"] == []
