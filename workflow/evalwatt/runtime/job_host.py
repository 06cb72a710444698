"""Where and with what a job ran: host, Slurm variables, package versions, GPUs; and the
job's folder made ready (an earlier attempt set aside, Inspect's data kept in the job)."""

from __future__ import annotations

import os
import platform
import socket
import time
from importlib import metadata as importlib_metadata
from typing import Any

from evalwatt import __version__
from evalwatt.base.layout import JobFiles

SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "SLURM_CPUS_PER_TASK",
    "SLURM_GPUS",
    "SLURM_JOB_GPUS",
    "SLURM_STEP_ID",
    "SLURM_CLUSTER_NAME",
)


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"evalwatt": __version__, "python": platform.python_version()}
    for dist in ("inspect-ai", "inspect-evals", "vllm", "llama-cpp-python", "nvidia-ml-py"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def host_fields() -> dict[str, Any]:
    """The fields of a job result that say where it ran (``JobResult``: host to versions)."""
    return {
        "host": socket.gethostname(),
        "scheduler_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm": {k: os.environ[k] for k in SLURM_VARIABLES if k in os.environ},
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": versions(),
    }


def set_aside_previous_attempt(files: JobFiles) -> None:
    """Keep what a failed earlier attempt left, for the record, out of this attempt's way."""
    if files.root.exists() and any(files.root.iterdir()):
        files.root.rename(files.attempt(time.strftime("%Y%m%dT%H%M%S")))


def prepare_job_dir(files: JobFiles) -> None:
    """An empty folder for this attempt. Inspect writes its traces and sample buffer under
    XDG_DATA_HOME (platformdirs): kept with the job, never in the home directory (unless the
    user chose a place)."""
    set_aside_previous_attempt(files)
    os.environ.setdefault("XDG_DATA_HOME", str(files.inspect_data))
    files.root.mkdir(parents=True, exist_ok=True)
