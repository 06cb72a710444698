"""The audit trail: job by job, what ran where, on which devices, and how each energy number
of the final table was obtained. Written for a cluster admin who checks the numbers against
their own accounting (CEEMS, sacct)."""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path
from typing import Any

from evalwatt.config import Config
from evalwatt.results import DOMAIN_TITLES, DOMAINS, SCHEMA_VERSION


def _iso(t: float | None) -> str:
    if t is None:
        return "–"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _exit(code: int) -> str:
    """A server's exit code in words: -15 is the SIGTERM the job sends to stop it."""
    if code == -signal.SIGTERM:
        return "stopped by the job (SIGTERM)"
    if code == -signal.SIGKILL:
        return "killed after the grace period (SIGKILL)"
    return f"exited with code {code}"


def _job_lines(kind: str, run_dir: str) -> list[str]:
    result = json.loads((Path(run_dir) / "result.json").read_text(encoding="utf-8"))
    marks = result["marks"]
    sampler = result["sampler"]
    devices = []
    for source, info in sampler["traces"].items():
        for dev in info.get("devices", []):
            devices.append(f"{source}: GPU {dev['nvml_index']} {dev['uuid']} ({dev['pci_bus_id']})")
        if source != "nvml":
            devices.append(f"{source}: {info.get('zones') or info.get('model')}")
    unavailable = "; ".join(f"{k}: {v}" for k, v in sampler["unavailable"].items()) or "none"
    slurm_id = result["slurm"].get("SLURM_JOB_ID", "– (not under Slurm)")
    lines = [
        f"- **{kind}** `{result['id']}` — Slurm job {slurm_id}, "
        f"host `{result['host']}`, CUDA_VISIBLE_DEVICES={result['cuda_visible_devices']}",
        f"  - from {_iso(marks.get('job_start'))} to {_iso(marks.get('job_end'))} "
        f"({marks['job_end'] - marks['job_start']:.1f} s), padded "
        f"{marks['pad_end'] - marks['pad_start']:.1f} s, "
        f"server {_exit(result['server']['exit_code'])}",
        f"  - sampled: {'; '.join(devices) or 'nothing'}; every {sampler['interval_s']} s, "
        f"{sampler['rounds']} rounds, {sampler['late_rounds']} late "
        f"(max {sampler['max_late_s']:.3f} s)",
        f"  - not sampled: {unavailable}",
        f"  - raw readings: `{run_dir}/` (timeline.json, trace-*.parquet, server.log, eval/)",
    ]
    return lines


def _energy_lines(energy: dict[str, Any]) -> list[str]:
    lines = []
    for domain in DOMAINS:
        info = energy.get(domain, {})
        if "unavailable" in info:
            lines.append(f"  - {DOMAIN_TITLES[domain]}: not available ({info['unavailable']})")
            continue
        lines.append(f"  - {DOMAIN_TITLES[domain]} (source `{info['source']}`):")
        for name, term in info["terms"].items():
            value = (
                "null: " + str(term["null_reason"])
                if term["energy_j"] is None
                else f"{term['energy_j']:.3f} J"
            )
            window = ""
            if term.get("window"):
                a, b = term["window"]
                window = f", window {_iso(a)} → {_iso(b)} ({b - a:.2f} s)"
            extra = (
                f", edge extrapolated {term['extrapolated_s']:.3f} s"
                if term.get("extrapolated_s")
                else ""
            )
            lines.append(f"    - {name} = {term['formula']} = {value}{window}{extra}")
    return lines


def audit_markdown(config: Config, records: list[dict[str, Any]]) -> str:
    out = [
        f"# Audit trail of run `{config.run}`",
        "",
        f"schema_version {SCHEMA_VERSION}. Cluster `{config.cluster['name']}` "
        f"({config.cluster['gpu_model']}), accounting window "
        f"{config.cluster['accounting_window_s']} s + margin {config.cluster['pad_margin_s']} s.",
        "Times are UTC. Energy is the difference of cumulative counters, linearly interpolated "
        "at the marks (docs/methodology.md). Estimates are labelled as such.",
        "",
    ]
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: r["cell"]):
        out.append(f"## Cell `{record['cell']}`")
        out.append("")
        for kind in ("cell", "baseline", "judge"):
            run_dir = record["raw"].get(kind)
            if not run_dir:
                continue
            if run_dir in seen:
                out.append(f"- **{kind}** `{Path(run_dir).name}`: shared, described above")
                continue
            seen.add(run_dir)
            out += _job_lines(kind, run_dir)
        out.append("- energy terms:")
        out += _energy_lines(record["energy"])
        out.append("")
    return "\n".join(out) + "\n"
