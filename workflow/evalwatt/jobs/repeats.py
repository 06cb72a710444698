"""Repeats of a job: the same spec under its own id and folder (``evalwatt submit CELL
--repeats N``, and the energy step reading a repeat's record)."""

from __future__ import annotations

import dataclasses

from evalwatt.base.layout import Layout, repeat_id
from evalwatt.jobs.resolve import Job


def repeat_job(job: Job, layout: Layout, n: int) -> Job:
    """Repeat ``n`` of a cell job: the same spec under its own id and folder."""
    rid = repeat_id(job.job_id, n)
    spec = job.spec.model_copy(
        update={"job_id": rid, "run_dir": layout.run_dir("cell", rid).resolve()}
    )
    return dataclasses.replace(
        job,
        spec=spec,
        script=layout.job_script("cell", rid),
        spec_path=layout.job_spec("cell", rid),
        files=layout.job_files("cell", rid),
    )
