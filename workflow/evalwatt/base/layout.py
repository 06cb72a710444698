"""The one place that knows where every file of a run lives, and what each file is called.

Snakemake rules, the renderer, the job runtime, the sampler, the energy step and the final
table all ask this module for paths, so the layout can change in one place: no other module
spells a file name. Passing a wildcard such as ``"{job}"`` as the id gives the pattern a
Snakemake rule declares. The layout is drawn in docs/outputs.md::

    results/<run>/
      plan/plan.json                        the planned matrix (GPU counts, cells, baselines)
      jobs/<kind>/<id>/job.sbatch           rendered job script (kind: cell, baseline,
                                            model, judge-pass; judge: a cell's judge job)
      jobs/<kind>/<id>/spec.json            what the job runtime does, read by the script
      jobs/<kind>/<id>/slurm-submissions.txt  Slurm ids of `evalwatt submit`s of the job
      <folder>/<id>/                        what one job wrote (JobFiles); the folder of a
                                            kind (KIND_DIRS): cells, baselines, models,
                                            judges, judge-passes. A model job's cells and a
                                            judge pass's judged cells each get their own
                                            cells/<cell>/ or judges/<cell>/ (result, logs);
                                            the traces stay in the job's folder:
        timeline.json                         phase marks, unix seconds
        trace-gpu.parquet                     NVML samples (measured)
        trace-cpu.parquet                     RAPL samples (measured, where readable)
        trace-cpu-est.parquet                 CPU-time model (an estimate)
        trace-gpu.part-0001.parquet ...       the traces' later parts (a model job or judge
                                              pass closes a part after each cell)
        rerun-<time>/                         a model job's or judge pass's rerun, when cells
                                              it kept point at the earlier attempt's files
        sampler.json                          what was sampled, what could not be and why
        server.log                            inference server output
        server-metrics-{before,after}.prom    the server's Prometheus /metrics at the
                                              inference marks (vLLM; cells only)
        eval/                                 Inspect logs (.eval; scored.eval, judged.eval)
        result.json                           manifest, written last: the job finished
        accounting/<source>.json              the cluster's accounting of the job (CEEMS API,
                                              Prometheus, sacct): every query and raw reply,
                                              timestamped; written on the login node after it
      <kind>s/<id>.attempt-<time>/          what a failed earlier attempt left
      cache/                                compile caches the run's servers share (vLLM,
                                            torch inductor), out of the home directory
      cells/<cell>__r<n>/                   repeat n of a cell (evalwatt submit --repeats N)
      stage/manifest.json                   what `evalwatt stage` staged, where and when
      submitit/                             submitit's own files of `evalwatt submit` jobs
      energy/<cell>.json                    a cell's record: its row, energy terms, formulas
      final/energy_table.{parquet,csv,md}   one row per cell
      final/energy_table_best.{parquet,csv,md}  fastest max_connections per setting
      audit/audit.{parquet,md}              job by job: every source's energy, the gaps
                                            between them, flags; for admins
      figures/<name>.{png,svg}              the figures (evalwatt.report.figures); a figure with
                                            nothing to draw is a PNG card saying why
      figures/figures.json                  each figure's caption, columns, or skip reason
      report/{energy_table,plan,audit,preview_check}.html  the report's pages: final table,
                                            plan and its GPU-hour preview, audit summary, the
                                            preview against the run
      report.html                           the Snakemake report (snakemake --report)
      logs/<rule>/<id>.log                  Snakemake logs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import overload

from evalwatt.base.vocabulary import JOB_KINDS, JobKind

TIMELINE = "timeline.json"
SERVER_LOG = "server.log"
EVAL_DIR = "eval"
RESULT = "result.json"
SAMPLER_STATUS = "sampler.json"
# The in-job sampler's trace files, by source. Measured and modelled never share a file.
TRACE_FILES = {
    "nvml": "trace-gpu.parquet",
    "rapl": "trace-cpu.parquet",
    "cpu-model": "trace-cpu-est.parquet",
}
# A trace's later parts: a job that runs several cells (a model job, a judge pass) has the
# sampler close its traces after each cell (footer written, so that a later kill cannot take
# that cell's energy) and open the next part, ``trace-gpu.part-0001.parquet`` and so on; part 0
# keeps the name above, so a job that never rotates has the files it always had.
TRACE_PART_SEP = ".part-"
TRACE_PART_DIGITS = 4
# The folder of each kind of job's files under the run (``Layout.run_dir``).
KIND_DIRS: dict[JobKind, str] = {
    "cell": "cells",
    "baseline": "baselines",
    "model": "models",
    "judge": "judges",
    "judge-pass": "judge-passes",
}
assert set(KIND_DIRS) == set(JOB_KINDS)
# The server's own Prometheus counters (vLLM's /metrics), raw, read just before
# inference_start and just after inference_end (evalwatt.runtime.vllm_metrics).
SERVER_METRICS = {"before": "server-metrics-before.prom", "after": "server-metrics-after.prom"}
# The server's temporary folder (TMPDIR, vLLM's sockets), removed when the server stops.
SERVER_TMP = "server-tmp"
RUN_CACHE = "cache"
SCORED_LOG = "scored.eval"
JUDGED_LOG = "judged.eval"

# The cluster's accounting of a job, collected on the login node once it ended (one file per
# source: every query and raw reply with timestamps; evalwatt.contracts.accounting).
ACCOUNTING_DIR = "accounting"
ACCOUNTING_FILES = {
    "ceems-api": "ceems-api.json",
    "prometheus": "prometheus.json",
    "sacct": "sacct.json",
}

JOB_SCRIPT = "job.sbatch"
JOB_SPEC = "spec.json"

STAGE_MANIFEST = "manifest.json"
SUBMISSIONS = "slurm-submissions.txt"
ATTEMPT_SEP = ".attempt-"
RERUN_PREFIX = "rerun-"
REPEAT_SEP = "__r"
"""A cell's repeat n (``evalwatt submit --repeats``) has the id ``<cell>__r<n>``."""

