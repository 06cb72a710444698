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
from evalwatt.contracts.record import (
    CellRecord,
    FamilyEnergy,
    FamilyUnavailable,
    JobRef,
    SourceFigures,
)
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.sampler import SamplerStatus
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
from evalwatt.energy.packed import (
    COOLDOWN_WINDOW,
    REFERENCE_IDLE_WINDOW,
    model_job,
    packing_id,
)
from evalwatt.energy.readings import job_sources, sampler_of
from evalwatt.energy.sources import (
    FIGURE_WINDOWS,
    INFERENCE_WINDOW,
    JOB_WINDOW,
    JUDGING_WINDOW,
    LOAD_WINDOW,
    TraceSource,
    Unavailable,
)
from evalwatt.energy.trace import TraceError
from evalwatt.sampling.probes import parse_visible_devices
from evalwatt.table.final import SCHEMA_VERSION

AUDIT_SCHEMA_VERSION = 2
EXIT_PAD_WINDOW = ("exit", "job_end")
"""A model job's (judge pass's) end: the server's stop, the pad, the job's last steps."""
NO_PROCESSES = (
    "not recorded: the in-job sampler does not list the processes running on the job's GPUs "
    "(NVML's process list is not sampled)"
)


def _iso(t: float | None) -> str:
    if t is None:
        return "–"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _sampled_lines(sampler: SamplerStatus) -> list[str]:
    devices = []
    for source, info in sampler.traces.items():
        for dev in info.devices or ():
            devices.append(f"{source}: GPU {dev.nvml_index} {dev.uuid} ({dev.pci_bus_id})")
        if source != "nvml":
            devices.append(f"{source}: {info.zones or info.model}")
    unavailable = "; ".join(f"{k}: {v}" for k, v in sampler.unavailable.items()) or "none"
    return [
        f"  - sampled: {'; '.join(devices) or 'nothing'}; every {sampler.interval_s} s, "
        f"{sampler.rounds} rounds, {sampler.late_rounds} late "
        f"(max {sampler.max_late_s:.3f} s)",
        f"  - not sampled: {unavailable}",
    ]


def _packed_lines(kind: str, result: JobResult) -> list[str]:
    """A cell (judge) result written by a model job (judge pass): its own windows; the rest
    is its packing job's."""
    marks = result.marks
    home = Path(result.packed_in or "")
    windows = [
        f"{a}..{b} {_iso(marks[Mark(a)])} → {_iso(marks[Mark(b)])} "
        f"({marks[Mark(b)] - marks[Mark(a)]:.1f} s)"
        for a, b in (COOLDOWN_WINDOW, INFERENCE_WINDOW, JUDGING_WINDOW)
        if Mark(a) in marks and Mark(b) in marks
    ]
    return [
        f"- **{kind}** `{result.job_id}` — written by {PACKING_KIND.get(kind, 'a job')} "
        f"`{packing_id(home)}` (Slurm job {result.scheduler_job_id or '–'}, host `{result.host}`): "
        "its traces, server log and job total are that job's",
        f"  - status {result.status}" + "".join(f"; {p}" for p in result.problems),
        f"  - its windows: {'; '.join(windows) or 'none'}",
    ]


def _job_lines(kind: str, run_dir: Path, accounting: Mapping[str, SourceFigures]) -> list[str]:
    files = JobFiles(run_dir)
    if not files.result.exists():
        return [f"- **{kind}** `{run_dir.name}`: no {files.result}: the job did not finish"]
    result = read_contract(JobResult, files.result)
    if result.packed_in is not None:
        return _packed_lines(kind, result)
    marks, sampler = result.marks, result.sampler
    assert sampler is not None  # a job's own result has its sampler's status
    slurm_id = result.scheduler_job_id or "– (not under Slurm)"
    padded = _span(marks, Mark.PAD_START, Mark.PAD_END)
    lines = [
        f"- **{kind}** `{result.job_id}` — Slurm job {slurm_id}, "
        f"host `{result.host}`, CUDA_VISIBLE_DEVICES={result.cuda_visible_devices}",
        f"  - status {result.status}" + "".join(f"; {p}" for p in result.problems),
        f"  - from {_iso(marks.get(Mark.JOB_START))} to {_iso(marks.get(Mark.JOB_END))} "
        f"({_num(_span(marks, Mark.JOB_START, Mark.JOB_END), '.1f')} s), padded "
        f"{_num(padded, '.1f')} s, server {_exit(result.server.exit_code)}",
        *_sampled_lines(sampler),
        f"  - raw readings: `{files.root}/` ({JobFiles.describe()})",
    ]
    if result.cells:
        done = [
            f"{o.cell_id} ({o.status}{f': {o.error}' if o.error else ''})" for o in result.cells
        ]
        lines.append(f"  - cells: {'; '.join(done)}")
    for name, fig in accounting.items():
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


