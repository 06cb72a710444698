"""Synthetic final tables for the figure, derived-column and GLMM tests.

``study_table`` has the study's shape (shared/METHOD.md §1, config/peren_models.tsv): its 22
models, 6 benchmarks and the model-benchmark pairs the study ran. Energy per question is drawn
from the study's own GLMM (annex 4) with the coefficients given, so the same table serves the
parameter-recovery test. Every other number (scores, durations, tokens) is made up but
plausible: these tables test drawing and fitting, not results.

``demo_table`` looks like the CPU demo's table (one tiny GGUF model on a CPU, two benchmarks,
two temperatures): GPU columns null with a reason, energy in the ``cpu_est_*`` family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from evalwatt.table.final import ROW_SCHEMA_VERSION, to_table

# name, total params (B), active params (B), weight bits, MoE, reasoning, benchmarks
STUDY_MODELS: list[tuple[str, float, float, int, bool, bool, str]] = [
    (
        "Llama-3.1-70B-Instruct",
        70.55,
        70.55,
        16,
        False,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Qwen2.5-32B-Instruct",
        32.76,
        32.76,
        16,
        False,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "gemma-3-27b-it",
        27.43,
        27.43,
        16,
        False,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Qwen2.5-7B-Instruct",
        7.62,
        7.62,
        16,
        False,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Ministral-8B-Instruct-2410",
        8.02,
        8.02,
        16,
        False,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Mistral-Small-3.2-24B-Instruct-2506",
        24.01,
        24.01,
        16,
        False,
        False,
        "zerobench,simpleqa_verified,piqa,humaneval",
    ),
    (
        "Pixtral-Large-Instruct-2411",
        124.00,
        124.00,
        16,
        False,
        False,
        "zerobench,simpleqa_verified,piqa",
    ),
    ("Qwen2.5-VL-7B-Instruct", 8.29, 8.29, 16, False, False, "zerobench,simpleqa_verified,piqa"),
    ("Codestral-22B-v0.1", 22.25, 22.25, 16, False, False, "humaneval"),
    ("Llama3-Med42-70B", 70.55, 70.55, 16, False, False, "healthbench"),
    (
        "GLM-4.5-Air",
        106.85,
        13.42,
        16,
        True,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Qwen3-Next-80B-A3B-Instruct",
        79.67,
        3.88,
        16,
        True,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Qwen3-30B-A3B-Instruct-2507",
        30.53,
        3.35,
        16,
        True,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    ("GLM-4.5V", 107.71, 14.28, 16, True, False, "zerobench,simpleqa_verified,piqa"),
    ("Qwen3-VL-30B-A3B-Instruct", 31.07, 3.89, 16, True, False, "zerobench,simpleqa_verified,piqa"),
    ("Qwen3-Coder-30B-A3B-Instruct", 30.53, 3.35, 16, True, False, "humaneval"),
    (
        "Qwen3-30B-A3B-Instruct-2507-FP8",
        30.53,
        3.35,
        8,
        True,
        False,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "QwQ-32B-AWQ",
        32.76,
        32.76,
        4,
        False,
        True,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Qwen3-VL-30B-A3B-Instruct-FP8",
        31.07,
        3.89,
        8,
        True,
        False,
        "zerobench,simpleqa_verified,piqa",
    ),
    (
        "DeepSeek-R1-Distill-Qwen-32B",
        32.76,
        32.76,
        16,
        False,
        True,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "Qwen3-30B-A3B-Thinking-2507",
        30.53,
        3.35,
        16,
        True,
        True,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
    (
        "QwQ-32B",
        32.76,
        32.76,
        16,
        False,
        True,
        "simpleqa_verified,piqa,healthbench,humaneval,writingbench",
    ),
]

# benchmark: samples, score metric, score range, scored_by
BENCHMARKS: dict[str, tuple[int, str, tuple[float, float], str]] = {
    "simpleqa_verified": (1000, "accuracy", (0.02, 0.45), "judge job"),
    "zerobench": (434, "accuracy", (0.0, 0.08), "in-job"),
    "piqa": (1838, "accuracy", (0.75, 0.95), "in-job"),
    "healthbench": (5000, "mean", (0.2, 0.6), "judge job"),
    "humaneval": (164, "accuracy", (0.5, 0.97), "in-job"),
    "writingbench": (128, "mean", (5.0, 8.5), "judge job"),
}


@dataclass(frozen=True)
class Coefficients:
    """The GLMM's coefficients (log scale, E/P in mWh per billion parameters per question).

    The model takes δ and γ as deviations around zero, so they sum to zero here (γ over the
    benchmarks that reasoning models ran): α and β_reasoning are then the values to recover,
    not α plus the mean of δ."""

    alpha: float = 1.49
    beta_quantized: float = -0.50
    beta_reasoning: float = 0.65
    beta_moe: float = -0.60
    delta: dict[str, float] = field(
        default_factory=lambda: {
            "simpleqa_verified": -0.8,
            "zerobench": 0.3,
            "piqa": -1.2,
            "healthbench": 0.6,
            "humaneval": 0.2,
            "writingbench": 0.9,
        }
    )
    gamma: dict[str, float] = field(
        default_factory=lambda: {
            "simpleqa_verified": -0.5,
            "zerobench": 0.0,
            "piqa": -0.2,
            "healthbench": 0.0,
            "humaneval": 0.8,
            "writingbench": -0.1,
        }
    )
    shape: float = 8.0  # Gamma shape: coefficient of variation 1/sqrt(shape)


STUDY = Coefficients()


def gpus_for(total_params_b: float, weight_bits: int) -> int:
    """The study's GPU count: VRAM_GB = P x 4 / (32 / Q) x 1.3 on 80 GB GPUs, 3 -> 4."""
    need = math.ceil(total_params_b * 4 / (32 / weight_bits) * 1.3 / 80)
    return 4 if need == 3 else max(need, 1)


