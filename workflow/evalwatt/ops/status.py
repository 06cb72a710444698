"""Where every job of a run stands (``evalwatt status``, the Snakefile's ``onerror:``): each
job of the run (``evalwatt.jobs.run``) and each repeat of a cell, with the cell's settings;
each cell and judgement (done on disk, or the state of the job that writes it); and the cells
whose results are done but whose energy record is missing.

One job's state is ``evalwatt.ops.job_state``'s; Slurm is asked once for the whole run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from evalwatt.base.layout import Layout, repeat_of
from evalwatt.base.slurm import SlurmView, query_jobs
from evalwatt.base.vocabulary import JobKind
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.jobs.pack import PACK_KINDS
from evalwatt.jobs.run import RunJobs
from evalwatt.ops.evidence import known_ids, local_job_processes, mtime
from evalwatt.ops.job_state import JobState, State, job_state

EXIT_ALL_DONE = 0
EXIT_NOT_ALL_DONE = 1


@dataclass(frozen=True)
class RunStatus:
    run: str
    jobs: tuple[JobState, ...]
    """The run's jobs (baselines and cells, or model jobs; judge passes) and repeats."""
    slurm_note: str | None
    missing_records: tuple[str, ...] = ()
    """Cells whose result and judgement are done but whose energy record is not written."""
    cells: tuple[JobState, ...] = ()
    """Each cell (kind ``cell``): its own result when done, else its job's state (per-cell:
    its cell job; per-model: its model job, named in ``reason``)."""
    judgements: tuple[JobState, ...] = ()
    """Each judged cell's judgement (kind ``judge``): done, or its judge pass's state."""
    pack_cells: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """The cells of each model job and judge pass still to run, by (kind, id)."""

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


def status_jobs(run: RunJobs) -> list[tuple[JobKind, str]]:
    """The run's jobs, then each cell's repeats found on disk (``evalwatt submit``)."""
    plan, layout = run.plan, run.layout
    repeats: list[tuple[JobKind, str]] = [
        ("cell", r) for c in plan.cells.values() for r in layout.repeat_ids(c.id)
    ]
    return [*run.jobs(), *repeats]


def ask_slurm(layout: Layout, jobs: Iterable[tuple[JobKind, str]], workdir: Path) -> SlurmView:
    """Slurm's view of the run's submissions: since the earliest spec was written, and the
    Slurm job ids kept in files; nothing to ask when no job was rendered."""
    jobs = list(jobs)
    times = [t for k, i in jobs if (t := mtime(layout.job_spec(k, i))) is not None]
    if not times:
        return SlurmView(note="nothing submitted")
    ids = {i for k, j in jobs for i in known_ids(workdir, layout, k, j)}
    return query_jobs(min(times), ids)


def with_cell(state: JobState, run: RunJobs) -> JobState:
    """A job's state with its cell's settings (a baseline, a packed job: its model)."""
    plan = run.plan
    if state.kind == "baseline":
        return replace(state, model=plan.baselines[state.job_id].model)
    if state.kind in PACK_KINDS:
        return replace(state, model=run.job(state.kind, state.job_id).model_name)
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


@dataclass(frozen=True)
class _Ask:
    """What one job's state is read from besides its files."""

    slurm: SlurmView
    running: set[Path]
    workdir: Path

    def state(self, run: RunJobs, kind: JobKind, job_id: str) -> JobState:
        raw = job_state(run.layout, kind, job_id, self.slurm, self.running, self.workdir)
        return with_cell(raw, run)


def run_status(
    run: RunJobs,
    *,
    workdir: Path | None = None,
    slurm: SlurmView | None = None,
    running_here: set[Path] | None = None,
) -> RunStatus:
    """The state of every job of a run, and of each cell and judgement. ``slurm`` and
    ``running_here`` default to asking Slurm (when there is one) and this machine's
    processes."""
    jobs = status_jobs(run)
    workdir = workdir or Path.cwd()
    slurm = ask_slurm(run.layout, jobs, workdir) if slurm is None else slurm
    ask = _Ask(slurm, local_job_processes() if running_here is None else running_here, workdir)
    states = {(kind, job_id): ask.state(run, kind, job_id) for kind, job_id in jobs}
    cells = {c: _packed_view(run, states, ask, "cell", c) for c in run.plan.cells}
    judged = [c.id for c in run.plan.cells.values() if c.judge]
    judgements = {c: _packed_view(run, states, ask, "judge", c) for c in judged}
    for cell_id, judgement in judgements.items():  # a judgement comes after its cell
        judgements[cell_id] = _waiting(judgement, cells[cell_id])
    return RunStatus(
        run.config.run,
        tuple(states.values()),
        slurm.note,
        missing_records(run, cells, judgements),
        tuple(cells.values()),
        tuple(judgements.values()),
        {key: pack.cells for key, pack in run.packs.items()},
    )


def _packed_view(
    run: RunJobs,
    states: dict[tuple[JobKind, str], JobState],
    ask: _Ask,
    kind: JobKind,
    cell_id: str,
) -> JobState:
    """A cell's (``cell``) or judgement's (``judge``) state: its job's (a cell job), or the
    state of the packed job that will write it (a model job, a judge pass), or its own
    result's."""
    if (kind, cell_id) in states:
        return states[(kind, cell_id)]
    pack = run.pack_of("model" if kind == "cell" else "judge-pass", cell_id)
    if pack is None:
        return ask.state(run, kind, cell_id)
    job = states[(pack.kind, pack.id)]
    reason = f"in {pack.kind} {pack.id}" + (f": {job.reason}" if job.reason else "")
    view = replace(job, kind=kind, job_id=cell_id, reason=reason, model=None)
    if job.state in (State.DONE, State.INCOMPLETE):  # the job ended, this cell's result did not
        why = _outcome(run, pack.kind, pack.id, cell_id) or "no result for this cell"
        view = replace(view, state=State.FAILED, reason=f"{reason}; {why}")
    return with_cell(view, run)


def _outcome(run: RunJobs, kind: JobKind, job_id: str, cell_id: str) -> str | None:
    """What a packed job's result says of one of its cells (its error), if it says."""
    try:
        result = read_contract(JobResult, run.layout.run_result(kind, job_id))
    except ContractError:
        return None
    outcome = next((o for o in result.cells if o.cell_id == cell_id), None)
    if outcome is None:
        return None
    return f"{outcome.status}" + (f": {outcome.error}" if outcome.error else "")


def _waiting(judge: JobState, cell: JobState) -> JobState:
    """A judgement not started because its cell is not done says so."""
    if cell.done or judge.state != State.NOT_STARTED:
        return judge
    return replace(judge, reason=f"waits for its cell ({cell.state.value})")


def missing_records(
    run: RunJobs, cells: dict[str, JobState], judgements: dict[str, JobState]
) -> tuple[str, ...]:
    """Cells whose result and judgement are done but whose energy record is not written."""
    return tuple(
        c.id
        for c in run.plan.cells.values()
        if cells[c.id].done
        and (not c.judge or judgements[c.id].done)
        and not run.layout.cell_energy(c.id).exists()
    )