def _span(marks: Mapping[Mark, float], start: Mark, end: Mark) -> float | None:
    return marks[end] - marks[start] if start in marks and end in marks else None


def _exit(code: int | None) -> str:
    """A server's exit code in words: -15 is the SIGTERM the job sends to stop it."""
    if code is None:
        return "still running when the result was written"
    if code == -signal.SIGTERM:
        return "stopped by the job (SIGTERM)"
    if code == -signal.SIGKILL:
        return "killed after the grace period (SIGKILL)"
    return f"exited with code {code}"


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


def _figures(run_dir: Path, settings: Settings) -> Mapping[str, SourceFigures]:
    """The cluster's figures of a job that packed cells (none before it finished)."""
    if not settings.sources or not JobFiles(run_dir).result.exists():
        return {}
    return cluster_sources(run_dir, settings)[1]


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
    settings = Settings.of(config)
    seen: set[str] = set()
    for record in sorted(records, key=lambda r: r.cell_id):
        out.append(f"## Cell `{record.cell_id}`")
        out.append("")
        jobs: list[tuple[str, str, Path, Mapping[str, SourceFigures]]] = []
        for ref, packing in _refs(record):
            jobs.append((ref.kind, ref.job_id, Path(ref.run_dir), ref.accounting))
            if packing is not None and ref.packed_in is not None:
                home = JobFiles(Path(ref.run_dir)).packing_home(Path(ref.packed_in))
                jobs.append((packing, packing_id(home), home, _figures(home, settings)))
        for kind, job_id, run_dir, accounting in jobs:
            key = f"{kind}/{job_id}"
            if key in seen:
                out.append(f"- **{kind}** `{job_id}`: shared, described above")
                continue
            seen.add(key)
            out += _job_lines(kind, run_dir, accounting)
        out.append("- energy terms:")
        out += _energy_lines(record.energy)
        out.append("")
    return "\n".join(out) + "\n"


# --- the sources side by side, one row per job --------------------------------------------------

_F, _S, _I, _B = pa.float64(), pa.string(), pa.int64(), pa.bool_()
# (column, Arrow type, meaning). Energies in joules; gaps in percent of the NVML figure.
AUDIT_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("run", _S, "run name"),
    ("kind", _S, "cell, baseline, judge, model (job) or judge-pass"),
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
    (
        "packed_in",
        _S,
        "a cell (judge) result written by a model job (judge pass): that job's id; its job "
        "total is that job's row",
    ),
    ("packed_cells", _I, "model job, judge pass: the cells it ran and wrote a result for"),
    (
        "nvml_cells_j",
        _F,
        "model job: NVML summed over its cells' evaluation windows (inference_start.."
        "inference_end); judge pass: over its judging windows",
    ),
    ("nvml_reference_idle_j", _F, "model job: NVML over reference_idle_start..reference_idle_end"),
    ("nvml_cooldown_j", _F, "model job: NVML summed over its cells' cooldowns"),
    ("nvml_exit_pad_j", _F, "model job, judge pass: NVML over exit..job_end (server stop, pad)"),
    (
        "nvml_windows_j",
        _F,
        "model job, judge pass: cells + load + reference idle + cooldowns + exit/pad (NVML)",
    ),
    ("windows_s", _F, "seconds of those windows"),
    ("windows_null_reason", _S, "why nvml_windows_j is null"),
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
for _p in ("nvml", "ceems", "prometheus", "sacct"):
    AUDIT_COLUMNS.append(
        (
            f"{_p}_outside_windows_j",
            _F,
            f"model job, judge pass: {_p}_job_j - nvml_windows_j, the job's energy outside "
            "its windows (start-up, the warm-up wave, imports, between cells)"
            + ("; sacct is node level" if _p == "sacct" else ""),
        )
    )
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
    packed_in: Path | None = None
    """A cell (judge) result written by a model job (judge pass): that job's folder."""


# The job that writes a packed result of each kind: a model job its cells, a judge pass its
# judged cells.
PACKING_KIND = {"cell": "model", "judge": "judge-pass"}


def _refs(record: CellRecord) -> list[tuple[JobRef, str | None]]:
    """A record's jobs, each with the kind of the job that packed it (None: ran alone)."""
    refs = [record.jobs.cell, record.jobs.baseline, record.jobs.judge]
    return [(r, PACKING_KIND.get(r.kind) if r.packed_in else None) for r in refs if r]