def cell_row(model="m", benchmark="b", temperature=0.0, conns=10, duration=None, **extra):
    """A row with only the columns that identify its cell and its duration (the others null)."""
    return {
        "run": "unit",
        "cell_id": f"{model}__{benchmark}__t{temperature:g}__c{conns}",
        "model": model,
        "benchmark": benchmark,
        "temperature": temperature,
        "max_connections": conns,
        "inference_duration_s": duration,
        "schema_version": ROW_SCHEMA_VERSION,
        "gpus_allocated": None,
        "gpus_measured": None,
        **extra,
    }


def _row(**columns: object) -> dict[str, object]:
    return {"run": "synthetic", **columns}


def study_table(
    *,
    seed: int = 0,
    coefficients: Coefficients = STUDY,
    temperatures: tuple[float, ...] = (0.0,),
    max_connections: tuple[int, ...] = (100,),
) -> pa.Table:
    """One row per (model, benchmark, temperature, max_connections) of the study's matrix."""
    rng = np.random.default_rng(seed)
    c = coefficients
    rows = []
    for name, total, active, bits, moe, reasoning, benches in STUDY_MODELS:
        gpus = gpus_for(total, bits)
        for bench in benches.split(","):
            samples, metric, (lo, hi), scored_by = BENCHMARKS[bench]
            quantized = bits < 16
            log_mu = (
                c.alpha
                + c.delta[bench]
                + c.beta_quantized * quantized
                + (c.beta_reasoning + c.gamma[bench]) * reasoning
                + c.beta_moe * moe
            )
            score = float(rng.uniform(lo, hi))
            for temperature in temperatures:
                for conns in max_connections:
                    # E/P ~ Gamma(shape, mean mu), in mWh per billion parameters per question
                    e_per_p = rng.gamma(c.shape, math.exp(log_mu) / c.shape)
                    wh_per_q = float(e_per_p * total / 1000.0)
                    # 100 connections is best: the energy follows the model exactly there
                    slow = 1.0 + 0.2 * abs(math.log10(conns / 100))
                    watts = gpus * float(rng.uniform(350, 550))
                    energy_j = wh_per_q * samples * 3600 * slow
                    duration = energy_j / watts
                    tokens = int(energy_j / (0.05 * gpus) * (4 if reasoning else 1))
                    load, pad = 60.0 + total, max(0.0, 300.0 - duration - 60.0 - total)
                    per_q = energy_j / 3600 / samples
                    rows.append(
                        _row(
                            cell_id=f"{name}__{bench}__t{temperature:g}__c{conns}",
                            model=name,
                            benchmark=bench,
                            temperature=temperature,
                            max_connections=conns,
                            gpus=gpus,
                            total_params_b=total,
                            active_params_b=active,
                            weight_bits=bits,
                            moe=moe,
                            reasoning=reasoning,
                            samples_total=samples,
                            samples_completed=samples,
                            score=min(score + float(rng.normal(0, 0.01)) * temperature, hi),
                            score_metric=metric,
                            scored_by=scored_by,
                            output_tokens=tokens,
                            load_duration_s=load,
                            inference_duration_s=duration,
                            pad_duration_s=pad,
                            job_duration_s=30.0 + load + duration + pad,
                            gpu_energy_source="nvml",
                            gpu_inference_energy_j=energy_j,
                            gpu_energy_per_question_wh=per_q,
                            gpu_net_energy_per_question_wh=per_q * 1.05,
                            gpu_energy_per_1k_output_tokens_wh=energy_j / 3.6 / tokens,
                            cpu_energy_null_reason="RAPL not readable on this cluster",
                        )
                    )
    return to_table(rows)


def demo_table() -> pa.Table:
    """Like the CPU demo's final table: SmolLM2 on llama.cpp, no GPU, CPU-time estimate."""
    rows = []
    for bench, metric, score, samples in (
        ("humaneval", "accuracy", 0.0, 3),
        ("writingbench", "mean", 1.5, 2),
    ):
        for temperature, energy_j, duration in ((0.0, 410.0, 20.5), (0.7, 380.0, 19.0)):
            rows.append(
                _row(
                    cell_id=f"SmolLM2-135M-Instruct__{bench}__t{temperature:g}__c2",
                    model="SmolLM2-135M-Instruct",
                    benchmark=bench,
                    temperature=temperature,
                    max_connections=2,
                    gpus=0,
                    total_params_b=0.135,
                    active_params_b=0.135,
                    weight_bits=4,
                    moe=False,
                    reasoning=False,
                    samples_total=samples,
                    samples_completed=samples,
                    score=score if bench == "writingbench" else 1 / 3 * (temperature == 0),
                    score_metric=metric,
                    scored_by="in-job" if bench == "humaneval" else "judge job",
                    output_tokens=int(duration * 40),
                    load_duration_s=0.6,
                    inference_duration_s=duration,
                    pad_duration_s=3.0,
                    job_duration_s=duration + 6.0,
                    gpu_energy_null_reason="no GPU: cluster local-cpu has gpus_per_node 0",
                    cpu_energy_null_reason="RAPL not readable (permission denied)",
                    cpu_est_energy_source="cpu-model",
                    cpu_est_inference_energy_j=energy_j,
                    cpu_est_energy_per_question_wh=energy_j / 3600 / samples,
                    cpu_est_energy_per_1k_output_tokens_wh=energy_j / 3.6 / (duration * 40),
                )
            )
    return to_table(rows)
