"""The energy terms only a per-model job has, and the steady state every cell has.

A per-model job (``execution: per-model``) loads its model once, holds it idle for a reference
window (``reference_idle_*``: the in-job baseline, in the same CUDA state as the cells), then
runs its cells one after the other, each after a cooldown (``cooldown_*``) and in its own
windows (``inference_*``, ``generation_*``). Its traces stay in the model job's folder (the
``packed_in`` of each cell's result); a cell's headline and evaluation windows are cut from
them by the cell's own marks, exactly as a per-cell job's are (``evalwatt.energy.terms``).

What differs is what belongs to the model rather than to a cell:

* a job total (the NVML counter over the whole job, CEEMS, sacct) covers every cell of the
  job and cannot be split into cells: the whole-job methods (``job``, ``pad``, ``net``,
  ``corrected``...) are null per cell with ``packed_reason``; the audit compares the job total
  with the sum of its windows (``evalwatt.report.audit``);
* the model job's energy outside its cells' evaluation windows (loading, the reference idle,
  the cooldowns, the server's stop and the pad) is the model's overhead. Each cell gets a share
  of it in proportion to its evaluation seconds, as a separate term, never added to the
  headline::

      model_overhead  = E(job_start..job_end) - sum over the job's cells of
                        E(inference_start..inference_end)
      shared_overhead = model_overhead x evaluation_s(cell) / sum of evaluation_s(job's cells)

  "The job's cells" are those it evaluated and wrote a result for (``ok``, ``incomplete``); a
  cell whose evaluation failed wrote no row, so its evaluation counts in the overhead; a cell
  done by an earlier job (``skipped_done``) ran in that job, not in this one.

The steady state (ML.ENERGY's definition, both modes): ``steady = E(steady_start..steady_end)``
divided by the output tokens generated in that window (``contracts.result.SteadyWindow``:
each request's tokens pro-rated over its server-side interval), joules per output token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path

from evalwatt.base.layout import RERUN_PREFIX, JobFiles
from evalwatt.base.vocabulary import Mark
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.record import FamilyEnergy, SteadyRecord, TermRecord
from evalwatt.contracts.result import JobResult, SteadyWindow
from evalwatt.energy.sources import (
    INFERENCE_WINDOW,
    JOB_WINDOW,
    EnergySource,
    TimelineSource,
    Unavailable,
)
from evalwatt.energy.terms import of_window, window_term
from evalwatt.energy.trace import TraceError

REFERENCE_IDLE_WINDOW = (Mark.REFERENCE_IDLE_START.value, Mark.REFERENCE_IDLE_END.value)
COOLDOWN_WINDOW = (Mark.COOLDOWN_START.value, Mark.COOLDOWN_END.value)
STEADY_WINDOW = (Mark.STEADY_START.value, Mark.STEADY_END.value)
# The terms of a job total: a per-model job's cover all its cells (module docstring).
JOB_TOTAL_TERMS = (
    "job",
    "pad",
    "baseline_job",
    "baseline_pad",
    "net",
    "gap",
    "corrected",
    "corrected_gap",
)
PER_CELL_REASON = (
    "per-cell mode: the cell ran in its own job, whose load and idle are in its job and "
    "baseline totals (job_*, baseline_*, net_*), not in a shared reference window"
)
OVERHEAD_FORMULA = (
    "model_overhead x evaluation_s(cell) / sum of evaluation_s(the model job's cells)"
)
MODEL_OVERHEAD_FORMULA = (
    "E(job_end) - E(job_start) [model job] - sum of E(inference_end) - E(inference_start) "
    "[its cells]"
)
STEADY_FORMULA = "(E(steady_end) - E(steady_start)) / output tokens in the window"


def packing_id(folder: Path) -> str:
    """The id of the model job (judge pass) whose files are in ``folder``: its folder's
    name, with the job's for a rerun's folder inside it (``<id>/rerun-<time>``)."""
    if folder.name.startswith(RERUN_PREFIX):
        return f"{folder.parent.name}/{folder.name}"
    return folder.name


def packed_reason(job: Path, cells: int | None) -> str:
    """Why a packed cell has no job total of its own."""
    many = f"{cells} cells" if cells is not None else "several cells"
    return (
        f"one job for {many} ({packing_id(job)}): a job total cannot be split into cells "
        "(the audit compares it with the sum of the cells' windows)"
    )


def with_marks(source: EnergySource | None, marks: Mapping[str, float]) -> EnergySource | None:
    """The same readings cut by another timeline (a packed cell's, or its model job's): a
    trace or Prometheus series is the model job's, only the marks differ. None for a source
    that cannot cut windows (a job total)."""
    if isinstance(source, TimelineSource) and is_dataclass(source):
        return replace(source, marks=dict(marks))
    return None


@dataclass(frozen=True)
class ModelJob:
    """What a packed cell's overhead (and the audit's row of its job) needs of a model job
    or a judge pass: the job's own marks and the marks of each cell it ran, or why they are
    unknown."""

    root: Path
    marks: dict[str, float] | None
    """The job's own marks (job_start..job_end); None: no result (killed?)."""
    cell_marks: dict[str, dict[str, float]]
    """Cell id -> its result's marks, for the cells the job ran and wrote a result for."""
    cells: int | None
    """Cells of the job (its outcomes, every status); None: no result."""
    missing: str | None
    """Why the job's cells are not all known; None: they are."""

    def windows(self, window: tuple[str, str]) -> dict[str, tuple[float, float]] | str:
        """Each cell's ``window`` (start, end), unix s, or why one has none."""
        out, absent = {}, []
        for cell, marks in self.cell_marks.items():
            if all(m in marks for m in window):
                out[cell] = (marks[window[0]], marks[window[1]])
            else:
                absent.append(cell)
        if absent:
            return f"no {window[0]}..{window[1]} in the result of {', '.join(absent)}"
        return out

    def share(self, cell_id: str) -> tuple[float, str] | str:
        """The cell's share of the overhead and its formula's numbers, or why none."""
        windows = self.windows(INFERENCE_WINDOW)
        if self.missing is not None or isinstance(windows, str):
            return self.missing or str(windows)
        if cell_id not in windows:
            return f"cell {cell_id} is not among the cells {packing_id(self.root)} evaluated"
        seconds = {c: end - start for c, (start, end) in windows.items()}
        total = sum(seconds.values())
        if not total > 0:
            return f"the cells of {packing_id(self.root)} have {total} evaluation seconds in all"
        mine = seconds[cell_id]
        return mine / total, f"{mine:.1f} s / {total:.1f} s of {len(seconds)} cell(s)"


