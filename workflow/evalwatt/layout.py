"""The one place that knows where every file of a run lives, and what each file is called.

Snakemake rules, the renderer, the job runtime, the sampler, the energy step and the final
table all ask this module for paths, so the layout can change in one place: no other module
spells a file name. Passing a wildcard such as ``"{job}"`` as the id gives the pattern a
Snakemake rule declares. The layout is drawn in docs/outputs.md::

    results/<run>/
      plan/plan.json                        the planned matrix (GPU counts, cells, baselines)
      jobs/<kind>/<id>/job.sbatch           rendered job script (kind: cell, baseline, judge)
      jobs/<kind>/<id>/spec.json            what the job runtime does, read by the script
      <kind>s/<id>/                         what one job wrote (JobFiles):
        timeline.json                         phase marks, unix seconds
        trace-gpu.parquet                     NVML samples (measured)
        trace-cpu.parquet                     RAPL samples (measured, where readable)
        trace-cpu-est.parquet                 CPU-time model (an estimate)
        sampler.json                          what was sampled, what could not be and why
        server.log                            inference server output
        eval/                                 Inspect logs (.eval; scored.eval, judged.eval)
        result.json                           manifest, written last: the job finished
      <kind>s/<id>.attempt-<time>/          what a failed earlier attempt left
      energy/<cell>.json                    a cell's record: its row, energy terms, formulas
      final/energy_table.{parquet,csv,md}   one row per cell
      final/energy_table_best.{parquet,csv,md}  fastest max_connections per setting
      final/audit.md                        job-by-job audit trail for admins
      logs/<rule>/<id>.log                  Snakemake logs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evalwatt.contracts.vocabulary import JobKind

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
SCORED_LOG = "scored.eval"
JUDGED_LOG = "judged.eval"

JOB_SCRIPT = "job.sbatch"
JOB_SPEC = "spec.json"

FINAL_TABLE = "energy_table"
FINAL_BEST = "energy_table_best"
FINAL_FORMATS = ("parquet", "csv", "md")


@dataclass(frozen=True)
class JobFiles:
    """What one job writes, in its own folder (its run dir)."""

    root: Path

    @property
    def timeline(self) -> Path:
        return self.root / TIMELINE

    @property
    def server_log(self) -> Path:
        return self.root / SERVER_LOG

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def scored_log(self) -> Path:
        """A cell's answers scored in the job (unit tests, exact match)."""
        return self.eval_dir / SCORED_LOG

    @property
    def judged_log(self) -> Path:
        """A cell's answers scored by a judge job, in the judge job's folder."""
        return self.eval_dir / JUDGED_LOG

    @property
    def sampler_status(self) -> Path:
        return self.root / SAMPLER_STATUS

    def trace(self, source: str) -> Path:
        return self.root / TRACE_FILES[source]

    @property
    def result(self) -> Path:
        return self.root / RESULT

    def attempt(self, stamp: str) -> Path:
        """Where an earlier, failed attempt's files are set aside."""
        return self.root.with_name(f"{self.root.name}.attempt-{stamp}")

    @staticmethod
    def describe() -> str:
        """The raw files of a job, in a few words (the audit trail names them)."""
        return ", ".join([TIMELINE, *TRACE_FILES.values(), SAMPLER_STATUS, SERVER_LOG, EVAL_DIR])


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
        return self.root / f"{kind}s" / job_id

    def job_files(self, kind: JobKind, job_id: str) -> JobFiles:
        return JobFiles(self.run_dir(kind, job_id))

    def run_result(self, kind: JobKind, job_id: str) -> Path:
        return self.job_files(kind, job_id).result

    def cell_energy(self, cell_id: str) -> Path:
        return self.root / "energy" / f"{cell_id}.json"

    def final(self, name: str = FINAL_TABLE, fmt: str = "parquet") -> Path:
        return self.root / "final" / f"{name}.{fmt}"

    def audit(self) -> Path:
        return self.root / "final" / "audit.md"

    def log(self, rule: str, job_id: str) -> Path:
        return self.root / "logs" / rule / f"{job_id}.log"
