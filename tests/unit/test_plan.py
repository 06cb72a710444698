"""The GPU-count planner, the matrix of cells and the cost preview.

Expected GPU counts are worked out by hand from the study's formula
VRAM_GB = P x 4 / (32 / Q) x 1.3 and vLLM's head-divisibility rule.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalwatt.config.load import ConfigError, from_dict, load_config
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.plan import PlanFile
from evalwatt.plan.estimate import cost_preview, estimate, load_seconds, rates_of
from evalwatt.plan.matrix import (
    baseline_id,
    format_temperature,
    plan_model,
    plan_run,
    server_settings,
    tp_size_ok,
    vram_gb,
)
from evalwatt.plan.record import plan_file, write_plan_file
from evalwatt.report.figures.report import plan_markdown

REPO_DIR = Path(__file__).resolve().parents[2]
PEREN = REPO_DIR / "config" / "peren.yaml"
PEREN_SHEET = REPO_DIR / "config" / "peren_models.tsv"


def _model(name: str, params_b: float, bits: int, heads: int, kv: int, **extra: Any) -> dict:
    return {
        "name": name,
        "hf_id": f"org/{name}",
        "backend": "vllm",
        "family": "test",
        "total_params_b": params_b,
        "weight_bits": bits,
        "attention_heads": heads,
        "kv_heads": kv,
        **extra,
    }


def _config(small_config: dict, *models: dict, **cluster: Any):
    small_config["models"] = list(models)
    small_config["judges"] = {}
    small_config["benchmarks"] = {"piqa": small_config["benchmarks"]["piqa"]}
    small_config["cluster"].update(cluster)
    return from_dict(small_config, Path("."))


# --- the formula and the TP rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("params_b", "bits", "overhead", "expected_gb"),
    [
        (70, 16, 1.3, 182.0),  # 70 x 4 / 2 x 1.3
        (70, 16, 1.2, 168.0),
        (32, 8, 1.3, 41.6),  # 32 x 4 / 4 x 1.3
        (32, 4, 1.3, 20.8),  # 32 x 4 / 8 x 1.3
        (10, 32, 1.0, 40.0),  # fp32: 4 bytes per weight
    ],
)
def test_vram_gb_follows_the_study_formula(params_b, bits, overhead, expected_gb):
    assert vram_gb(params_b, bits, overhead) == pytest.approx(expected_gb, rel=1e-12)


@pytest.mark.parametrize(
    ("tp", "heads", "kv", "ok"),
    [
        (1, 28, 4, True),
        (2, 28, 4, True),
        (4, 28, 4, True),
        (8, 28, 4, False),  # 28 heads do not split in 8
        (3, 28, 4, False),
        (3, 64, 8, False),  # 64 % 3 != 0
        (4, 16, 2, True),  # KV heads replicated: 4 % 2 == 0
        (16, 32, 8, True),  # KV replicated: 16 % 8 == 0
        (6, 48, 8, False),  # heads divisible, but 8 % 6 and 6 % 8 are not 0
        (3, 48, 3, True),
        (2, 9, 3, False),
    ],
)
def test_tp_size_ok(tp, heads, kv, ok):
    assert tp_size_ok(tp, heads, kv) is ok


# --- plan_model ---------------------------------------------------------------------------------


def test_smallest_count_that_holds_the_model(small_config):
    # 40 B at 16 bits: 40 x 2 x 1.3 = 104 GB -> 2 x 80 GB
    config = _config(small_config, _model("m40", 40, 16, 40, 8, benchmarks=["piqa"]))
    plan = plan_model(config.model("m40"), config)
    assert plan.gpus == 2
    assert plan.cpus == 2 * 24
    assert plan.vram_gb == pytest.approx(104.0)


def test_one_gpu_when_it_fits(small_config):
    # 30.53 B at 16 bits: 79.378 GB <= 80 GB
    config = _config(small_config, _model("m30", 30.53, 16, 32, 4))
    assert plan_model(config.model("m30"), config).gpus == 1


def test_three_is_rounded_to_four(small_config):
    # 70.55 x 2 x 1.3 = 183.43 GB: 2 x 80 is too small, 3 x 80 holds it, rounded to 4
    config = _config(small_config, _model("m70", 70.55, 16, 48, 12))
    plan = plan_model(config.model("m70"), config)
    assert plan.gpus == 4
    assert plan.cpus == 96
    assert "3" in plan.reason and "round" in plan.reason


def test_three_is_kept_when_rounding_is_off_and_heads_allow_it(small_config):
    small_config["planner"] = {"round_three_to_four": False}
    config = _config(small_config, _model("m70", 70.55, 16, 48, 12))
    assert plan_model(config.model("m70"), config).gpus == 3


def test_three_is_rejected_by_heads_even_without_rounding(small_config):
    small_config["planner"] = {"round_three_to_four": False}
    config = _config(small_config, _model("m70", 70.55, 16, 64, 8))
    plan = plan_model(config.model("m70"), config)
    assert plan.gpus == 4
    assert "64" in plan.reason and "not divisible" in plan.reason


def test_head_rule_skips_a_count_that_would_hold_the_model(small_config):
    # 100 GB needed (P = 100 / 2.6); 2 GPUs would hold it but 9 heads do not split in 2;
    # 3 is rounded; 4 does not divide 9 either: no node can serve it.
    config = _config(small_config, _model("odd", 100 / 2.6, 16, 9, 3))
    with pytest.raises(ConfigError, match="odd"):
        plan_model(config.model("odd"), config)


def test_too_big_for_a_node(small_config):
    # 200 B at 16 bits: 520 GB > 4 x 80 GB = 320 GB
    config = _config(small_config, _model("huge-200b", 200, 16, 64, 8))
    with pytest.raises(ConfigError) as err:
        plan_model(config.model("huge-200b"), config)
    message = str(err.value)
    assert "huge-200b" in message
    assert "520.0 GB" in message
    assert "320.0 GB" in message


def test_forced_gpus_is_kept_and_says_so(small_config):
    # 124 B: 322.4 GB, 2.4 GB more than 4 x 80: forced to 4 as the study ran it
    config = _config(small_config, _model("pixtral", 124, 16, 96, 8, gpus=4))
    plan = plan_model(config.model("pixtral"), config)
    assert plan.gpus == 4
    assert plan.cpus == 96
    assert "forced" in plan.reason
    assert "2.4 GB short" in plan.reason


def test_forced_gpus_above_the_formula(small_config):
    config = _config(small_config, _model("small", 7, 16, 28, 4, gpus=2))
    plan = plan_model(config.model("small"), config)
    assert plan.gpus == 2
    assert "forced" in plan.reason and "holds" in plan.reason


def test_forced_gpus_with_an_invalid_tp_size(small_config):
    config = _config(small_config, _model("m64", 70, 16, 64, 8, gpus=3))
    with pytest.raises(ConfigError, match=r"m64.*gpus=3.*tensor-parallel"):
        plan_model(config.model("m64"), config)


def test_forced_gpus_more_than_a_node(small_config):
    config = _config(small_config, _model("m8", 70, 16, 64, 8, gpus=8))
    with pytest.raises(ConfigError, match=r"m8: gpus=8 is more than a node .* \(4\)"):
        plan_model(config.model("m8"), config)


def test_llama_cpp_model_gets_no_gpu(small_config):
    config = from_dict(small_config, Path("."))
    plan = plan_model(config.model("SmolLM2-135M-Instruct"), config)
    assert plan.gpus == 0
    assert plan.cpus == 2  # cpus_per_cpu_job


def test_the_hf_backend_on_a_cpu_only_cluster_is_an_error(small_config):
    """vLLM has a CPU build (it plans as a CPU job there); evalwatt's hf server needs a GPU."""
    small_config["cluster"]["gpus_per_node"] = 0
    small_config["models"][0]["backend"] = "hf"
    with pytest.raises(ConfigError, match=r"Qwen2.5-32B-Instruct.*gpus_per_node=0"):
        plan_run(from_dict(small_config, Path(".")))  # refused on load (config.cluster_rules)


