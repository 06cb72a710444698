"""The jobs of a run: the one list that the Snakemake rules, ``evalwatt status``, staging and
benchmarks/plan_scale.py read, each job resolved once.

Per-cell execution (the study's layout): a load-only baseline per server settings and a job
per cell. Per-model execution: a model job per (model, server settings) for the cells not done
on disk, split by time (``evalwatt.jobs.packs``). Both: a judge pass per judge for the judged
cells whose judgement is not done.

The packs are worked out from the files on disk when first asked, and then kept: CONFIG, PLAN
and the files do not change while Snakemake builds its DAG. The Snakemake process that Slurm
runs a job in plans again from the files at that later time; a pack id it no longer plans (a
retry after some of its cells finished) is resolved from the job's rendered spec.json, whose
runtime then skips the cells already done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from evalwatt.base.layout import Layout
from evalwatt.base.vocabulary import JobKind
from evalwatt.config.load import Config
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.spec import JobSpec
from evalwatt.jobs.pack import PACK_KINDS, Pack, PackKind, pack_id
from evalwatt.jobs.packs import DoneOnDisk, judge_passes, model_packs, pack_seconds, scan_done
from evalwatt.jobs.resolve import Job, JobError, resolve_job
from evalwatt.plan.matrix import Plan


@dataclass
class RunJobs:
    """Every job of one run, from the config, the plan and what is done on disk.

    Snakemake asks the same job's params, threads, resources and conda environment several
    times while it builds and prints the DAG (seven calls per job in a dry run); resolving a
    job each time was most of evalwatt's cost in ``snakemake -n`` (benchmarks/plan_scale.py),
    so each job is resolved once. So are the results' paths and where each cell's result and
    judgement come from: a baseline's result is an input of each of its cells, a judge pass's
    inputs are its hundreds of cells' results, and pathlib builds a path anew on each call.
    """

    config: Config
    plan: Plan
    layout: Layout
    _resolved: dict[tuple[str, str], Job] = field(default_factory=dict, repr=False)
    _results: dict[tuple[JobKind, str], Path] = field(default_factory=dict, repr=False)
    _packed_in: dict[tuple[JobKind, str], tuple[JobKind, str] | None] = field(
        default_factory=dict, repr=False
    )

    @property
    def per_model(self) -> bool:
        return self.config.execution == "per-model"

    @cached_property
    def done(self) -> DoneOnDisk:
        """The cell results and judgements on disk made as the plan says."""
        return scan_done(
            self.layout,
            self.plan,
            lambda c: self.job("cell", c).spec,
            lambda c: self.job("judge", c).spec,
        )

    @cached_property
    def packs(self) -> dict[tuple[JobKind, str], Pack]:
        """The model jobs (per-model execution) and judge passes still to run, by (kind, id)."""
        plan, done = self.plan, self.done
        found: list[Pack] = []
        if self.per_model:
            pending = [c for c in plan.cells if c not in done.cells]
            found += model_packs(plan, self.config, pending)
        judged = [c.id for c in plan.cells.values() if c.judge and c.id not in done.judged]
        found += judge_passes(plan, self.config, judged)
        return {(p.kind, p.id): p for p in found}

    @cached_property
    def _pack_of_cell(self) -> dict[tuple[JobKind, str], Pack]:
        """(``model`` or ``judge-pass``, cell id) -> the pack that runs or scores the cell."""
        return {(p.kind, c): p for p in self.packs.values() for c in p.cells}

    def jobs(self) -> list[tuple[JobKind, str]]:
        """Every job the run runs: baselines and cells (per-cell) or model jobs (per-model),
        then the judge passes."""
        out: list[tuple[JobKind, str]] = []
        if not self.per_model:
            out += [("baseline", b) for b in self.plan.baselines]
            out += [("cell", c) for c in self.plan.cells]
        out += [("model", i) for k, i in self.packs if k == "model"]
        out += [("judge-pass", i) for k, i in self.packs if k == "judge-pass"]
        return out

    def job(self, kind: JobKind, job_id: str) -> Job:
        """One job (or a cell's judgement, kind ``judge``), resolved once."""
        key = (kind, job_id)
        if key not in self._resolved:
            pack = self._pack(kind, job_id) if kind in PACK_KINDS else None
            self._resolved[key] = resolve_job(
                self.config, self.plan, self.layout, kind, job_id, pack
            )
        return self._resolved[key]

    def _pack(self, kind: PackKind, job_id: str) -> Pack:
        pack = self.packs.get((kind, job_id))
        return pack if pack is not None else self._rendered_pack(kind, job_id)

    def _rendered_pack(self, kind: PackKind, job_id: str) -> Pack:
        """A packed job this plan no longer has (some of its cells are done since), from its
        rendered spec.json: the same cells, the same id, the same time limit."""
        path = self.layout.job_spec(kind, job_id)
        try:
            spec = read_contract(JobSpec, path)
        except (ContractError, OSError) as exc:
            raise JobError(
                f"no {kind} job {job_id!r} in run {self.config.run}: not planned now, and no "
                f"rendered spec to run it from ({exc})"
            ) from None
        if spec.pack is not None:
            cells, group = tuple(c.cell_id for c in spec.pack.cells), spec.server.baseline_id
        elif spec.judging is not None:
            cells = tuple(c.cell_id for c in spec.judging.cells)
            group = job_id.rsplit("__", 1)[0]
        else:
            raise JobError(f"{path}: a {spec.kind} spec, not a {kind} job's")
        if pack_id(group, cells) != job_id or any(c not in self.plan.cells for c in cells):
            raise JobError(f"{path}: its cells are not those of {kind} job {job_id!r}")
        seconds = pack_seconds(self.plan, self.config, kind, spec.model.name, cells)
        return Pack(kind, group, spec.model.name, cells, seconds)

    # --- what a cell's energy waits for ---------------------------------------------------------

    def pack_of(self, kind: JobKind, cell_id: str) -> Pack | None:
        """The model job (``model``) or judge pass (``judge-pass``) of a cell, if one is to
        run."""
        return self._pack_of_cell.get((kind, cell_id))

    def result(self, kind: JobKind, job_id: str) -> Path:
        """A job's result file (``Layout.run_result``), its path built once."""
        key = (kind, job_id)
        if key not in self._results:
            self._results[key] = self.layout.run_result(kind, job_id)
        return self._results[key]

    def cell_input(self, cell_id: str) -> Path:
        """The file a cell's result comes with: the result of the packed job that will write
        it or wrote it (while that job's result is there), else the cell's own. The same file
        before and after the run, so that a second run finds nothing to do (Snakemake reruns a
        job whose set of inputs changed)."""
        return self.result(*(self.packed_in("cell", cell_id) or ("cell", cell_id)))

    def judged_input(self, cell_id: str) -> Path:
        """The file a cell's judgement comes with: its judge pass's result (the pass to come,
        or the one that wrote it), else the judgement's own; stable across runs as above."""
        return self.result(*(self.packed_in("judge", cell_id) or ("judge", cell_id)))

    def packed_in(self, kind: JobKind, cell_id: str) -> tuple[JobKind, str] | None:
        """The packed job that will write a cell's result (``cell``) or judgement (``judge``),
        or the one that wrote it (the result's ``packed_in``) when that job's own result is
        there: a job killed after some of its cells has no result, and no total to collect.
        Worked out once per cell, like the packs: the files do not change while Snakemake
        builds its DAG."""
        key = (kind, cell_id)
        if key not in self._packed_in:
            self._packed_in[key] = self._find_packed_in(kind, cell_id)
        return self._packed_in[key]

    def _find_packed_in(self, kind: JobKind, cell_id: str) -> tuple[JobKind, str] | None:
        job_kind: PackKind = "model" if kind == "cell" else "judge-pass"
        pack = self.pack_of(job_kind, cell_id)
        if pack is not None:
            return pack.kind, pack.id
        done = (self.done.cells if kind == "cell" else self.done.judged).get(cell_id)
        if done is None or done.packed_in is None:
            return None
        job_id = Path(done.packed_in).name
        return (job_kind, job_id) if self.result(job_kind, job_id).exists() else None