def audit_jobs(records: Iterable[CellRecord]) -> list[AuditJob]:
    """Every job behind the records, once: baselines serve several cells, and a model job
    (judge pass) gets a row of its own beside each of its cells' (judged cells')."""
    jobs: dict[tuple[str, str], AuditJob] = {}

    def add(kind: str, job_id: str, run_dir: Path, r: CellRecord, packed: Path | None) -> None:
        key = (kind, job_id)
        old = jobs.get(key)
        jobs[key] = AuditJob(
            kind=kind,
            job_id=job_id,
            run_dir=run_dir,
            cells=(*old.cells, r.cell_id) if old else (r.cell_id,),
            baseline_id=r.row.baseline_id if kind in ("cell", "model") else None,
            gpus_planned=r.row.gpus if kind not in ("judge", "judge-pass") else None,
            packed_in=packed,
        )

    for r in sorted(records, key=lambda r: r.cell_id):
        for ref, packing in _refs(r):
            add(ref.kind, ref.job_id, Path(ref.run_dir), r, ref.packed_in)
            if packing is not None and ref.packed_in is not None:
                home = JobFiles(Path(ref.run_dir)).packing_home(Path(ref.packed_in))
                add(packing, packing_id(home), home, r, None)
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


def _windows_sum(source: TraceSource, windows: dict[str, tuple[float, float]] | str) -> float:
    """NVML summed over the cells' windows; Unavailable with the reason."""
    if isinstance(windows, str):
        raise Unavailable(windows)
    return sum(source.window(a, b).energy_j for a, b in windows.values())


def _windows_columns(job: AuditJob, nvml: TraceSource | None) -> dict[str, Any]:
    """A model job's (judge pass's) windows measured with NVML: its cells' evaluation
    (judging) windows, its load, its reference idle, its cells' cooldowns and its exit/pad,
    summed (``nvml_windows_j``), for each source's total to be set against."""
    info = model_job(job.run_dir)
    out: dict[str, Any] = {"packed_cells": len(info.cell_marks)}
    if nvml is None:
        return {**out, "windows_null_reason": "no NVML readings of the job"}
    model = job.kind == "model"
    cells = info.windows(INFERENCE_WINDOW if model else JUDGING_WINDOW)
    try:
        if info.missing:
            raise Unavailable(info.missing)
        parts = {
            "nvml_cells_j": _windows_sum(nvml, cells),
            "nvml_load_j": nvml.mark_window(*LOAD_WINDOW).energy_j,
            "nvml_exit_pad_j": nvml.mark_window(*EXIT_PAD_WINDOW).energy_j,
        }
        if model:
            parts["nvml_reference_idle_j"] = nvml.mark_window(*REFERENCE_IDLE_WINDOW).energy_j
            parts["nvml_cooldown_j"] = _windows_sum(nvml, info.windows(COOLDOWN_WINDOW))
    except (Unavailable, TraceError) as exc:
        return {**out, "windows_null_reason": str(exc)}
    seconds = [b - a for a, b in cells.values()] if isinstance(cells, dict) else []
    marks = nvml.marks
    for window in (LOAD_WINDOW, EXIT_PAD_WINDOW, *((REFERENCE_IDLE_WINDOW,) if model else ())):
        seconds.append(marks[window[1]] - marks[window[0]])
    if model:
        cooldowns = info.windows(COOLDOWN_WINDOW)
        seconds += [b - a for a, b in cooldowns.values()] if isinstance(cooldowns, dict) else []
    return {**out, **parts, "nvml_windows_j": sum(parts.values()), "windows_s": sum(seconds)}


def _outside_windows(row: dict[str, Any]) -> None:
    """Each source's job total against the NVML sum of the job's windows."""
    windows = row["nvml_windows_j"]
    for p in ("nvml", "ceems", "prometheus", "sacct"):
        total = row[f"{p}_job_j"]
        if windows is not None and total is not None:
            row[f"{p}_outside_windows_j"] = total - windows