# --- the small config's matrix and cost -----------------------------------------------------


def test_small_config_matrix(small_config):
    config = from_dict(small_config, Path("."))
    plan = plan_run(config)
    assert {m: p.gpus for m, p in plan.models.items()} == {
        "Qwen2.5-32B-Instruct": 2,  # 85.176 GB
        "Qwen3-Next-80B-A3B-Instruct": 4,  # 207.142 GB: 3 rounded to 4
        "SmolLM2-135M-Instruct": 0,
    }
    # (2 benchmarks + 1 benchmark) x 2 temperatures x 2 max_connections
    assert len(plan.cells) == 12
    # the judge model has no benchmark: no baseline of its own
    assert sorted(b.model for b in plan.baselines.values()) == [
        "Qwen2.5-32B-Instruct",
        "SmolLM2-135M-Instruct",
    ]
    judged = sorted(c.id for c in plan.cells.values() if c.judge)
    assert judged == [
        "Qwen2.5-32B-Instruct__writingbench__t0.7__c10",
        "Qwen2.5-32B-Instruct__writingbench__t0.7__c100",
        "Qwen2.5-32B-Instruct__writingbench__t0__c10",
        "Qwen2.5-32B-Instruct__writingbench__t0__c100",
    ]
    for cell in plan.cells.values():
        assert plan.baselines[cell.baseline].model == cell.model


