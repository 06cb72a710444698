"""The audit: job by job, what ran where, on which devices, what every energy source says
about it, where the sources disagree, and how each number of the final table was obtained.
Written for a cluster admin who checks the numbers against their own accounting (CEEMS,
Prometheus, sacct); docs/audit.md is the page to follow.

Two files (``evalwatt.base.layout.Layout.audit``): ``audit/audit.parquet``, one row per job
(``AUDIT_COLUMNS``), and ``audit/audit.md``, the same with the formulas. Every number is
recomputed here from the job's raw files (its NVML trace, ``accounting/<source>.json``), never
copied from a summary; tests/unit/test_audit.py recomputes them again independently.

The reference is the in-job NVML energy counter over the job (``job_start..job_end``). A
source's gap is ``100 x (source - nvml) / nvml`` on its PUE-free figure; a job is flagged when a
gap exceeds ``accounting.gap_flag_pct`` (10 % by default), and for every other finding below.
sacct is node-level and CEEMS's host share is modelled: both are shown, never compared.
"""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evalwatt.base.atomic import atomic_path, write_text
from evalwatt.base.layout import JobFiles
from evalwatt.base.vocabulary import FAMILY_TITLES, Family, Mark
from evalwatt.config.load import Config
from evalwatt.config.section import shown
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.record import CellRecord, FamilyEnergy, FamilyUnavailable, JobRef
from evalwatt.contracts.result import JobResult
from evalwatt.energy.cluster.figures import cluster_sources
from evalwatt.energy.cluster.sacct import SacctSource
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.integrity import (
    Finding,
    device_findings,
    failed,
    sampler_findings,
    window_findings,
)
from evalwatt.energy.readings import job_sources
from evalwatt.energy.sources import FIGURE_WINDOWS, JOB_WINDOW, Unavailable
from evalwatt.energy.trace import TraceError
from evalwatt.sampling.probes import parse_visible_devices
from evalwatt.table.final import SCHEMA_VERSION

AUDIT_SCHEMA_VERSION = 1
NO_PROCESSES = (
    "not recorded: the in-job sampler does not list the processes running on the job's GPUs "
    "(NVML's process list is not sampled)"
)


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
    for name, fig in job.accounting.items():
        term = fig.terms["job"]
        value = (
            f"{term.energy_j:.1f} J" if term.energy_j is not None else f"null: {term.null_reason}"
        )
        reported = "–" if fig.reported_j is None else f"{fig.reported_j:.1f} J"
        lines.append(
            f"  - {name} ({fig.scope}, {fig.status}): job {value}; as reported {reported}"
            f"{f', PUE {fig.pue:g} divided out' if fig.pue and fig.includes_pue else ''}; "
            f"raw `{fig.raw_file}`"
        )
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


