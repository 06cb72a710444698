"""The audit trail: job by job, what ran where, on which devices, and how each energy number
of the final table was obtained. Written for a cluster admin who checks the numbers against
their own accounting (CEEMS, sacct)."""

from __future__ import annotations

import datetime as dt
import signal

from evalwatt.config import Config
from evalwatt.contracts.base import read_contract
from evalwatt.contracts.record import CellRecord, FamilyEnergy, FamilyUnavailable, JobRef
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.vocabulary import FAMILY_TITLES, Family, Mark
from evalwatt.layout import JobFiles
from evalwatt.results import SCHEMA_VERSION


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


def _job_lines(job: JobRef) -> list[str]:
    files = JobFiles(job.run_dir)
    result = read_contract(JobResult, files.result)
    marks, sampler = result.marks, result.sampler
    devices = []
    for source, info in sampler.traces.items():
        for dev in info.devices or ():
            devices.append(f"{source}: GPU {dev.nvml_index} {dev.uuid} ({dev.pci_bus_id})")
        if source != "nvml":
            devices.append(f"{source}: {info.zones or info.model}")
    unavailable = "; ".join(f"{k}: {v}" for k, v in sampler.unavailable.items()) or "none"
    slurm_id = result.scheduler_job_id or "– (not under Slurm)"
    lines = [
        f"- **{job.kind}** `{result.job_id}` — Slurm job {slurm_id}, "
        f"host `{result.host}`, CUDA_VISIBLE_DEVICES={result.cuda_visible_devices}",
        f"  - status {result.status}" + "".join(f"; {p}" for p in result.problems),
        f"  - from {_iso(marks.get(Mark.JOB_START))} to {_iso(marks.get(Mark.JOB_END))} "
        f"({marks[Mark.JOB_END] - marks[Mark.JOB_START]:.1f} s), padded "
        f"{marks[Mark.PAD_END] - marks[Mark.PAD_START]:.1f} s, "
        f"server {_exit(result.server.exit_code)}",
        f"  - sampled: {'; '.join(devices) or 'nothing'}; every {sampler.interval_s} s, "
        f"{sampler.rounds} rounds, {sampler.late_rounds} late "
        f"(max {sampler.max_late_s:.3f} s)",
        f"  - not sampled: {unavailable}",
        f"  - raw readings: `{files.root}/` ({JobFiles.describe()})",
    ]
    return lines


def _energy_lines(energy: dict[Family, FamilyEnergy | FamilyUnavailable]) -> list[str]:
    lines = []
    for family in Family:
        info = energy.get(family, FamilyUnavailable(unavailable="not computed"))
        if isinstance(info, FamilyUnavailable):
            lines.append(f"  - {FAMILY_TITLES[family]}: not available ({info.unavailable})")
            continue
        lines.append(f"  - {FAMILY_TITLES[family]} (source `{info.source}`):")
        for name, term in info.terms.items():
            value = (
                f"null: {term.null_reason}" if term.energy_j is None else f"{term.energy_j:.3f} J"
            )
            window = ""
            if term.window:
                a, b = term.window
                window = f", window {_iso(a)} → {_iso(b)} ({b - a:.2f} s)"
            extra = (
                f", edge extrapolated {term.extrapolated_s:.3f} s" if term.extrapolated_s else ""
            )
            lines.append(f"    - {name} = {term.formula} = {value}{window}{extra}")
    return lines


def audit_markdown(config: Config, records: list[CellRecord]) -> str:
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
    for record in sorted(records, key=lambda r: r.cell_id):
        out.append(f"## Cell `{record.cell_id}`")
        out.append("")
        for job in (record.jobs.cell, record.jobs.baseline, record.jobs.judge):
            if job is None:
                continue
            key = f"{job.kind}/{job.job_id}"
            if key in seen:
                out.append(f"- **{job.kind}** `{job.job_id}`: shared, described above")
                continue
            seen.add(key)
            out += _job_lines(job)
        out.append("- energy terms:")
        out += _energy_lines(record.energy)
        out.append("")
    return "\n".join(out) + "\n"
