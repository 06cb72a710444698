"""After a run: the cost preview against what the run used, per job kind, and the run's measured
rates as a calibration file that the next preview reads (``planner.calibration``).

A job's measured seconds are its wall time (``job_end − job_start``), its GPU-seconds that time
the GPUs of its spec; its preview is the estimate of the same job (``evalwatt.plan.estimate``:
the same cells, the same kind), under the config as it is now. The rates: a model's loading
(``ready − load_start`` of the jobs that started its server), its effective output tokens per
second by ``max_connections`` (output tokens ÷ generation window, prefill included), a judge's
seconds per call, Inspect's seconds around the generation of a cell, a packed cell's cooldown,
and each job kind's loaded seconds outside its cells (``outside_s``).

Results of schema 4 to 6 are read (the fields used here did not change between them), so that
a run made before per-model execution can calibrate the next one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from evalwatt.base.errors import UserError
from evalwatt.base.layout import ATTEMPT_SEP, KIND_DIRS, RESULT, JobFiles, Layout
from evalwatt.base.vocabulary import JobKind, Mark
from evalwatt.config.load import Config
from evalwatt.contracts.contract import write_contract
from evalwatt.contracts.plan import Calibration, ModelCalibration
from evalwatt.contracts.result import JobResult
from evalwatt.plan.estimate import Estimate, PackedKind, estimate, estimate_cells
from evalwatt.plan.matrix import Plan
from evalwatt.plan.preview import Row, markdown

RESULT_VERSIONS = (4, *JobResult.OLDER_VERSIONS, JobResult.known_version())
"""The result versions read here: those the job-result contract reads, and 4 (before per-model
execution), whose fields used here are the same."""
JOB_ORDER = ("cell", "baseline", "model", "judge", "judge-pass")


class PreviewCheckError(UserError):
    """A result that cannot be read for the check (its file named)."""


@dataclass(frozen=True)
class MeasuredJob:
    """What the check needs of one result.json."""

    path: Path
    kind: str
    job_id: str
    model: str
    gpus: int
    marks: dict[str, float]
    packed_in: Path | None
    """The folder of the model job or judge pass that wrote this result for one of its
    cells; None for a job of its own."""
    cells: tuple[str, ...]
    """The cells a model job ran or a judge pass scored."""
    max_connections: int | None
    """A cell's, or a judge's (judge results)."""
    output_tokens: int | None
    generation_s: float | None
    model_calls: int | None

    @property
    def wall_s(self) -> float | None:
        return _span(self.marks, Mark.JOB_START, Mark.JOB_END)

    @property
    def packed(self) -> bool:
        """Written by a packed job for one of its cells: not a job of its own."""
        return self.packed_in is not None

    @property
    def load_s(self) -> float | None:
        return None if self.packed else _span(self.marks, Mark.LOAD_START, Mark.READY)

    @property
    def windows_s(self) -> float:
        """Seconds of the windows this result stamped for its own cell: its cooldown and its
        evaluation (Inspect's, or the judge's); a packed cell's copy of its job's reference
        idle is the job's, not counted here."""
        pairs = [
            (Mark.COOLDOWN_START, Mark.COOLDOWN_END),
            (Mark.INFERENCE_START, Mark.INFERENCE_END),
            (Mark.JUDGING_START, Mark.JUDGING_END),
        ]
        return sum(_span(self.marks, start, end) or 0.0 for start, end in pairs)


def _span(marks: dict[str, float], start: str, end: str) -> float | None:
    return marks[end] - marks[start] if start in marks and end in marks else None


def _cell_ids(work: dict[str, Any] | None) -> tuple[str, ...]:
    if not work:
        return ()
    return tuple(c["cell_id"] for c in work.get("cells") or ())