def audit_markdown(
    config: Config, records: list[CellRecord], rows: list[dict[str, Any]] | None = None
) -> str:
    if rows is None:
        rows = audit_rows(config, records)
    out = [
        f"# Audit trail of run `{config.run}`",
        "",
        f"schema_version {SCHEMA_VERSION}. Cluster `{config.cluster.name}` "
        f"({config.cluster.gpu_model}), accounting window "
        f"{shown(config.cluster.accounting_window_s)} s + margin "
        f"{shown(config.cluster.pad_margin_s)} s.",
        "Times are UTC. Energy is the difference of cumulative counters, linearly interpolated "
        "at the marks (docs/methodology.md). Estimates are labelled as such. Every number can "
        "be recomputed from the raw files named below (docs/audit.md says how); the same "
        "rows are in audit.parquet.",
        "",
        *sources_markdown(rows, Settings.of(config).gap_flag_pct),
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


# --- the sources side by side, one row per job --------------------------------------------------

_F, _S, _I, _B = pa.float64(), pa.string(), pa.int64(), pa.bool_()
# (column, Arrow type, meaning). Energies in joules; gaps in percent of the NVML figure.
AUDIT_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("run", _S, "run name"),
    ("kind", _S, "cell, baseline or judge"),
    ("job_id", _S, "evalwatt's id of the job"),
    ("cells", _S, "the cells whose numbers use this job"),
    ("baseline_id", _S, "the load-only baseline subtracted from a cell (its job id)"),
    ("scheduler_job_id", _S, "Slurm's job id; null outside Slurm"),
    ("host", _S, "node the job ran on (from the job)"),
    ("sacct_nodes", _S, "nodes Slurm gave the job (sacct NodeList)"),
    ("gpus_planned", _I, "GPUs the plan asked for"),
    ("gpus_allocated", _I, "GPUs Slurm gave the job (CUDA_VISIBLE_DEVICES)"),
    ("gpus_measured", _I, "GPUs the NVML sampler summed"),
    ("gpu_uuids", _S, "UUIDs of the GPUs sampled"),
    ("elapsed_s", _F, "job_start..job_end of the job's timeline"),
    ("slurm_elapsed_s", _F, "Slurm's ElapsedRaw (sacct)"),
    ("cutoff_s", _F, "cluster.accounting_window_s: the shortest job the accounting keeps"),
    ("under_cutoff", _B, "elapsed_s below cutoff_s: the cluster's accounting may ignore it"),
    ("pad_s", _F, "padding sleep, pad_start..pad_end"),
    ("pad_requested_s", _F, "padding the job asked for"),
    ("nvml_job_j", _F, "NVML energy counter over job_start..job_end (the reference)"),
    ("nvml_load_j", _F, "NVML over load_start..ready"),
    ("nvml_inference_j", _F, "NVML over inference_start..inference_end"),
    ("nvml_pad_j", _F, "NVML over pad_start..pad_end"),
    ("nvml_null_reason", _S, "why nvml_job_j is null"),
    ("counter_resets", _I, "backward steps of the NVML counter over the job"),
    ("sampling_gaps", _I, "windows with a gap between NVML samples over the limit"),
    ("late_rounds", _I, "sampler rounds that started late"),
    ("integrity", _S, "the failed integrity findings (evalwatt.energy.integrity)"),
    ("other_processes", _S, "other processes seen on the job's GPUs"),
    ("other_processes_null_reason", _S, "why other_processes is null"),
    ("pue", _F, "accounting.pue: the PUE divided out of CEEMS figures; null: unknown"),
]
for _src, _p in (("ceems-api", "ceems"), ("prometheus", "prometheus"), ("sacct", "sacct")):
    AUDIT_COLUMNS += [
        (f"{_p}_status", _S, f"{_src}: ok, unavailable, error, or null when not collected"),
        (f"{_p}_reported_j", _F, f"{_src}: job total as reported (PUE included if any)"),
        (f"{_p}_job_j", _F, f"{_src}: job total, PUE removed (compared with NVML)"),
        (f"{_p}_null_reason", _S, f"{_src}: why {_p}_job_j is null"),
        (f"{_p}_gap_pct", _F, f"{_src}: 100 x ({_p}_job_j - nvml_job_j) / nvml_job_j"),
        (f"{_p}_gap_null_reason", _S, f"{_src}: why the gap is null"),
    ]
AUDIT_COLUMNS += [
    ("ceems_span_extra_s", _F, "seconds of CEEMS's unit beyond job_start..job_end"),
    ("ceems_host_j", _F, "CEEMS's modelled share of host power (CPU), as reported"),
    ("prometheus_load_j", _F, "Prometheus over load_start..ready, PUE removed"),
    ("prometheus_inference_j", _F, "Prometheus over inference_start..inference_end, PUE removed"),
    ("prometheus_pad_j", _F, "Prometheus over pad_start..pad_end, PUE removed"),
    ("sacct_exclusive", _B, "sacct: no other job on the node while this one ran"),
    ("sacct_exclusive_detail", _S, "sacct: what the exclusivity check saw"),
    ("gap_flag_pct", _F, "accounting.gap_flag_pct: the threshold of the flags"),
    ("flagged", _B, "any flag below"),
    ("flags", _S, "what an admin should look at, one per line"),
]
AUDIT_SCHEMA = pa.schema(
    [pa.field(name, kind, metadata={"doc": doc}) for name, kind, doc in AUDIT_COLUMNS],
    metadata={"evalwatt.audit_schema_version": str(AUDIT_SCHEMA_VERSION)},
)
_PREFIX = {"ceems-api": "ceems", "prometheus": "prometheus", "sacct": "sacct"}


