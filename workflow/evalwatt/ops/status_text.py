"""``evalwatt status`` as text: the cells as a matrix (model x benchmark by setting), the
baselines and repeats, then each job not done with why and which log; and the Snakefile's
``onerror:`` report, which names the jobs a failed run left not done."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from evalwatt.base.layout import Layout, repeat_of
from evalwatt.config.load import Config
from evalwatt.jobs.run import RunJobs
from evalwatt.ops.job_state import JobState, State
from evalwatt.ops.status import RunStatus, run_status
from evalwatt.plan.matrix import Plan


def _setting(temperature: float | None, max_connections: int | None) -> str:
    return f"t{temperature:g} c{max_connections}"


def _short(state: JobState) -> str:
    if state.state == State.FAILED:
        return "FAILED"
    return state.state.value


def format_matrix(status: RunStatus) -> str:
    """The cells as a matrix: one line per (model, benchmark), one column per setting; a
    judged cell shows its judgement when that is not done; then baselines, model jobs, judge
    passes and repeats."""
    return "\n".join(
        [
            *_cell_lines(status),
            *_baseline_lines(status),
            *_pack_lines(status),
            *_repeat_lines(status),
        ]
    )


def _cell_lines(status: RunStatus) -> list[str]:
    cells = list(status.cells)
    judges = {j.job_id: j for j in status.judgements}
    settings = sorted({(j.temperature or 0.0, j.max_connections or 0) for j in cells})
    rows: dict[tuple[str, str], dict[tuple[float, int], str]] = {}
    for j in cells:
        text = _short(j)
        judge = judges.get(j.job_id)
        if judge is not None and not judge.done:
            text += f", judge {_short(judge)}"
        key = (j.model or "?", j.benchmark or "?")
        rows.setdefault(key, {})[(j.temperature or 0.0, j.max_connections or 0)] = text
    heads = [_setting(t, c) for t, c in settings]
    model_w = max([len("model"), *(len(m) for m, _ in rows)])
    bench_w = max([len("benchmark"), *(len(b) for _, b in rows)])
    col_w = [
        max([len(h), *(len(r.get(s, "-")) for r in rows.values())])
        for h, s in zip(heads, settings, strict=True)
    ]
    lines = [
        "  ".join(
            [f"{'model':{model_w}}", f"{'benchmark':{bench_w}}"]
            + [f"{h:{w}}" for h, w in zip(heads, col_w, strict=True)]
        ).rstrip()
    ]
    for (model, bench), by_setting in sorted(rows.items()):
        cols = [f"{by_setting.get(s, '-'):{w}}" for s, w in zip(settings, col_w, strict=True)]
        lines.append("  ".join([f"{model:{model_w}}", f"{bench:{bench_w}}", *cols]).rstrip())
    return lines


def _baseline_lines(status: RunStatus) -> list[str]:
    baselines = [j for j in status.jobs if j.kind == "baseline"]
    if not baselines:
        return []
    return ["", "load-only baselines:", *(f"  {b.job_id}  {_short(b)}" for b in baselines)]


PACK_TITLES = {
    "model": "model jobs (execution per-model: every cell of a model's server settings)",
    "judge-pass": "judge passes (one judge model loaded for many cells)",
}


def _pack_lines(status: RunStatus) -> list[str]:
    """The model jobs and judge passes still to run, each with its state and its cells."""
    lines = []
    for kind, title in PACK_TITLES.items():
        jobs = [j for j in status.jobs if j.kind == kind]
        if jobs:
            lines += ["", f"{title}:"]
            lines += [f"  {j.job_id}  {_short(j)}  ({_cell_count(status, j)})" for j in jobs]
    return lines


def _cell_count(status: RunStatus, job: JobState) -> str:
    n = len(status.pack_cells.get((job.kind, job.job_id), ()))
    return f"{n} cell{'s' if n != 1 else ''}"


def _repeat_lines(status: RunStatus) -> list[str]:
    by_cell: dict[str, list[JobState]] = {}
    for r in status.jobs:
        if r.repeat_of is not None:
            by_cell.setdefault(r.repeat_of, []).append(r)
    if not by_cell:
        return []
    lines = ["", "repeats (evalwatt submit --repeats):"]
    for cell_id, reps in by_cell.items():
        parts = [f"r{repeat_of(r.job_id)[1]} {_short(r)}" for r in reps]  # type: ignore[index]
        lines.append(f"  {cell_id}: {', '.join(parts)}")
    return lines


def format_not_done(jobs: Sequence[JobState]) -> str:
    lines = []
    for j in jobs:
        head = f"{j.kind} {j.job_id}: {j.state.value}"
        if j.attempts:
            head += f" ({j.attempts} earlier attempt{'s' if j.attempts > 1 else ''} set aside)"
        lines.append(head)
        if j.reason:
            lines.append(f"    why: {j.reason}")
        if j.log:
            lines.append(f"    log: {j.log}")
    return "\n".join(lines)


def format_status(status: RunStatus) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts().items()))
    parts = [f"run {status.run}: {len(status.jobs)} jobs: {counts}", "", format_matrix(status)]
    if status.slurm_note:
        parts += ["", f"note: Slurm not asked or not fully: {status.slurm_note}"]
    if status.not_done:
        parts += ["", "not done:", format_not_done(status.not_done)]
    if status.missing_records:
        parts += [
            "",
            "jobs done but no energy record (see logs/cell_energy/<cell>.log): "
            + ", ".join(status.missing_records),
        ]
    return "\n".join(parts) + "\n"


def not_finished(status: RunStatus) -> str:
    """Why a run that stopped on an error has no final table: the jobs not done (why, which
    log), the energy records missing, and what to do next."""
    lines = [
        "",
        f"evalwatt: run {status.run} is not finished: the final table is written only "
        "when every cell has its energy record, so it is not written now.",
    ]
    if status.not_done:
        lines += [
            f"{len(status.not_done)} of {len(status.jobs)} jobs are not done:",
            format_not_done(status.not_done),
        ]
    if status.missing_records:
        lines.append(
            "jobs done but no energy record: "
            + ", ".join(status.missing_records)
            + " (logs/cell_energy/<cell>.log)"
        )
    if not status.not_done and not status.missing_records:
        lines.append("every job is done: the error is in a later step (see above).")
    lines.append(
        "Fix what the logs say, then run the same snakemake command again: only the "
        "missing jobs run. `evalwatt status --configfile <config>` shows the whole matrix."
    )
    return "\n".join(lines)


def report_not_done(config: Config, plan: Plan, layout: Layout, out: TextIO | None = None) -> None:
    """The Snakefile's ``onerror:`` handler: which jobs are not done and why, so that a run
    that ends with failed jobs names them instead of only not writing the final table.

    Never raises: a broken report must not hide Snakemake's own error message."""
    out = out or sys.stderr
    try:
        run = RunJobs(config, plan, layout)
        print(not_finished(run_status(run)), file=out, flush=True)
    except Exception as exc:  # a report, never a second failure
        print(f"evalwatt: could not list the jobs that are not done: {exc!r}", file=out)