FINAL_TABLE = "energy_table"
FINAL_BEST = "energy_table_best"
FINAL_REPEATS = "energy_table_repeats"
"""Mean and spread of the cells that have repeats (``evalwatt repeats``)."""
FINAL_FORMATS = ("parquet", "csv", "md")
AUDIT_DIR = "audit"
AUDIT_NAME = "audit"
AUDIT_FORMATS = ("parquet", "md")
FIGURES_DIR = "figures"
FIGURE_INDEX = "figures.json"
REPORT_PAGES_DIR = "report"
REPORT_PAGES = ("energy_table", "plan", "audit", "preview_check")
REPORT = "report.html"


class _InJob:
    """A file or folder of a job's folder, named by its parts below the job's root: read on a
    ``JobFiles``, it is that path (``files.timeline`` is ``files.root / TIMELINE``). Most of a
    job's files differ only in their name, so ``JobFiles`` lists them as a table of these
    rather than a property each."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    @overload
    def __get__(self, files: None, owner: type[JobFiles]) -> _InJob: ...

    @overload
    def __get__(self, files: JobFiles, owner: type[JobFiles]) -> Path: ...

    def __get__(self, files: JobFiles | None, owner: type[JobFiles]) -> Path | _InJob:
        return self if files is None else files.root.joinpath(*self.parts)


@dataclass(frozen=True)
class JobFiles:
    """What one job writes, in its own folder (its run dir)."""

    root: Path

    timeline = _InJob(TIMELINE)
    server_log = _InJob(SERVER_LOG)
    server_tmp = _InJob(SERVER_TMP)
    eval_dir = _InJob(EVAL_DIR)
    inspect_data = _InJob("inspect-data")
    """Inspect's own data folder (its traces, sample buffer): in the job, not in $HOME."""
    scored_log = _InJob(EVAL_DIR, SCORED_LOG)
    """A cell's answers scored in the job (unit tests, exact match)."""
    judged_log = _InJob(EVAL_DIR, JUDGED_LOG)
    """A cell's answers scored by a judge job, in the judge job's folder."""
    sampler_status = _InJob(SAMPLER_STATUS)
    result = _InJob(RESULT)

    def server_metrics(self, when: str) -> Path:
        """The server's raw /metrics text ``before`` or ``after`` the inference window."""
        return self.root / SERVER_METRICS[when]

    @property
    def run_cache(self) -> Path:
        """The run's cache, shared by its jobs: ``<run>/cache`` (a job: ``<run>/<kind>s/<id>``)."""
        return self.root.parent.parent / RUN_CACHE

    def trace(self, source: str) -> Path:
        """The trace of one probe; part 0 where the sampler wrote several parts."""
        return self.root / TRACE_FILES[source]

    def trace_parts(self, source: str) -> list[Path]:
        """Every finished part of one probe's trace on disk, in order: part 0, then
        ``.part-0001`` and on. The sampler's status (sampler.json) lists the parts it
        finished; a reader that must notice a missing part reads that list instead."""
        first = self.trace(source)
        stem, suffix = first.name.removesuffix(".parquet"), ".parquet"
        later = {
            int(number): p
            for p in self.root.glob(f"{stem}{TRACE_PART_SEP}*{suffix}")
            if (number := p.name[len(stem) + len(TRACE_PART_SEP) : -len(suffix)]).isdigit()
        }
        found = [first] if first.exists() else []
        return found + [later[n] for n in sorted(later)]

    def accounting(self, source: str) -> Path:
        """The raw accounting record of one cluster source (``ACCOUNTING_FILES``)."""
        return self.root / ACCOUNTING_DIR / ACCOUNTING_FILES[source]

    def attempt(self, stamp: str) -> Path:
        """Where an earlier, failed attempt's files are set aside."""
        return self.root.with_name(f"{self.root.name}{ATTEMPT_SEP}{stamp}")

    def rerun(self, stamp: str) -> JobFiles:
        """Where a model job or judge pass writes a rerun's files when finished cells of an
        earlier attempt point at the folder's files (their ``packed_in``): inside it, so
        that nothing they point at moves."""
        return JobFiles(self.root / f"{RERUN_PREFIX}{stamp}")

    def packing_home(self, packed_in: Path) -> Path:
        """The folder of the model job (judge pass) that wrote this packed result, as its
        ``packed_in`` records it (``in_this_run``)."""
        return self.in_this_run(packed_in)

    def in_this_run(self, recorded: Path) -> Path:
        """A path that a job recorded inside its run (absolute: a packed result's
        ``packed_in``, a model job's cell results), in the run that holds this job: looked for
        first at the same place under this run's root (``<run>/<kind folder>/...``, rerun
        folders included), where a run folder copied elsewhere (an admin's audit, a kept
        validation run) keeps it; the recorded path where this run has no such file."""
        at, home = _kind_part(recorded), _kind_part(self.root)
        if at is None or home is None:
            return recorded
        beside = Path(*self.root.parts[:home]).joinpath(*recorded.parts[at:])
        return beside if beside.exists() else recorded

    def attempts(self) -> list[Path]:
        """The folders of earlier, failed attempts, oldest first."""
        return sorted(self.root.parent.glob(f"{self.root.name}{ATTEMPT_SEP}*"))

    @staticmethod
    def describe() -> str:
        """The raw files of a job, in a few words (the audit trail names them)."""
        return ", ".join([TIMELINE, *TRACE_FILES.values(), SAMPLER_STATUS, SERVER_LOG, EVAL_DIR])