@dataclass(frozen=True, kw_only=True)
class AuditJob:
    """One job of the run, once, with the cells that use it."""

    kind: str
    job_id: str
    cells: tuple[str, ...]
    """The cells whose numbers use the job (a baseline serves several)."""
    run_dir: Path
    baseline_id: str | None
    """A cell job's baseline; None for a baseline or a judge."""
    gpus_planned: int | None
    """GPUs the plan asked for; None for a judge job."""


def audit_jobs(records: Iterable[CellRecord]) -> list[AuditJob]:
    """Every job behind the records, once: baselines serve several cells."""
    jobs: dict[tuple[str, str], AuditJob] = {}
    for r in sorted(records, key=lambda r: r.cell_id):
        for ref in (r.jobs.cell, r.jobs.baseline, r.jobs.judge):
            if ref is None:
                continue
            key = (ref.kind, ref.job_id)
            old = jobs.get(key)
            cells = (*old.cells, r.cell_id) if old else (r.cell_id,)
            jobs[key] = AuditJob(
                kind=ref.kind,
                job_id=ref.job_id,
                run_dir=Path(ref.run_dir),
                cells=cells,
                baseline_id=r.row.baseline_id if ref.kind == "cell" else None,
                gpus_planned=r.row.gpus if ref.kind != "judge" else None,
            )
    return list(jobs.values())


def _window_j(source: Any, marks: Mapping[str, float], name: str) -> tuple[float | None, str]:
    a, b = FIGURE_WINDOWS[name]
    if a not in marks or b not in marks:
        return None, f"no mark {a} or {b}"
    try:
        return source.window(marks[a], marks[b]).energy_j, ""
    except (Unavailable, TraceError) as exc:
        return None, str(exc)


def _gap(value: float | None, reference: float | None, why: str | None) -> tuple[Any, Any]:
    if value is None:
        return None, why or "no figure"
    if not reference:
        return None, "no NVML reference"
    return 100.0 * (value - reference) / reference, None


def _cluster_columns(
    settings: Settings, job_dir: Path, elapsed_s: float, nvml_job_j: float | None
) -> tuple[dict[str, Any], list[str]]:
    """The cluster sources' columns of one job, from their raw files only, and their flags."""
    sources, figures = cluster_sources(job_dir, settings) if settings.sources else ({}, {})
    row: dict[str, Any] = {}
    flags: list[str] = []
    for name, fig in figures.items():
        p, job_term = _PREFIX[name], fig.terms["job"]
        row[f"{p}_status"], row[f"{p}_reported_j"] = fig.status, fig.reported_j
        row[f"{p}_job_j"], row[f"{p}_null_reason"] = job_term.energy_j, job_term.null_reason
        if fig.status == "error":
            flags.append(f"{name}: {fig.detail}")
        if name == "sacct":
            row["sacct_gap_null_reason"] = (
                "node level (every device of the node): not comparable with the GPUs' energy"
            )
            row["sacct_exclusive"] = fig.exclusive
            row["sacct_exclusive_detail"] = fig.exclusive_detail
            if fig.exclusive is False:
                flags.append(f"sacct: {fig.exclusive_detail}")
            continue
        gap, gap_why = _gap(job_term.energy_j, nvml_job_j, job_term.null_reason)
        row[f"{p}_gap_pct"], row[f"{p}_gap_null_reason"] = gap, gap_why
        if gap is not None and abs(gap) > settings.gap_flag_pct:
            flags.append(
                f"{name}: {gap:+.1f} % from the NVML counter over the job (flag above "
                f"{settings.gap_flag_pct:g} %)"
            )
        if name == "ceems-api":
            row["ceems_host_j"] = fig.host_j
            if fig.span:
                a, b = fig.span
                row["ceems_span_extra_s"] = (b - a) - elapsed_s
        if name == "prometheus":
            for w in ("load", "inference", "pad"):
                row[f"prometheus_{w}_j"] = fig.terms[w].energy_j
    sacct = sources.get("sacct")
    if isinstance(sacct, SacctSource):  # its figures are "ok": the row is read
        row["sacct_nodes"], row["slurm_elapsed_s"] = sacct.job_row.nodes, sacct.job_row.elapsed_s
    return row, flags


