"""Render a job's sbatch script (jinja2) from its resolved ``Job``.

``spec.json`` says everything the job runtime does; ``job.sbatch`` gives the job its
resources and runs the runtime on the spec with the job's interpreter. Every value
interpolated into shell is quoted with ``shlex.quote``; ``#SBATCH`` values come from
schema-checked fields and are checked again here.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import jinja2

from evalwatt.base.errors import UserError
from evalwatt.base.layout import JOB_SPEC, TIMELINE
from evalwatt.base.paths import TEMPLATE_DIR
from evalwatt.jobs.resolve import Job

TEMPLATE = "job.sbatch.j2"
# An #SBATCH line is a comment to bash: these characters are safe there, and a constraint's
# counts and [ ] group (name*2, [a|b]) need * and [ ] (evalwatt.config.slurm_constraint).
_SBATCH_SAFE = re.compile(r"^[A-Za-z0-9._,:@%&|()\[\]*=+-]+\Z")


class RenderError(UserError):
    """A value that cannot be written into a job script safely."""


def _sbatch_value(value: Any) -> str:
    text = str(value)
    if not _SBATCH_SAFE.match(text):
        raise RenderError(f"unsafe value for an #SBATCH line: {text!r}")
    return text


def _comment(value: Any) -> str:
    """A value shown in a comment: one line, no way out of the comment."""
    return " ".join(str(value).split())


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["sbatch"] = _sbatch_value
    env.filters["comment"] = _comment
    return env


def slurm_time(minutes: int) -> str:
    """Minutes as Slurm's [D-]HH:MM:SS."""
    days, rest = divmod(int(minutes), 24 * 60)
    hours, mins = divmod(rest, 60)
    return f"{days}-{hours:02d}:{mins:02d}:00" if days else f"{hours:02d}:{mins:02d}:00"


def render_script(job: Job) -> str:
    """The sbatch script of one job."""
    spec, res = job.spec, job.resources
    context = {
        "kind": job.kind,
        "job_id": job.job_id,
        "job_name": job.scheduler_name,
        "model": job.model_name,
        "backend": spec.model.backend,
        "gpus": res.gpus,
        "cpus": res.cpus,
        "time": slurm_time(res.scheduler.time_limit_min),
        "partition": res.scheduler.partition,
        "account": res.scheduler.account,
        "qos": res.scheduler.qos,
        "constraint": res.scheduler.constraint,
        "modules": res.scheduler.modules,
        "env": job.env,
        "server_command": shlex.join(spec.server.argv),
        "python": job.python,
        "spec_path": str(job.spec_path.resolve()),
        "evaluation": spec.evaluation,
        "cells": job.pack.cells if job.pack else (),
        "timeline_file": TIMELINE,
        "spec_file": JOB_SPEC,
    }
    return _environment().get_template(TEMPLATE).render(**context)