def _kind_part(path: Path) -> int | None:
    """The index of the innermost kind folder (``cells``, ``models``...) in ``path``, which
    must have something under it; None when there is none."""
    kinds = set(KIND_DIRS.values())
    parts = path.parts
    return next((i for i in range(len(parts) - 2, -1, -1) if parts[i] in kinds), None)


def kind_dir(kind: str) -> str:
    """The folder of a kind's jobs; a Snakemake wildcard (``"{kind}"``) gives the pattern
    ``{kind}s`` that today's rules declare."""
    if kind in KIND_DIRS:
        return KIND_DIRS[kind]
    if kind.startswith("{") and kind.endswith("}"):
        return f"{kind}s"
    raise ValueError(f"unknown job kind {kind!r}; known: {', '.join(KIND_DIRS)}")


def trace_part_name(source: str, part: int) -> str:
    """The file name of part ``part`` (from 0) of one probe's trace."""
    if part < 0:
        raise ValueError(f"trace parts count from 0, not {part}")
    name = TRACE_FILES[source]
    if part == 0:
        return name
    return f"{name.removesuffix('.parquet')}{TRACE_PART_SEP}{part:0{TRACE_PART_DIGITS}d}.parquet"


def repeat_id(cell_id: str, n: int) -> str:
    """The job id of repeat ``n`` (from 1) of a cell."""
    if n < 1:
        raise ValueError(f"repeats count from 1, not {n}")
    return f"{cell_id}{REPEAT_SEP}{n}"