def audit_row(settings: Settings, run: str, job: AuditJob) -> dict[str, Any]:
    """One job's row, recomputed from its raw files."""
    result = read_contract(JobResult, JobFiles(job.run_dir).result)
    marks = {str(k): v for k, v in result.marks.items()}
    row: dict[str, Any] = {name: None for name, _, _ in AUDIT_COLUMNS}
    flags: list[str] = []
    elapsed = marks[Mark.JOB_END] - marks[Mark.JOB_START]
    nvml_info = result.sampler.traces.get("nvml")
    visible = parse_visible_devices(result.cuda_visible_devices)
    row.update(
        run=run,
        kind=job.kind,
        job_id=job.job_id,
        cells=", ".join(job.cells),
        baseline_id=job.baseline_id,
        scheduler_job_id=result.scheduler_job_id,
        host=result.host,
        gpus_planned=job.gpus_planned,
        gpus_allocated=len(visible) if visible is not None else None,
        gpu_uuids=", ".join(d.uuid for d in nvml_info.devices or ()) if nvml_info else None,
        elapsed_s=elapsed,
        cutoff_s=settings.cutoff_s,
        under_cutoff=settings.cutoff_s > 0 and elapsed < settings.cutoff_s,
        pad_s=marks[Mark.PAD_END] - marks[Mark.PAD_START]
        if Mark.PAD_END in marks and Mark.PAD_START in marks
        else None,
        pad_requested_s=result.pad_requested_s,
        late_rounds=result.sampler.late_rounds,
        other_processes=None,
        other_processes_null_reason=NO_PROCESSES,
        pue=settings.pue,
        gap_flag_pct=settings.gap_flag_pct,
    )
    if row["under_cutoff"]:
        flags.append(
            f"ran {elapsed:.0f} s, under the accounting cutoff of {settings.cutoff_s:g} s: "
            f"the cluster may not account it; check {settings.padding_hint()}"
        )
    # the reference: the in-job NVML counter
    traces, why_not = job_sources(job.run_dir)
    nvml = traces.get(Family.GPU)
    if nvml is None:
        row["nvml_null_reason"] = why_not.get(Family.GPU, "not sampled")
    else:
        trace = nvml.trace
        row["gpus_measured"] = len(trace.series)
        job_j, why = _window_j(nvml, marks, "job")
        row["nvml_job_j"], row["nvml_null_reason"] = job_j, why or None
        for w in ("load", "inference", "pad"):
            row[f"nvml_{w}_j"] = _window_j(nvml, marks, w)[0]
        start, end = marks[Mark.JOB_START], marks[Mark.JOB_END]
        steps = [s.backward_steps(start, end) for s in trace.series.values()]
        row["counter_resets"] = sum(len(st) for st in steps)
        findings: list[Finding] = [
            *device_findings(trace, "nvml"),
            *window_findings(trace, marks, "nvml", [JOB_WINDOW]),
            *sampler_findings(result.sampler.model_dump(), trace, "nvml"),
        ]
        row["sampling_gaps"] = sum(1 for f in findings if f.ok is False and "sample gaps" in f.name)
        bad = failed(findings)
        row["integrity"] = "; ".join(f"{f.name}: {f.detail}" for f in bad) or None
        flags += [f"{f.name}: {f.detail}" for f in bad]
    allocated, measured = row["gpus_allocated"], row["gpus_measured"]
    if allocated is not None and measured is not None and allocated != measured:
        flags.append(f"{measured} GPU(s) measured, {allocated} allocated")
    # the cluster's sources, from their raw files only
    columns, cluster_flags = _cluster_columns(settings, job.run_dir, elapsed, row["nvml_job_j"])
    row.update(columns)
    flags += cluster_flags
    row["flags"] = "\n".join(flags) or None
    row["flagged"] = bool(flags)
    return row


