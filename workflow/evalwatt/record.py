"""A cell's record: what its jobs wrote, its energy terms, and its row of the final table.

The record (``energy/<cell>.json``) is the audit trail of one row: every number of the row
is there with the raw readings' files and the formula that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalwatt.config import Config
from evalwatt.energy.jobs import cell_energy
from evalwatt.layout import Layout
from evalwatt.plan import Plan
from evalwatt.results import DOMAINS, ENERGY_METHOD, SCHEMA_VERSION

_TERM_COLUMNS = {
    "inference_energy_j": "inference",
    "job_energy_j": "job",
    "pad_energy_j": "pad",
    "baseline_job_energy_j": "baseline_job",
    "baseline_pad_energy_j": "baseline_pad",
    "net_energy_j": "net",
    "method_gap_j": "gap",
    "judge_energy_j": "judge",
}
_PER_UNIT_COLUMNS = {
    "energy_per_question_wh": "inference_per_question",
    "net_energy_per_question_wh": "net_per_question",
    "energy_per_1k_output_tokens_wh": "inference_per_1k_output_tokens",
}


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _span(marks: dict[str, float], start: str, end: str) -> float | None:
    if start in marks and end in marks:
        return marks[end] - marks[start]
    return None


def job_id(result: dict[str, Any] | None) -> str | None:
    if result is None:
        return None
    slurm = result.get("slurm", {}).get("SLURM_JOB_ID")
    return slurm or f"local:{result['host']}:{result['marks']['job_start']:.0f}"


def energy_columns(energy: dict[str, Any]) -> dict[str, Any]:
    """Flatten the per-domain energy terms into the table's columns."""
    row: dict[str, Any] = {}
    for domain in DOMAINS:
        info = energy.get(domain, {"unavailable": "not computed"})
        reasons = []
        if "unavailable" in info:
            reasons.append(info["unavailable"])
            terms: dict[str, Any] = {}
            per: dict[str, Any] = {}
        else:
            terms, per = info["terms"], info["per_unit"]
        row[f"{domain}_energy_source"] = info.get("source")
        for column, term in _TERM_COLUMNS.items():
            value = terms.get(term, {}).get("energy_j")
            row[f"{domain}_{column}"] = value
            why = terms.get(term, {}).get("null_reason")
            if value is None and why and term != "judge":
                reasons.append(f"{term}: {why}")
        for column, key in _PER_UNIT_COLUMNS.items():
            row[f"{domain}_{column}"] = per.get(key, {}).get("value_wh")
        row[f"{domain}_method_gap_pct"] = info.get("gap_pct")
        row[f"{domain}_energy_null_reason"] = "; ".join(dict.fromkeys(reasons)) or None
    return row


def build_record(config: Config, plan: Plan, layout: Layout, cell_id: str) -> dict[str, Any]:
    """Assemble one cell's record from its job results (cell, baseline, judge)."""
    cell = plan.cells[cell_id]
    model = config.model(cell.model)
    mplan = plan.models[cell.model]
    bench = config.benchmarks[cell.benchmark]
    cell_dir = layout.run_dir("cell", cell_id)
    base_dir = layout.run_dir("baseline", cell.baseline)
    judge_dir = layout.run_dir("judge", cell_id) if cell.judge else None
    cell_result = _read(cell_dir / "result.json")
    base_result = _read(base_dir / "result.json")
    judge_result = _read(judge_dir / "result.json") if judge_dir else None

    generation = cell_result["generation"]
    scoring = judge_result["scoring"] if judge_result else cell_result.get("scoring", {})
    completed = generation["samples_completed"]
    energy = cell_energy(cell_dir, base_dir, judge_dir, completed, generation["output_tokens"])
    marks, bmarks = cell_result["marks"], base_result["marks"]
    row: dict[str, Any] = {
        "run": config.run,
        "cell_id": cell_id,
        "model": cell.model,
        "hf_id": model["hf_id"],
        "benchmark": cell.benchmark,
        "task": bench["task"],
        "temperature": cell.temperature,
        "top_p": cell.sampling.get("top_p"),
        "top_k": cell.sampling.get("top_k"),
        "max_tokens": cell.sampling.get("max_tokens"),
        "max_connections": cell.max_connections,
        "sample_limit": bench["limit"],
        "backend": model["backend"],
        "gpus": mplan.gpus,
        "cpus": mplan.cpus,
        "total_params_b": model["total_params_b"],
        "active_params_b": model["active_params_b"] or model["total_params_b"],
        "weight_bits": model["weight_bits"],
        "moe": model["moe"],
        "reasoning": model["reasoning"],
        "cluster": config.cluster["name"],
        "gpu_model": config.cluster["gpu_model"],
        "samples_total": generation["samples_total"],
        "samples_completed": completed,
        "score": scoring.get("score"),
        "score_stderr": scoring.get("score_stderr"),
        "score_metric": scoring.get("score_metric"),
        "scorer": scoring.get("scorer"),
        "scored_by": "judge job" if judge_result else "in-job",
        "judge_model": config.raw["judges"][cell.judge]["model"] if cell.judge else None,
        "input_tokens": generation["input_tokens"],
        "output_tokens": generation["output_tokens"],
        "load_duration_s": _span(marks, "load_start", "ready"),
        "inference_duration_s": _span(marks, "inference_start", "inference_end"),
        "pad_duration_s": _span(marks, "pad_start", "pad_end"),
        "job_duration_s": _span(marks, "job_start", "job_end"),
        "baseline_load_duration_s": _span(bmarks, "load_start", "ready"),
        "baseline_job_duration_s": _span(bmarks, "job_start", "job_end"),
        "judge_duration_s": _span(judge_result["marks"], "inference_start", "inference_end")
        if judge_result
        else None,
        **energy_columns(energy),
        "job_id": job_id(cell_result),
        "baseline_id": cell.baseline,
        "baseline_job_id": job_id(base_result),
        "judge_job_id": job_id(judge_result),
        "host": cell_result["host"],
        "energy_method": ENERGY_METHOD,
        "schema_version": SCHEMA_VERSION,
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "cell": cell_id,
        "row": row,
        "energy": energy,
        "raw": {
            "cell": str(cell_dir),
            "baseline": str(base_dir),
            "judge": str(judge_dir) if judge_dir else None,
            "cell_log": generation["log"],
            "scored_log": scoring.get("log"),
        },
        "marks": {
            "cell": marks,
            "baseline": bmarks,
            "judge": judge_result["marks"] if judge_result else None,
        },
    }