def test_cost_preview_by_hand(small_config):
    """Both modes of the small config, from the jobs' own estimates (evalwatt.plan.estimate,
    worked out by hand in tests/unit/test_estimate.py): per-cell runs 12 cell jobs and 2
    baselines; per-model one job for the 32B model's 8 cells (they fit the 2,700 s a 90-minute
    limit at margin 2 allows) and one per SmolLM2 cell (100 piqa samples of 500 tokens at the
    CPU row's 56 tokens/s: about 1,400 s each); both run one judge pass for the 4 writingbench
    cells. GPU-hours count the GPUs of each job."""
    config = from_dict(small_config, Path("."))
    plan = plan_run(config)
    cost = cost_preview(plan, config)
    per_cell, per_model = cost.mode("per-cell"), cost.mode("per-model")
    assert (cost.cells, cost.judged_cells, cost.execution) == (12, 4, "per-cell")
    assert per_cell.jobs.model_dump() == {"cell": 12, "baseline": 2, "model": 0, "judge_pass": 1}
    assert per_model.jobs.model_dump() == {"cell": 0, "baseline": 0, "model": 5, "judge_pass": 1}
    load_32b = load_seconds(plan, config, "Qwen2.5-32B-Instruct")  # on 2 GPUs
    assert load_32b == pytest.approx(60 + 32.76 * 2)
    # SmolLM2 computes on the CPU: no GPU-hour; the 32B model loads 8 + 1 times per cell
    assert per_cell.gpu_hours.loading == pytest.approx(9 * 2 * load_32b / 3600)
    assert per_model.gpu_hours.loading == pytest.approx(1 * 2 * load_32b / 3600)
    gen = sum(
        2 * estimate(plan, config, "cell", c.id).generation_s
        for c in plan.cells.values()
        if c.model == "Qwen2.5-32B-Instruct"
    )
    for mode in (per_cell, per_model):
        assert mode.gpu_hours.generation == pytest.approx(gen / 3600)
        assert mode.gpu_hours_total == pytest.approx(mode.gpu_hours.total, rel=1e-12)
    assert per_cell.gpu_hours.judging_generation == per_model.gpu_hours.judging_generation > 0
    assert per_model.overhead_share < per_cell.overhead_share
    assert cost.assumptions.model_dump() == {
        "server_start_s": 60.0,
        "load_gb_per_s": 1.0,
        "accounting_window_s": 300.0,
        "pad_margin_s": 30.0,
        "inspect_overhead_s": 10.0,
        "judge_overhead_s": 10.0,  # uncalibrated: Inspect's overhead around a cell
        "job_overhead_s": {"cell": 5.0, "baseline": 5.0, "model": 5.0, "judge-pass": 5.0},
        "throughput_table": "config/throughput.yaml",
        "calibration": None,
    }


