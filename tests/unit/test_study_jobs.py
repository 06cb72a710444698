"""The study's config end to end, without a cluster: the DAG Snakemake builds and the vLLM jobs
it would submit (rendered for real, not run: vLLM and H100s are not available in CI)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evalwatt.base.layout import Layout
from evalwatt.config.load import load_config
from evalwatt.contracts.spec import JobSpec
from evalwatt.jobs.packs import judge_passes, model_packs
from evalwatt.jobs.render import render_script
from evalwatt.jobs.resolve import resolve_job
from evalwatt.plan.matrix import plan_run

REPO = Path(__file__).resolve().parents[2]
PEREN = REPO / "config" / "peren.yaml"


@pytest.fixture(scope="module")
def study():
    config = load_config(PEREN)
    config = config.replace(job=config.job.model_copy(update={"python": "/opt/ew/bin/python"}))
    return config, plan_run(config)


def _dry_run(configfile: Path, workdir: Path) -> dict[str, int]:
    """The jobs per rule of `snakemake -n` on a config (Snakemake's "Job stats")."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(configfile),
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "extended by additional config" not in out  # the demo config is replaced, not merged
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M)}


def _passes(config, plan) -> list:
    return judge_passes(plan, config, [c.id for c in plan.cells.values() if c.judge])


def test_dry_run_shows_the_whole_study_dag(study, tmp_path):
    """Per cell: a job per cell and per baseline, and the judge passes (one judge model, split
    by the time limit) instead of a judge job per judged cell."""
    config, plan = study
    counts = _dry_run(PEREN, tmp_path)
    assert len(plan.cells) == 522 and len(plan.baselines) == 22
    passes = len(_passes(config, plan))
    assert 1 <= passes < sum(1 for c in plan.cells.values() if c.judge)
    assert counts["run_job"] == len(plan.cells) + len(plan.baselines)
    assert counts["run_judge_pass"] == passes
    assert counts["render_job"] == counts["run_job"] + passes
    assert counts["cell_energy"] == len(plan.cells)


def test_per_model_dry_run_has_a_job_per_model_and_its_passes(study, tmp_path):
    config, plan = study
    data = yaml.safe_load(PEREN.read_text())
    data["execution"] = "per-model"
    data["models"] = str(PEREN.parent / data["models"])
    configfile = tmp_path / "per-model.yaml"
    configfile.write_text(yaml.safe_dump(data, sort_keys=False))
    counts = _dry_run(configfile, tmp_path / "run")
    models = model_packs(plan, config, plan.cells)
    assert len(plan.baselines) <= len(models) < len(plan.cells) // 5
    assert counts["run_job"] == len(models)
    assert counts["run_judge_pass"] == len(_passes(config, plan))
    assert counts["cell_energy"] == len(plan.cells)
    assert "collect_accounting" not in "".join(counts)


def test_a_model_job_asks_for_its_models_gpus_and_its_cells_time(study, tmp_path):
    config, plan = study
    layout = Layout(tmp_path / "results" / "peren")
    pack = next(
        p for p in model_packs(plan, config, plan.cells) if p.model.startswith("Llama-3.1-70B")
    )
    job = resolve_job(config, plan, layout, "model", pack.id, pack)
    script = render_script(job)
    assert "#SBATCH --gpus=4\n" in script and "#SBATCH --cpus-per-task=96\n" in script
    planner = config.planner
    asked = max(planner.min_runtime_min, math.ceil(pack.estimate_s * planner.runtime_margin / 60))
    assert job.resources.runtime_minutes(1) == min(config.cluster.time_limit_min, asked)
    assert [c.cell_id for c in job.spec.pack.cells] == list(pack.cells)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def _render(study, kind, job_id, tmp_path):
    config, plan = study
    job = resolve_job(config, plan, Layout(tmp_path / "results" / "peren"), kind, job_id)
    return job.spec, render_script(job)


def test_a_four_gpu_cell_asks_for_four_gpus_and_runs_vllm_tensor_parallel(study, tmp_path):
    spec, script = _render(study, "cell", "Llama-3.1-70B-Instruct__piqa__t0__c10", tmp_path)
    assert "#SBATCH --gpus=4\n" in script
    assert "#SBATCH --cpus-per-task=96\n" in script
    assert "#SBATCH --constraint=h100\n" in script
    argv = spec.server.argv
    assert argv[:3] == ("/opt/ew/bin/vllm", "serve", "{model_path}")
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.9"
    assert argv[argv.index("--served-model-name") + 1] == "Llama-3.1-70B-Instruct"
    assert spec.model.path == "$DSDIR/HuggingFace_Models/meta-llama/Llama-3.1-70B-Instruct"
    assert spec.evaluation.max_connections == 10
    assert spec.evaluation.score_in_job is True
    assert spec.pad.model_dump() == {"accounting_window_s": 300, "margin_s": 30}
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_quantized_and_family_settings_reach_the_job(study, tmp_path):
    spec, _ = _render(
        study, "cell", "Qwen3-30B-A3B-Thinking-2507__writingbench__t0.7__c100", tmp_path
    )
    ev = spec.evaluation
    # qwen3+reasoning sampling, WritingBench's own max tokens, judged in a separate job
    assert (ev.top_p, ev.top_k, ev.max_tokens) == (0.95, 20, 16000)
    assert ev.score_in_job is False
    fp8, _ = _render(study, "cell", "Qwen3-30B-A3B-Instruct-2507-FP8__piqa__t0__c10", tmp_path)
    argv = fp8.server.argv
    assert argv[argv.index("--quantization") + 1] == "fp8"


def test_the_judge_job_runs_the_judge_model(study, tmp_path):
    spec, script = _render(
        study, "judge", "Qwen2.5-7B-Instruct__simpleqa_verified__t0__c10", tmp_path
    )
    assert spec.model.name == "Qwen3-Next-80B-A3B-Instruct"
    assert "#SBATCH --gpus=4\n" in script
    assert spec.judging.temperature == 0.2
    assert str(spec.judging.cells[0].cell_result).endswith(
        "cells/Qwen2.5-7B-Instruct__simpleqa_verified__t0__c10/result.json"
    )
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec  # round trip