def read_measured(path: Path) -> MeasuredJob:
    """One result.json as the check reads it; refuses a schema version it does not know."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PreviewCheckError(f"{path}: cannot read the job result: {exc}") from None
    version = data.get("schema_version")
    if version not in RESULT_VERSIONS:
        raise PreviewCheckError(
            f"{path}: job result schema_version {version!r}; the check reads "
            f"{', '.join(map(str, RESULT_VERSIONS))}"
        )
    spec = data["spec"]
    work = spec.get("evaluation") or spec.get("judging") or {}
    window = data.get("generation_window") or {}
    start, end = window.get("start"), window.get("end")
    return MeasuredJob(
        path=path,
        kind=data["kind"],
        job_id=data["job_id"],
        model=spec["model"]["name"],
        gpus=int(spec["server"]["settings"]["gpus"]),
        marks=data["marks"],
        packed_in=(
            JobFiles(path.parent).packing_home(Path(data["packed_in"]))
            if data.get("packed_in")
            else None
        ),
        cells=_cell_ids(spec.get("pack")) or _cell_ids(spec.get("judging")),
        max_connections=work.get("max_connections"),
        output_tokens=(data.get("generation") or {}).get("output_tokens"),
        generation_s=end - start if start is not None and end is not None else None,
        model_calls=window.get("model_calls"),
    )


def measured_jobs(layout: Layout) -> list[MeasuredJob]:
    """Every result of the run (not an earlier attempt's), in a stable order."""
    found = []
    for folder in dict.fromkeys(KIND_DIRS.values()):
        for path in sorted((layout.root / folder).glob(f"*/{RESULT}")):
            if ATTEMPT_SEP not in path.parent.name:
                found.append(read_measured(path))
    return found


# --- preview against measured ------------------------------------------------------------------


@dataclass
class KindCheck:
    """The jobs of one kind: their preview and what they used."""

    kind: str
    jobs: int = 0
    preview_s: float = 0.0
    measured_s: float = 0.0
    preview_gpu_s: float = 0.0
    measured_gpu_s: float = 0.0

    def add(self, gpus: int, preview: Estimate, measured_s: float) -> None:
        self.jobs += 1
        self.preview_s += preview.total_s
        self.measured_s += measured_s
        self.preview_gpu_s += gpus * preview.total_s
        self.measured_gpu_s += gpus * measured_s


def preview_of(plan: Plan, config: Config, job: MeasuredJob) -> Estimate | None:
    """The estimate of the same job; None where the plan has no such job any more."""
    if job.kind == "baseline":
        known = job.job_id in plan.baselines
        return estimate(plan, config, "baseline", job.job_id) if known else None
    if job.kind in ("cell", "judge"):
        kind: JobKind = "cell" if job.kind == "cell" else "judge"
        return estimate(plan, config, kind, job.job_id) if job.job_id in plan.cells else None
    cells = [plan.cells[c] for c in job.cells if c in plan.cells]
    if not cells or len(cells) < len(job.cells):
        return None
    packed: PackedKind = "judge-pass" if job.kind == "judge-pass" else "model"
    return estimate_cells(plan, config, job.model, cells, packed)


def check(
    plan: Plan, config: Config, jobs: Iterable[MeasuredJob]
) -> tuple[list[KindCheck], list[str]]:
    """Preview and measured seconds of each job kind, and what could not be compared."""
    by_kind: dict[str, KindCheck] = {}
    notes = []
    for job in jobs:
        if job.packed:
            continue
        preview, wall = preview_of(plan, config, job), job.wall_s
        if preview is None or wall is None:
            why = "not in the plan" if preview is None else "no job_start/job_end marks"
            notes.append(f"{job.kind} {job.job_id}: {why}")
            continue
        by_kind.setdefault(job.kind, KindCheck(job.kind)).add(job.gpus, preview, wall)
    order = {k: i for i, k in enumerate(JOB_ORDER)}
    return sorted(by_kind.values(), key=lambda k: order.get(k.kind, 99)), notes


def _ratio(measured: float, preview: float) -> str:
    return f"{measured / preview:.2f}" if preview > 0 else "–"


def check_rows(checks: list[KindCheck]) -> list[Row]:
    rows: list[Row] = [
        ("job kind", "jobs", "preview s", "measured s", "measured/preview",
         "preview GPU-s", "measured GPU-s"),
    ]  # fmt: skip
    for k in checks:
        rows.append(
            (
                k.kind,
                str(k.jobs),
                f"{k.preview_s:.0f}",
                f"{k.measured_s:.0f}",
                _ratio(k.measured_s, k.preview_s),
                f"{k.preview_gpu_s:.0f}",
                f"{k.measured_gpu_s:.0f}",
            )
        )
    return rows


# --- calibration -------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None


def outside_s(job: MeasuredJob, members: Iterable[MeasuredJob]) -> float | None:
    """Seconds ``job`` (one of its own) spent loaded outside its loading, its reference idle,
    its cells' cooldowns and evaluations (its own, or ``members``: the results it wrote for
    its cells) and its padding: what ``planner.job_overhead_s`` estimates. None without the
    marks to tell."""
    wall, load = job.wall_s, job.load_s
    if wall is None or load is None:
        return None
    reference = _span(job.marks, Mark.REFERENCE_IDLE_START, Mark.REFERENCE_IDLE_END) or 0.0
    pad = _span(job.marks, Mark.PAD_START, Mark.PAD_END) or 0.0
    inside = reference + job.windows_s + sum(m.windows_s for m in members)
    return wall - load - pad - inside


def _job_overheads(jobs: list[MeasuredJob]) -> dict[str, float]:
    """The mean of ``outside_s`` by job kind, over the jobs that have it."""
    members: dict[Path, list[MeasuredJob]] = defaultdict(list)
    for job in jobs:
        if job.packed_in is not None:
            members[job.packed_in.resolve()].append(job)
    found: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        if job.packed:
            continue
        seconds = outside_s(job, members.get(job.path.parent.resolve(), ()))
        # below 0 only with marks out of order: not a duration to calibrate on
        if seconds is not None and seconds >= 0:
            # a judge job of its own (results of schema 4) is a judge pass of one cell
            found["judge-pass" if job.kind == "judge" else job.kind].append(seconds)
    return {kind: fmean(values) for kind, values in sorted(found.items())}


def calibration(run: str, jobs: Iterable[MeasuredJob]) -> Calibration:
    """The run's measured rates, per model where they are a model's."""
    jobs = list(jobs)
    loads: dict[str, list[float]] = defaultdict(list)
    tokens: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    per_call: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    cells: dict[str, int] = defaultdict(int)
    overhead, cooldown, judging = [], [], []
    for job in jobs:
        if job.load_s is not None:
            loads[job.model].append(job.load_s)
        gen, c = job.generation_s, job.max_connections
        if job.kind == "cell" and gen and c and job.output_tokens is not None:
            tokens[job.model][c].append((job.output_tokens, gen))
            cells[job.model] += 1
            inference = _span(job.marks, Mark.INFERENCE_START, Mark.INFERENCE_END)
            if inference is not None:
                overhead.append(inference - gen)
        if job.kind == "judge" and gen and c and job.model_calls:
            per_call[job.model][c].append((job.model_calls, gen))
            judging_s = _span(job.marks, Mark.JUDGING_START, Mark.JUDGING_END)
            if judging_s is not None:
                judging.append(judging_s - gen)
        wait = _span(job.marks, Mark.COOLDOWN_START, Mark.COOLDOWN_END)
        if job.kind == "cell" and wait is not None:
            cooldown.append(wait)
    models = {}
    for model in sorted({*loads, *tokens, *per_call}):
        models[model] = ModelCalibration(
            load_s=_mean(loads[model]),
            tokens_per_s={
                str(c): sum(t for t, _ in v) / sum(s for _, s in v)
                for c, v in sorted(tokens[model].items())
            },
            judge_s_per_call={
                str(c): sum(s for _, s in v) / sum(n for n, _ in v)
                for c, v in sorted(per_call[model].items())
            },
            cells=cells[model],
        )
    return Calibration(
        run=run,
        inspect_overhead_s=_mean(overhead),
        judge_overhead_s=_mean(judging),
        cooldown_s=_mean(cooldown),
        job_overhead_s=_job_overheads(jobs),
        models=models,
    )


def calibration_rows(cal: Calibration) -> list[Row]:
    rows: list[Row] = [("model", "load s", "tokens/s by max_connections", "judge s/call")]
    for model, m in cal.models.items():
        rows.append(
            (
                model,
                "–" if m.load_s is None else f"{m.load_s:.1f}",
                ", ".join(f"{c}: {t:.1f}" for c, t in m.tokens_per_s.items()) or "–",
                ", ".join(f"{c}: {s:.2f}" for c, s in m.judge_s_per_call.items()) or "–",
            )
        )
    return rows


# --- the page ----------------------------------------------------------------------------------


def check_markdown(run: str, checks: list[KindCheck], notes: list[str], cal: Calibration) -> str:
    def seconds(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f} s"

    lines = [
        f"# Preview against the run {run}",
        "",
        "Each job's estimate (the config's throughput model and assumptions, as for the time "
        "limits) beside the wall seconds it used, by job kind; GPU-seconds count the GPUs of "
        "each job (0 for a CPU job). `evalwatt preview-check --write-calibration FILE` writes "
        "the rates below for `planner.calibration`.",
        "",
        *markdown(check_rows(checks)),
        "",
        "## Measured rates",
        "",
        *markdown(calibration_rows(cal)),
        "",
        f"Inspect around generation, per cell: {seconds(cal.inspect_overhead_s)}; "
        f"a judgement outside its judge calls: {seconds(cal.judge_overhead_s)}; "
        f"cooldown per packed cell: {seconds(cal.cooldown_s)}; "
        "each job's loaded seconds outside its loading, cells and padding: "
        + (", ".join(f"{k} {v:.1f} s" for k, v in cal.job_overhead_s.items()) or "–")
        + ".",
    ]
    if notes:
        lines += ["", "## Not compared", "", *(f"- {n}" for n in notes)]
    return "\n".join(lines) + "\n"


def run_check(config: Config, plan: Plan, layout: Layout) -> tuple[str, Calibration]:
    """The check's Markdown and the run's calibration, from the results on disk."""
    jobs = measured_jobs(layout)
    checks, notes = check(plan, config, jobs)
    cal = calibration(config.run, jobs)
    return check_markdown(config.run, checks, notes, cal), cal


def write_calibration(path: Path | str, cal: Calibration) -> None:
    write_contract(path, cal)