def repeat_of(job_id: str) -> tuple[str, int] | None:
    """(cell id, n) of a repeat's id; None for any other id."""
    cell, sep, n = job_id.rpartition(REPEAT_SEP)
    if not sep or not cell or not n.isdigit() or int(n) < 1:
        return None
    return cell, int(n)


@dataclass(frozen=True)
class Layout:
    """Paths of one run, rooted at ``<results_dir>/<run>``."""

    root: Path

    @classmethod
    def of(cls, results_dir: Path | str, run: str) -> Layout:
        return cls(Path(results_dir) / run)

    def plan(self) -> Path:
        return self.root / "plan" / "plan.json"

    def job_dir(self, kind: JobKind, job_id: str) -> Path:
        return self.root / "jobs" / kind / job_id

    def job_script(self, kind: JobKind, job_id: str) -> Path:
        return self.job_dir(kind, job_id) / JOB_SCRIPT

    def job_spec(self, kind: JobKind, job_id: str) -> Path:
        return self.job_dir(kind, job_id) / JOB_SPEC

    def run_dir(self, kind: JobKind, job_id: str) -> Path:
        return self.root / kind_dir(kind) / job_id

    def job_files(self, kind: JobKind, job_id: str) -> JobFiles:
        return JobFiles(self.run_dir(kind, job_id))

    def run_result(self, kind: JobKind, job_id: str) -> Path:
        return self.job_files(kind, job_id).result

    def cell_energy(self, cell_id: str) -> Path:
        return self.root / "energy" / f"{cell_id}.json"

    def final(self, name: str = FINAL_TABLE, fmt: str = "parquet") -> Path:
        return self.root / "final" / f"{name}.{fmt}"

    def audit(self, fmt: str = "md") -> Path:
        """The audit: ``audit/audit.parquet`` (one row per job) and ``audit/audit.md``."""
        return self.root / AUDIT_DIR / f"{AUDIT_NAME}.{fmt}"

    def figure(self, name: str, fmt: str = "png") -> Path:
        """A figure, ``figures/<name>.<fmt>`` (evalwatt.report.figures names them)."""
        return self.root / FIGURES_DIR / f"{name}.{fmt}"

    def figure_index(self) -> Path:
        """``figures/figures.json``: every figure's caption and columns, or why it was not
        drawn."""
        return self.root / FIGURES_DIR / FIGURE_INDEX

    def report_page(self, name: str) -> Path:
        """A page of the report (``REPORT_PAGES``): ``report/<name>.html``."""
        if name not in REPORT_PAGES:
            raise ValueError(f"no report page {name!r}: one of {', '.join(REPORT_PAGES)}")
        return self.root / REPORT_PAGES_DIR / f"{name}.html"

    def report(self) -> Path:
        """The Snakemake report of the run (``snakemake --report``), one HTML file."""
        return self.root / REPORT

    def log(self, rule: str, job_id: str) -> Path:
        return self.root / "logs" / rule / f"{job_id}.log"

    def job_log(self, kind: JobKind, job_id: str) -> Path:
        """The output of a job's script: the run_job rule's log, or evalwatt submit's."""
        return self.log(f"run_{kind}", job_id)

    def repeat_ids(self, cell_id: str) -> list[str]:
        """Ids of the repeats of a cell that have a rendered job or a folder, in order."""
        numbers = {
            found[1]
            for parent in (self.root / "jobs" / "cell", self.root / "cells")
            for p in parent.glob(f"{cell_id}{REPEAT_SEP}*")
            if (found := repeat_of(p.name)) is not None and found[0] == cell_id
        }
        return [repeat_id(cell_id, n) for n in sorted(numbers)]

    def submissions(self, kind: JobKind, job_id: str) -> Path:
        """Slurm job ids of ``evalwatt submit``'s submissions of a job, one a line."""
        return self.job_dir(kind, job_id) / SUBMISSIONS

    def stage_manifest(self) -> Path:
        return self.root / "stage" / STAGE_MANIFEST

    def submit_dir(self) -> Path:
        """submitit's folder (its pickles and logs) for ``evalwatt submit``."""
        return self.root / "submitit"