def _finish(row: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    row["flags"] = "\n".join(flags) or None
    row["flagged"] = bool(flags)
    return row


def _packed_row(
    settings: Settings, row: dict[str, Any], job: AuditJob, result: JobResult
) -> dict[str, Any]:
    """A cell (judge) result written by a model job (judge pass): its own windows only; its
    job total, the cluster's figures and the trace's integrity are its packing job's row."""
    home = Path(result.packed_in or job.run_dir)
    why = (
        f"packed in {PACKING_KIND.get(job.kind, 'a job')} {packing_id(home)}: its job total "
        "is that job's row"
    )
    traces, why_not = job_sources(job.run_dir)
    nvml = traces.get(Family.GPU)
    row.update(
        packed_in=packing_id(home),
        under_cutoff=None,
        nvml_null_reason=why if nvml else why_not.get(Family.GPU, "not sampled"),
        gpus_measured=len(nvml.trace.series) if nvml else None,
    )
    if nvml is not None:
        row["nvml_inference_j"] = _window_j(nvml, nvml.marks, "inference")[0]
    for name in settings.sources:
        row[f"{_PREFIX[name]}_null_reason"] = why
    return _finish(row, [])


def _no_result(row: dict[str, Any], job: AuditJob) -> dict[str, Any]:
    """A job without a result: it did not finish (a model job killed after some cells keeps
    their results; its own total is unknown)."""
    why = f"no {JobFiles(job.run_dir).result}: the job did not finish; its total is unknown" + (
        " (the results of the cells it finished are kept)"
        if job.kind in PACKING_KIND.values()
        else ""
    )
    row.update(nvml_null_reason=why, windows_null_reason=why)
    return _finish(row, [why])


def audit_row(settings: Settings, run: str, job: AuditJob) -> dict[str, Any]:
    """One job's row, recomputed from its raw files."""
    row: dict[str, Any] = {name: None for name, _, _ in AUDIT_COLUMNS}
    row.update(
        run=run,
        kind=job.kind,
        job_id=job.job_id,
        cells=", ".join(job.cells),
        baseline_id=job.baseline_id,
        gpus_planned=job.gpus_planned,
        cutoff_s=settings.cutoff_s,
        other_processes=None,
        other_processes_null_reason=NO_PROCESSES,
        pue=settings.pue,
        gap_flag_pct=settings.gap_flag_pct,
    )
    path = JobFiles(job.run_dir).result
    if not path.exists():
        return _no_result(row, job)
    result = read_contract(JobResult, path)
    try:
        sampler: SamplerStatus | None = sampler_of(result, job.run_dir)[1]
    except TraceError as exc:  # a packed result whose job's sampler.json is gone
        sampler, row["nvml_null_reason"] = None, str(exc)
    nvml_info = sampler.traces.get("nvml") if sampler else None
    visible = parse_visible_devices(result.cuda_visible_devices)
    row.update(
        scheduler_job_id=result.scheduler_job_id,
        host=result.host,
        gpus_allocated=len(visible) if visible is not None else None,
        gpu_uuids=", ".join(d.uuid for d in nvml_info.devices or ()) if nvml_info else None,
        pad_requested_s=result.pad_requested_s,
        late_rounds=sampler.late_rounds if sampler else None,
    )
    if result.packed_in is not None:
        return _packed_row(settings, row, job, result)
    assert sampler is not None  # a job's own result has its sampler's status
    marks = {str(k): v for k, v in result.marks.items()}
    flags: list[str] = []
    elapsed = marks[Mark.JOB_END] - marks[Mark.JOB_START]
    row.update(
        elapsed_s=elapsed,
        under_cutoff=settings.cutoff_s > 0 and elapsed < settings.cutoff_s,
        pad_s=marks[Mark.PAD_END] - marks[Mark.PAD_START]
        if Mark.PAD_END in marks and Mark.PAD_START in marks
        else None,
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
            *sampler_findings(sampler.model_dump(), trace, "nvml"),
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
    if job.kind in PACKING_KIND.values():
        row.update(_windows_columns(job, nvml))
        _outside_windows(row)
    return _finish(row, flags)


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
            f"{_num(r['elapsed_s'])} | {_num(r['gpus_allocated'], 'd')}/"
            f"{_num(r['gpus_measured'], 'd')} | {_num(r['nvml_job_j'])} | "
            f"{_num(r['ceems_job_j'])} | {gap(r, 'ceems')} | {_num(r['prometheus_job_j'])} | "
            f"{gap(r, 'prometheus')} | {_num(r['sacct_reported_j'])} | "
            f"{len(r['flags'].splitlines()) if r['flags'] else 0} |"
        )
    packing = [r for r in rows if r["kind"] in PACKING_KIND.values()]
    if packing:
        out += [
            "",
            "### Model jobs and judge passes: each total against the sum of its windows",
            "",
            "Windows (NVML): the cells' evaluation (judging) windows + load + reference idle "
            "+ cooldowns + exit/pad; 'outside' = the source's job total - the windows "
            "(start-up, the warm-up wave, imports, between cells). Each cell's own row has no "
            "job total: its job is this one.",
            "",
            "| job | cells | windows J | windows s | NVML outside | CEEMS outside | "
            "Prometheus outside | sacct (node) outside |",
            "|---|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {r['kind']} `{r['job_id']}` | {_num(r['packed_cells'], 'd')} | "
            f"{_num(r['nvml_windows_j'])} | {_num(r['windows_s'])} | "
            f"{_num(r['nvml_outside_windows_j'])} | {_num(r['ceems_outside_windows_j'])} | "
            f"{_num(r['prometheus_outside_windows_j'])} | {_num(r['sacct_outside_windows_j'])} |"
            for r in packing
        ]
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