def model_job(root: Path) -> ModelJob:
    """The model job (or judge pass) in ``root``, from its result and its cells' results
    (those it ran and wrote, status ok or incomplete: a failed cell wrote none, a cell done
    by an earlier job ran there)."""
    path = JobFiles(root).result
    if not path.exists():
        why = f"{path} does not exist: the job did not finish, its total is unknown"
        return ModelJob(root, None, {}, None, why)
    try:
        result = read_contract(JobResult, path)
    except ContractError as exc:
        return ModelJob(root, None, {}, None, str(exc))
    cell_marks: dict[str, dict[str, float]] = {}
    problems = []
    for outcome in result.cells:
        if outcome.status not in ("ok", "incomplete") or outcome.result is None:
            continue
        try:
            cell = read_contract(JobResult, JobFiles(root).in_this_run(Path(outcome.result)))
        except ContractError as exc:
            problems.append(str(exc))
            continue
        cell_marks[outcome.cell_id] = {str(k): v for k, v in cell.marks.items()}
    marks = {str(k): v for k, v in result.marks.items()}
    return ModelJob(root, marks, cell_marks, len(result.cells), "; ".join(problems) or None)


def model_overhead(source: EnergySource | None, job: ModelJob) -> TermRecord:
    """The model job's energy outside its cells' evaluation windows (module docstring)."""
    formula = MODEL_OVERHEAD_FORMULA
    if source is None:
        return TermRecord.missing(formula, "no readings of the model job")
    if job.marks is None or job.missing is not None:
        return TermRecord.missing(formula, job.missing or "the model job has no marks")
    whole = with_marks(source, job.marks)
    if whole is None:
        return TermRecord.missing(formula, f"{source.name} cannot cut the cells' windows")
    absent = [m for m in JOB_WINDOW if m not in job.marks]
    if absent:
        return TermRecord.missing(formula, f"the model job has no mark {', '.join(absent)}")
    windows = job.windows(INFERENCE_WINDOW)
    if isinstance(windows, str):
        return TermRecord.missing(formula, windows)
    try:
        total = whole.window(*(job.marks[m] for m in JOB_WINDOW))
        cells = sum(whole.window(a, b).energy_j for a, b in windows.values())
    except (Unavailable, TraceError) as exc:
        return TermRecord.missing(formula, str(exc))
    value = total.energy_j - cells
    if not math.isfinite(value):
        return TermRecord.missing(formula, f"{value} is not a finite energy")
    return TermRecord(
        energy_j=value,
        formula=formula,
        null_reason=None,
        window=(total.start, total.end),
        per_device_j={},
        extrapolated_s=total.extrapolated_s,
        power_integral_j=None,
    )