# --- the study config -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peren():
    config = load_config(PEREN)
    return config, plan_run(config)


def _sheet_rows() -> list[dict[str, str]]:
    with open(PEREN_SHEET, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _fits(n: int, heads: int, kv: int) -> bool:
    return heads % n == 0 and (kv % n == 0 or n % kv == 0)


def test_study_every_model_on_one_node_with_a_valid_tp_size(peren):
    _, plan = peren
    rows = {r["name"]: r for r in _sheet_rows()}
    assert set(plan.models) == set(rows)
    for name, mplan in plan.models.items():
        row = rows[name]
        heads, kv = int(row["attention_heads"]), int(row["kv_heads"])
        assert 1 <= mplan.gpus <= 4, name
        assert _fits(mplan.gpus, heads, kv), name
        need = float(row["total_params_b"]) * int(row["weight_bits"]) / 8 * 1.3
        if "forced" not in mplan.reason:
            assert mplan.gpus * 80 >= need, name
            smaller = [
                n for n in range(1, mplan.gpus) if n != 3 and n * 80 >= need and _fits(n, heads, kv)
            ]
            assert smaller == [], f"{name}: {smaller} would do"
        else:
            assert row["gpus"], f"{name} is forced but the sheet sets no gpus"


@pytest.mark.parametrize(
    ("model", "gpus"),
    [
        ("Llama-3.1-70B-Instruct", 4),  # 183.4 GB: 3 rounded to 4
        ("Qwen2.5-7B-Instruct", 1),  # 19.8 GB
        ("Qwen2.5-32B-Instruct", 2),  # 85.2 GB
        ("Qwen3-Next-80B-A3B-Instruct", 4),  # 207.1 GB
        ("QwQ-32B-AWQ", 1),  # 4-bit: 21.3 GB
        ("Pixtral-Large-Instruct-2411", 4),  # forced
    ],
)
def test_study_gpu_counts_by_hand(peren, model, gpus):
    _, plan = peren
    assert plan.models[model].gpus == gpus
    assert plan.models[model].cpus == 24 * gpus


def test_study_cell_count(peren):
    _, plan = peren
    with open(PEREN, encoding="utf-8") as fh:
        sweeps = yaml.safe_load(fh)["sweeps"]
    per_pair = len(sweeps["temperature"]) * len(sweeps["max_connections"])
    assert per_pair == 2 * 3
    expected = sum(len(r["benchmarks"].split(",")) * per_pair for r in _sheet_rows())
    assert len(plan.cells) == expected
    assert len(plan.baselines) == sum(1 for r in _sheet_rows() if r["benchmarks"].strip())


def test_study_cost_preview_parts_are_non_negative_and_add_up(peren):
    config, plan = peren
    cost = cost_preview(plan, config)
    assert [m.execution for m in cost.modes] == ["per-cell", "per-model"]
    for mode in cost.modes:
        parts = mode.gpu_hours.model_dump()
        assert set(parts) == {
            "generation", "loading", "reference_idle", "idle", "padding",
            "judging_generation", "judging_other",
        }  # fmt: skip
        assert all(v >= 0 for v in parts.values())
        assert mode.gpu_hours_total == pytest.approx(sum(parts.values()), rel=1e-12)
    assert cost.cells == len(plan.cells)
    assert cost.judged_cells == sum(1 for c in plan.cells.values() if c.judge)
    per_cell, per_model = cost.modes
    assert per_cell.jobs.cell == len(plan.cells) and per_cell.jobs.baseline == len(plan.baselines)
    assert len(plan.baselines) <= per_model.jobs.model < len(plan.cells)
    assert per_model.overhead_share < per_cell.overhead_share
    assert per_model.overhead_share <= 0.10  # the goal, on the uncalibrated table


# --- sampling settings and multimodal checks --------------------------------------------------


@pytest.mark.parametrize(
    ("model", "benchmark", "expected"),
    [
        # reasoning Qwen3: the `qwen3+reasoning` profile
        ("Qwen3-30B-A3B-Thinking-2507", "piqa", {"top_p": 0.95, "top_k": 20, "max_tokens": 32768}),
        # the benchmark's max_tokens (WritingBench: 16,000) wins over the family's
        (
            "Qwen3-30B-A3B-Thinking-2507",
            "writingbench",
            {"top_p": 0.95, "top_k": 20, "max_tokens": 16000},
        ),
        ("Qwen3-30B-A3B-Instruct-2507", "piqa", {"top_p": 0.8, "top_k": 20, "max_tokens": 32768}),
        # families without a profile: server defaults, max tokens unset
        ("Llama-3.1-70B-Instruct", "piqa", {"top_p": None, "top_k": None, "max_tokens": None}),
        (
            "Llama-3.1-70B-Instruct",
            "writingbench",
            {"top_p": None, "top_k": None, "max_tokens": 16000},
        ),
    ],
)
def test_study_sampling_settings(peren, model, benchmark, expected):
    _, plan = peren
    cell = plan.cells[f"{model}__{benchmark}__t0__c10"]
    assert cell.sampling.model_dump() == expected


def test_an_hf_model_is_checked_against_the_profile_it_is_sampled_with(small_config):
    """The top_k refusal for an hf model reads the profile the plan applies: a reasoning
    model's non-empty ``<family>+reasoning`` profile, not its family's top_k."""
    model = small_config["models"][0]
    model.update(backend="hf", total_params_b=7.0, reasoning=True)
    family = model["family"]
    small_config["sampling"] = {family: {"top_k": 20}, f"{family}+reasoning": {"top_p": 0.9}}
    config = from_dict(small_config, Path("."))
    cells = [c for c in plan_run(config).cells.values() if c.model == model["name"]]
    assert cells and all(c.sampling.top_k is None and c.sampling.top_p == 0.9 for c in cells)
    small_config["sampling"][f"{family}+reasoning"] = {}  # empty: the family's applies
    with pytest.raises(ConfigError, match=rf"sampling\.{family}\.top_k = 20"):
        from_dict(small_config, Path("."))


def test_multimodal_benchmark_for_a_text_model_is_an_error(small_config):
    small_config["benchmarks"]["piqa"]["multimodal"] = True
    config = from_dict(small_config, Path("."))
    with pytest.raises(ConfigError, match=r"Qwen2.5-32B-Instruct: benchmark piqa needs images"):
        plan_run(config)


# --- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "text"),
    [(0.0, "0"), (0, "0"), (0.7, "0.7"), (1.5, "1.5"), (0.1000001, "0.1000001"), (1e-7, "1e-07")],
)
def test_format_temperature_is_short_and_exact(temperature, text):
    assert format_temperature(temperature) == text
    assert float(text) == temperature


