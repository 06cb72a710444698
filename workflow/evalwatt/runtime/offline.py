"""What a job on an offline compute node needs staged, and the checks it makes first.

Compute nodes have no internet, and jobs run with ``HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
TRANSFORMERS_OFFLINE=1``. ``evalwatt stage`` (``evalwatt.ops.staging``, on the login node)
stages weights and datasets and writes the stage manifest; a job checks it here before it
starts anything (``require_staged``) and resolves its weights' path
(``evalwatt.base.model_path.resolve_model_path``), so that a missing file fails the job at once
with the command to run, not after the libraries' ~5 minutes of offline retries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evalwatt.base.errors import UserError
from evalwatt.base.layout import Layout
from evalwatt.contracts.contract import ContractError, read_contract
from evalwatt.contracts.spec import JobSpec
from evalwatt.contracts.staging import StageManifest

OFFLINE_TASK_PREFIX = "evalwatt/"
CACHE_VARIABLES = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_DATASETS_CACHE",
    "INSPECT_EVALS_CACHE_DIR",
)
"""Variables of ``job.env`` that say where the libraries keep downloaded data."""
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
STAGE_COMMAND = "evalwatt stage --download --configfile <your config>"


class NotStagedError(UserError):
    """A job needs data that is not staged for offline compute nodes."""


def task_key(task: str, task_args: Mapping[str, Any]) -> str:
    return f"{task} {json.dumps(dict(task_args), sort_keys=True)}"


def offline_by_nature(task: str) -> bool:
    return task.startswith(OFFLINE_TASK_PREFIX)


def cache_env(job_env: Mapping[str, str]) -> dict[str, str]:
    """The cache variables of the config's ``job.env``, ``$VARS`` and ``~`` expanded."""
    return {
        k: os.path.expanduser(os.path.expandvars(str(v)))
        for k, v in job_env.items()
        if k in CACHE_VARIABLES
    }


def read_manifest(path: Path) -> StageManifest | None:
    if not path.exists():
        return None
    return read_contract(StageManifest, path)


def require_staged(spec: JobSpec, environ: Mapping[str, str] | None = None) -> None:
    """Fail a job at once when its dataset is not staged for offline nodes.

    For the job runtime, first thing in ``run_job`` (before any folder is touched, the
    sampler or the server started). A cell whose task is not offline by nature must be in
    the run's stage manifest, staged with the cache variables this job has; anything else
    raises ``NotStagedError`` with the command to run. Weights are checked by the runtime
    when it resolves their path (``evalwatt.base.model_path.resolve_model_path``)."""
    if spec.evaluation is None or offline_by_nature(spec.evaluation.task):
        return
    env = os.environ if environ is None else environ
    task, args = spec.evaluation.task, spec.evaluation.task_args
    path = Layout(Path(spec.run_dir).parent.parent).stage_manifest()
    try:
        manifest = read_manifest(path)
    except ContractError as exc:
        raise NotStagedError(f"{exc}; rerun `{STAGE_COMMAND}` on the login node") from None
    entry = None
    if manifest is not None:
        entry = next(
            (d for d in manifest.datasets if task_key(d.task, d.task_args) == task_key(task, args)),
            None,
        )
    if entry is None:
        raise NotStagedError(
            f"task {task} {json.dumps(args, sort_keys=True)} is not staged for offline compute "
            f"nodes (not in {path}): on the login node run `{STAGE_COMMAND}`"
        )
    here = {k: v for k, v in env.items() if k in CACHE_VARIABLES}
    if here != entry.caches:
        raise NotStagedError(
            f"task {task} was staged with {entry.caches or 'no cache variables'} but this job "
            f"reads {here or 'no cache variables'} (set them in job.env): on the login node run "
            f"`{STAGE_COMMAND}`"
        )