def shared_overhead(overhead: TermRecord, job: ModelJob, cell_id: str) -> TermRecord:
    """The cell's share of its model job's overhead (module docstring)."""
    share = job.share(cell_id)
    if isinstance(share, str):
        return TermRecord.missing(OVERHEAD_FORMULA, share)
    fraction, numbers = share
    if overhead.energy_j is None:
        return TermRecord.missing(OVERHEAD_FORMULA, f"model_overhead: {overhead.null_reason}")
    return TermRecord.derived(overhead.energy_j * fraction, f"{OVERHEAD_FORMULA} [{numbers}]")


def steady_record(term: TermRecord, window: SteadyWindow | None) -> SteadyRecord:
    """Energy per output token over the steady window, or why there is none."""

    def null(why: str) -> SteadyRecord:
        return SteadyRecord(
            energy_per_output_token_j=None,
            formula=STEADY_FORMULA,
            null_reason=why,
            window_s=seconds,
            output_tokens=tokens,
        )

    seconds = tokens = None
    if window is None:
        return null("the cell's result has no steady window (written by an older runtime)")
    tokens = window.output_tokens
    if window.start is not None and window.end is not None:
        seconds = window.end - window.start
    if window.null_reason is not None:
        return null(window.null_reason)
    if term.energy_j is None:
        return null(f"steady: {term.null_reason}")
    if tokens is None or not tokens > 0:
        return null(f"{tokens} output tokens in the steady window")
    value = term.energy_j / tokens
    if not math.isfinite(value):
        return null(f"{value} is not finite")
    return SteadyRecord(
        energy_per_output_token_j=value,
        formula=STEADY_FORMULA,
        null_reason=None,
        window_s=seconds,
        output_tokens=tokens,
    )


def steady_term(source: EnergySource | None, window: SteadyWindow | None) -> TermRecord:
    """The counter over the steady window (the result's, which the marks repeat)."""
    formula = f"E({STEADY_WINDOW[1]}) - E({STEADY_WINDOW[0]}) [cell]"
    if window is None or window.start is None or window.end is None:
        why = window.null_reason if window and window.null_reason else "no steady window"
        return TermRecord.missing(formula, why)
    if source is None:
        return TermRecord.missing(formula, "no cell readings")
    try:
        return of_window(source.window(window.start, window.end), formula)
    except (Unavailable, TraceError) as exc:
        return TermRecord.missing(formula, str(exc))


@dataclass(frozen=True)
class Packing:
    """How a cell was run, for its terms: alone (``job`` None) or in a model job."""

    cell_id: str
    steady: SteadyWindow | None
    job: ModelJob | None = None
    """The model job of a packed cell; None: the cell ran in its own job (per-cell)."""
    packed_in: Path | None = None


def complete_terms(
    family: FamilyEnergy, cell: EnergySource | None, packing: Packing
) -> FamilyEnergy:
    """A family's terms (``energy.terms.cell_terms``) with the steady state, and the model
    job's terms where the cell was packed: its whole-job terms null (``packed_reason``), its
    reference idle, cooldown and share of the overhead measured; in per-cell mode those three
    are null with ``PER_CELL_REASON``."""
    terms = dict(family.terms)
    steady = steady_term(cell, packing.steady)
    terms["steady"] = steady
    update: dict[str, object] = {"steady": steady_record(steady, packing.steady)}
    if packing.job is None or packing.packed_in is None:
        for name, window in (
            ("reference_idle", REFERENCE_IDLE_WINDOW),
            ("cooldown", COOLDOWN_WINDOW),
        ):
            terms[name] = TermRecord.missing(f"E({window[1]}) - E({window[0]})", PER_CELL_REASON)
        terms["model_overhead"] = TermRecord.missing(MODEL_OVERHEAD_FORMULA, PER_CELL_REASON)
        terms["shared_overhead"] = TermRecord.missing(OVERHEAD_FORMULA, PER_CELL_REASON)
        return family.model_copy(update={**update, "terms": terms})
    why = packed_reason(packing.packed_in, packing.job.cells)
    for name in JOB_TOTAL_TERMS:
        terms[name] = TermRecord.missing(terms[name].formula if name in terms else name, why)
    terms["reference_idle"] = window_term(cell, *REFERENCE_IDLE_WINDOW, "model job")
    terms["cooldown"] = window_term(cell, *COOLDOWN_WINDOW, "cell")
    overhead = model_overhead(cell, packing.job)
    terms["model_overhead"] = overhead
    terms["shared_overhead"] = shared_overhead(overhead, packing.job, packing.cell_id)
    per_unit = {
        name: (
            rec.model_copy(update={"value_wh": None, "null_reason": why})
            if name.startswith(("net_", "corrected_"))
            else rec
        )
        for name, rec in family.per_unit.items()
    }
    return family.model_copy(
        update={**update, "terms": terms, "per_unit": per_unit, "gap_pct": None}
    )
