"""The packed jobs of a run: per-model jobs (``execution: per-model``) and judge passes (both
modes), from the plan and what is already done on disk.

A cell is *done* when ``cells/<cell>/result.json`` reads, has status ok or incomplete, and was
made by the same evaluation of the same model under the same server settings as the plan's
(``result.spec``: the spec a per-cell job of that cell has, whoever wrote it). A judged cell is
done when its cell is done and ``judges/<cell>/result.json`` reads, is at least as new as the
cell's result and was scored by the plan's judge with its settings. Only the cells not done are
packed: a model job killed after 3 of its 5 cells is followed by one job for the 2 missing
cells, under another id (``pack.pack_id``), and the 3 results are never touched again.

A model's cells not done (of one sampling setting, where its server keeps the first
request's: ``evalwatt.plan.estimate.model_job_groups``) go into jobs in the order (benchmark,
temperature, max_connections), split where the planner's estimate of a job (load, reference
idle, cells, cooldowns, pad) would exceed the time a job may ask for
(``evalwatt.plan.estimate.pack_chunks``: the cost preview counts jobs by the same rule). The
packs are worked out once per Snakemake run (``jobs.run.RunJobs``), from files only: no Slurm
query, no model loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evalwatt.base.layout import KIND_DIRS, Layout
from evalwatt.config.load import Config
from evalwatt.contracts.result import JobResult, finished_result
from evalwatt.contracts.spec import JobSpec
from evalwatt.jobs.pack import Pack, PackKind
from evalwatt.plan.estimate import (
    PackGroup,
    estimate_cells,
    judge_pass_groups,
    model_job_groups,
    pack_chunks,
)
from evalwatt.plan.matrix import Plan


def make_packs(
    plan: Plan, config: Config, kind: PackKind, groups: Iterable[PackGroup]
) -> list[Pack]:
    """The packs of each group's cells: in run order, split where a job's estimate would pass
    the time a job may ask for (``evalwatt.plan.estimate.pack_chunks``, the same rule the cost
    preview counts jobs with)."""
    packs = []
    for group, model, cells in groups:
        for chunk, est in pack_chunks(plan, config, model, cells, kind):
            packs.append(Pack(kind, group, model, tuple(c.id for c in chunk), est.total_s))
    return packs


def model_packs(plan: Plan, config: Config, pending: Iterable[str]) -> list[Pack]:
    """Per-model jobs: the ``pending`` cells (not done) of each model under one set of server
    settings (and one sampling setting where its server keeps the first request's:
    ``evalwatt.plan.estimate.model_job_groups``), split by time."""
    groups = model_job_groups(plan, (plan.cells[c] for c in pending))
    return make_packs(plan, config, "model", groups)


def judge_passes(plan: Plan, config: Config, pending: Iterable[str]) -> list[Pack]:
    """Judge passes: the ``pending`` judged cells (judgement not done) of each judge, split by
    time; the judge model is loaded once per pass."""
    groups = judge_pass_groups(config, (plan.cells[c] for c in pending))
    return make_packs(plan, config, "judge-pass", groups)


def pack_seconds(
    plan: Plan, config: Config, kind: PackKind, model: str, cells: Sequence[str]
) -> float:
    """The planner's seconds of one packed job (``evalwatt.plan.estimate.estimate_cells``)."""
    return estimate_cells(plan, config, model, [plan.cells[c] for c in cells], kind).total_s


# --- what is done on disk ----------------------------------------------------------------------


def same_cell(result: JobResult, expected: JobSpec) -> bool:
    """Whether a cell result was made by the expected evaluation, model, server settings and
    warm-up wave (a cell measured without the wave its model job now sends is not the same
    server state: it runs again)."""
    spec = result.spec
    return (
        result.kind == "cell"
        and spec.evaluation == expected.evaluation
        and spec.model == expected.model
        and spec.server.settings == expected.server.settings
        and spec.warm_up == expected.warm_up
    )


def same_judgement(result: JobResult, judged_path: Path, cell_path: Path, judge: JobSpec) -> bool:
    """Whether a judged result scored this cell's result by the expected judge model and
    settings (``judge``: the spec of a pass of the plan's judge), after the cell was made."""
    got, wanted = result.spec.judging, judge.judging
    if result.kind != "judge" or result.spec.model != judge.model or got is None:
        return False
    settings = ("temperature", "max_connections", "max_tokens")
    if wanted is None or any(getattr(got, s) != getattr(wanted, s) for s in settings):
        return False
    try:  # a cell made again after its judgement is judged again
        return judged_path.stat().st_mtime >= cell_path.stat().st_mtime
    except OSError:
        return False


@dataclass(frozen=True)
class DoneOnDisk:
    """What is done on disk: the cell results and judged results that can be kept."""

    cells: dict[str, JobResult]
    judged: dict[str, JobResult]


def scan_done(
    layout: Layout,
    plan: Plan,
    cell_spec: Callable[[str], JobSpec],
    judge_spec: Callable[[str], JobSpec],
) -> DoneOnDisk:
    """Read every planned cell's result (and judged result) that exists: the ones made as the
    plan says are done. ``cell_spec``/``judge_spec`` give a cell's expected spec and its judge
    pass's; they are asked only for cells that have a result, so that a fresh run reads
    nothing."""
    cells: dict[str, JobResult] = {}
    judged: dict[str, JobResult] = {}
    if not (layout.root / KIND_DIRS["cell"]).is_dir():  # a fresh run: nothing to read
        return DoneOnDisk(cells, judged)
    for cell in plan.cells.values():
        path = layout.run_result("cell", cell.id)
        result = finished_result(path)
        if result is None or not same_cell(result, cell_spec(cell.id)):
            continue
        cells[cell.id] = result
        if cell.judge is None:
            continue
        judged_path = layout.run_result("judge", cell.id)
        judgement = finished_result(judged_path)
        if judgement is not None and same_judgement(
            judgement, judged_path, path, judge_spec(cell.id)
        ):
            judged[cell.id] = judgement
    return DoneOnDisk(cells, judged)