def test_temperatures_that_print_alike_with_g_get_distinct_cells(small_config):
    small_config["sweeps"]["temperature"] = [0.1, 0.1000001]
    plan = plan_run(from_dict(small_config, Path(".")))
    ids = {c.id for c in plan.cells.values() if c.model == "SmolLM2-135M-Instruct"}
    assert ids == {
        "SmolLM2-135M-Instruct__piqa__t0.1__c10",
        "SmolLM2-135M-Instruct__piqa__t0.1__c100",
        "SmolLM2-135M-Instruct__piqa__t0.1000001__c10",
        "SmolLM2-135M-Instruct__piqa__t0.1000001__c100",
    }


def test_two_cells_with_one_id_are_an_error_naming_both(small_config, monkeypatch):
    monkeypatch.setattr("evalwatt.plan.matrix.format_temperature", lambda t: "x")
    config = from_dict(small_config, Path("."), origin="cfg.yaml")
    with pytest.raises(ConfigError) as err:
        plan_run(config)
    message = str(err.value)
    assert message.startswith("cfg.yaml: cell id Qwen2.5-32B-Instruct__piqa__tx__c10 names two")
    assert "temperature 0.0" in message and "temperature 0.7" in message


def test_an_empty_matrix_is_an_error(small_config):
    for model in small_config["models"]:
        model["benchmarks"] = []
    with pytest.raises(ConfigError, match=r"config: field models: every model has an empty"):
        plan_run(from_dict(small_config, Path(".")))


