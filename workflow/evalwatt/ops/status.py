"""Where every job of a run stands (``evalwatt status``, the Snakefile's ``onerror:``): each
planned job and each repeat of a cell, with the cell's settings, and the cells whose jobs are
done but whose energy record is missing.

One job's state is ``evalwatt.ops.job_state``'s; Slurm is asked once for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from evalwatt.base.layout import Layout, repeat_of
from evalwatt.base.slurm import SlurmView, query_jobs
from evalwatt.base.vocabulary import JobKind
from evalwatt.jobs.resolve import planned_jobs
from evalwatt.ops.evidence import known_ids, local_job_processes, mtime
from evalwatt.ops.job_state import JobState, State, job_state
from evalwatt.plan.matrix import Plan

EXIT_ALL_DONE = 0
EXIT_NOT_ALL_DONE = 1


@dataclass(frozen=True)
class RunStatus:
    run: str
    jobs: tuple[JobState, ...]
    slurm_note: str | None
    missing_records: tuple[str, ...] = ()
    """Cells whose jobs are done but whose energy record is not written."""

    @property
    def not_done(self) -> list[JobState]:
        return [j for j in self.jobs if not j.done]

    @property
    def exit_code(self) -> int:
        return EXIT_ALL_DONE if not self.not_done else EXIT_NOT_ALL_DONE

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for j in self.jobs:
            out[j.state.value] = out.get(j.state.value, 0) + 1
        return out


def run_jobs(plan: Plan, layout: Layout) -> list[tuple[JobKind, str]]:
    """The plan's jobs, then each cell's repeats found on disk (``evalwatt submit``)."""
    repeats: list[tuple[JobKind, str]] = [
        ("cell", r) for c in plan.cells.values() for r in layout.repeat_ids(c.id)
    ]
    return [*planned_jobs(plan), *repeats]


def ask_slurm(layout: Layout, jobs: Iterable[tuple[JobKind, str]], workdir: Path) -> SlurmView:
    """Slurm's view of the run's submissions: since the earliest spec was written, and the
    Slurm job ids kept in files; nothing to ask when no job was rendered."""
    jobs = list(jobs)
    times = [t for k, i in jobs if (t := mtime(layout.job_spec(k, i))) is not None]
    if not times:
        return SlurmView(note="nothing submitted")
    ids = {i for k, j in jobs for i in known_ids(workdir, layout, k, j)}
    return query_jobs(min(times), ids)


def with_cell(state: JobState, plan: Plan) -> JobState:
    """A job's state with its cell's settings (a baseline: its model)."""
    if state.kind == "baseline":
        return replace(state, model=plan.baselines[state.job_id].model)
    rep = repeat_of(state.job_id) if state.kind == "cell" else None
    cell = plan.cells.get(rep[0] if rep else state.job_id)
    if cell is None:
        return state
    return replace(
        state,
        model=cell.model,
        benchmark=cell.benchmark,
        temperature=cell.temperature,
        max_connections=cell.max_connections,
        repeat_of=rep[0] if rep else None,
    )


def run_status(
    plan: Plan,
    layout: Layout,
    run: str,
    *,
    workdir: Path | None = None,
    slurm: SlurmView | None = None,
    running_here: set[Path] | None = None,
) -> RunStatus:
    """The state of every job of a run. ``slurm`` and ``running_here`` default to asking
    Slurm (when there is one) and this machine's processes."""
    jobs = run_jobs(plan, layout)
    workdir = workdir or Path.cwd()
    slurm = ask_slurm(layout, jobs, workdir) if slurm is None else slurm
    running = local_job_processes() if running_here is None else running_here
    states: dict[tuple[JobKind, str], JobState] = {}
    for kind, job_id in jobs:
        state = with_cell(job_state(layout, kind, job_id, slurm, running, workdir), plan)
        if kind == "judge" and state.state == State.NOT_STARTED:
            state = _waiting(state, states[("cell", job_id)])  # a judge job comes after its cell
        states[(kind, job_id)] = state
    return RunStatus(run, tuple(states.values()), slurm.note, missing_records(plan, layout, states))


def _waiting(judge: JobState, cell: JobState) -> JobState:
    """A judge job not started because its cell is not done says so."""
    if cell.done:
        return judge
    return replace(judge, reason=f"waits for its cell ({cell.state.value})")


def missing_records(
    plan: Plan, layout: Layout, states: dict[tuple[JobKind, str], JobState]
) -> tuple[str, ...]:
    """Cells whose cell and judge jobs are done but whose energy record is not written."""
    done = {key for key, s in states.items() if s.done}
    return tuple(
        c.id
        for c in plan.cells.values()
        if ("cell", c.id) in done
        and (not c.judge or ("judge", c.id) in done)
        and not layout.cell_energy(c.id).exists()
    )