def audit_rows(config: Config, records: Iterable[CellRecord]) -> list[dict[str, Any]]:
    settings = Settings.of(config)
    return [audit_row(settings, config.run, job) for job in audit_jobs(records)]


def audit_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=AUDIT_SCHEMA)


def _num(value: Any, fmt: str = ".0f") -> str:
    return "–" if value is None else format(value, fmt)


def sources_markdown(rows: list[dict[str, Any]], threshold: float) -> list[str]:
    """The side-by-side table and the flags, for audit.md."""
    out = [
        "## Sources side by side",
        "",
        f"Job totals in J over job_start..job_end; gaps in % of the NVML counter, flagged "
        f"above {threshold:g} % (**bold**). PUE-free figures; sacct is node level.",
        "",
        "| job | Slurm id | host | elapsed s | GPUs alloc/meas | NVML | CEEMS API | gap | "
        "Prometheus | gap | sacct (node) | flags |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def gap(r: dict[str, Any], p: str) -> str:
        v = r[f"{p}_gap_pct"]
        if v is None:
            return "–"
        text = f"{v:+.1f} %"
        return f"**{text}**" if abs(v) > threshold else text

    for r in rows:
        out.append(
            f"| {r['kind']} `{r['job_id']}` | {r['scheduler_job_id'] or '–'} | {r['host']} | "
            f"{r['elapsed_s']:.0f} | {_num(r['gpus_allocated'], 'd')}/"
            f"{_num(r['gpus_measured'], 'd')} | {_num(r['nvml_job_j'])} | "
            f"{_num(r['ceems_job_j'])} | {gap(r, 'ceems')} | {_num(r['prometheus_job_j'])} | "
            f"{gap(r, 'prometheus')} | {_num(r['sacct_reported_j'])} | "
            f"{len(r['flags'].splitlines()) if r['flags'] else 0} |"
        )
    out += ["", "### Flags", ""]
    flagged = [r for r in rows if r["flagged"]]
    if not flagged:
        out.append("None.")
    for r in flagged:
        out.append(f"- {r['kind']} `{r['job_id']}`:")
        out += [f"  - {line}" for line in r["flags"].splitlines()]
    out += ["", "### Nulls and their reasons", ""]
    for r in rows:
        reasons = [
            f"{c.removesuffix('_null_reason')}: {r[c]}"
            for c, _, _ in AUDIT_COLUMNS
            if c.endswith("null_reason") and r[c]
        ]
        if reasons:
            out.append(f"- {r['kind']} `{r['job_id']}`: " + "; ".join(reasons))
    return [*out, ""]


def write_audit(
    config: Config, records: list[CellRecord], parquet: Path | str, markdown: Path | str
) -> list[dict[str, Any]]:
    """Both audit files; the rows, for the caller's summary."""
    rows = audit_rows(config, records)
    with atomic_path(parquet) as tmp:
        pq.write_table(audit_table(rows), tmp)
    write_text(markdown, audit_markdown(config, records, rows))
    return rows