def test_the_plan_records_deferred_checks(monkeypatch):
    monkeypatch.delenv("DSDIR", raising=False)
    config = load_config(PEREN)  # $DSDIR is not set here: the weights are checked in the job
    checks = plan_run(config).to_json()["checks"]
    deferred = {c["name"] for c in checks if c["status"] == "deferred"}
    assert "weights:Llama-3.1-70B-Instruct" in deferred
    assert {c["name"] for c in checks if c["status"] == "passed"} >= {"task:piqa", "job_python"}


# --- the plan file ------------------------------------------------------------------------------


def test_the_plan_file_round_trips_and_the_report_reads_it(small_config, tmp_path):
    config = from_dict(small_config, Path("."))
    plan = plan_run(config)
    path = tmp_path / "plan.json"
    write_plan_file(path, config, plan)
    back = read_contract(PlanFile, path)
    assert back == plan_file(config, plan)
    assert [c.id for c in back.cells] == list(plan.cells)
    assert {b.id: b.server for b in back.baselines} == {
        i: b.server for i, b in plan.baselines.items()
    }
    assert back.cost == cost_preview(plan, config)
    page = plan_markdown(back)
    assert "12 cells (4 judge-scored); execution `per-cell`." in page
    assert "`accounting_window_s` = 300, `pad_margin_s` = 30" in page


def test_the_baseline_id_hashes_only_the_settings_the_planner_sets(small_config):
    """A CPU model's settings carry no vLLM keys, so its baseline id is that of the settings
    as the planner wrote them (ids of earlier runs stay valid)."""
    config = from_dict(small_config, Path("."))
    model = config.model("SmolLM2-135M-Instruct")
    settings = server_settings(model, plan_model(model, config), config)
    assert settings.gpu_memory_utilization is None and settings.executable is None
    written = {
        "backend": "llama-cpp",
        "device": "cpu",
        "gpus": 0,
        "cpus": 2,
        "quantization": "gguf",
        "context_tokens": 4096,
        "server_args": ["--seed", "0"],
    }
    blob = json.dumps(written, sort_keys=True, separators=(",", ":")).encode()
    expected = hashlib.sha256(blob).hexdigest()[:8]
    assert baseline_id(model, settings) == f"SmolLM2-135M-Instruct__llama-cpp-g0-{expected}"


def test_an_hf_model_takes_its_servers_row_or_is_told_to_calibrate(small_config):
    """The table's GPU rows name their server: an 8B-class hf model takes the measured
    `transformers serve` row, a vLLM model of the same class vLLM's (ML.ENERGY), and an hf
    model of a class only vLLM has a row for takes vLLM's, with the preview's source saying
    to calibrate on an hf run."""
    config = _config(
        small_config,
        _model("hf-7b", 7.0, 16, 32, 8, backend="hf", benchmarks=["piqa"]),
        _model("vllm-7b", 7.0, 16, 32, 8, benchmarks=["piqa"]),
        _model("hf-32b", 32.0, 8, 64, 8, backend="hf", benchmarks=["piqa"]),
    )
    plan = plan_run(config)
    rates = {model: rates_of(plan, config, model) for model in plan.models}
    rows = {model: r.row for model, r in rates.items()}
    assert rows["hf-7b"] is not None and rows["hf-7b"].server == "hf"
    assert rows["vllm-7b"] is not None and rows["vllm-7b"].server == "vllm"
    assert rows["hf-32b"] is not None and rows["hf-32b"].server == "vllm"
    assert "calibrate on a run with backend hf" in rates["hf-32b"].note
    assert "calibrate" not in rates["hf-7b"].note + rates["vllm-7b"].note
    # vLLM decodes an 8B-class model 8-11 times faster than transformers serve on an H100
    ratio = rates["vllm-7b"].decode_tokens_per_s(32) / rates["hf-7b"].decode_tokens_per_s(32)
    assert 7 < ratio < 12
    sources = {rate.model: rate.source for rate in cost_preview(plan, config).rates}
    assert sources["hf-32b"] == rates["hf-32b"].note
