"""The one place that knows where every file of a run lives.

Snakemake rules, the job runtime, the energy step and the final table all ask this module for
paths, so the layout can change in one place. Passing a wildcard such as ``"{cell}"`` as the
id gives the pattern a Snakemake rule declares. The layout is drawn in docs/outputs.md::

    results/<run>/
      plan/plan.json                        the planned matrix (GPU counts, cells, baselines)
      jobs/<kind>/<id>/job.sbatch           rendered job script (kind: cell, baseline, judge)
      jobs/<kind>/<id>/spec.json            what the job runtime does, read by the script
      <kind>s/<id>/                         what one job wrote:
        timeline.json                         phase marks, unix seconds
        trace-gpu.parquet                     NVML samples (measured)
        trace-cpu.parquet                     RAPL samples (measured, where readable)
        trace-cpu-est.parquet                 CPU-time model (an estimate)
        sampler.json                          what was sampled, what could not be and why
        server.log                            inference server output
        eval/                                 Inspect logs (.eval)
        result.json                           manifest, written last: the job finished
      energy/<cell>.json                    energy terms of a cell, with inputs and formulas
      final/energy_table.{parquet,csv,md}   one row per cell
      final/energy_table_best.{parquet,csv,md}  fastest max_connections per setting
      final/audit.md                        job-by-job audit trail for admins
      logs/<rule>/<id>.log                  Snakemake logs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

JobKind = Literal["cell", "baseline", "judge"]

TIMELINE = "timeline.json"
SERVER_LOG = "server.log"
EVAL_DIR = "eval"
RESULT = "result.json"

FINAL_TABLE = "energy_table"
FINAL_BEST = "energy_table_best"
FINAL_FORMATS = ("parquet", "csv", "md")


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
        return self.job_dir(kind, job_id) / "job.sbatch"

    def job_spec(self, kind: JobKind, job_id: str) -> Path:
        return self.job_dir(kind, job_id) / "spec.json"

    def run_dir(self, kind: JobKind, job_id: str) -> Path:
        return self.root / f"{kind}s" / job_id

    def run_result(self, kind: JobKind, job_id: str) -> Path:
        return self.run_dir(kind, job_id) / RESULT

    def cell_energy(self, cell_id: str) -> Path:
        return self.root / "energy" / f"{cell_id}.json"

    def final(self, name: str = FINAL_TABLE, fmt: str = "parquet") -> Path:
        return self.root / "final" / f"{name}.{fmt}"

    def audit(self) -> Path:
        return self.root / "final" / "audit.md"

    def log(self, rule: str, job_id: str) -> Path:
        return self.root / "logs" / rule / f"{job_id}.log"


# The in-job sampler's trace files, by source. Measured and modelled never share a file.
TRACE_FILES = {
    "nvml": "trace-gpu.parquet",
    "rapl": "trace-cpu.parquet",
    "cpu-model": "trace-cpu-est.parquet",
}
SAMPLER_STATUS = "sampler.json"
