"""The words the contracts share, each defined once: job kinds, marks, statuses, domains.

*Domain* is what a reading covers (the GPUs or the CPU package); *family* is a column family
of the final table, where measured and modelled numbers of one domain never mix (``cpu`` is
RAPL, measured; ``cpu_est`` is the CPU-time model, an estimate).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

JobKind = Literal["cell", "baseline", "model", "judge", "judge-pass"]
"""What a ``result.json`` is. Slurm runs ``cell`` and ``baseline`` jobs (per-cell execution),
``model`` jobs (per-model execution: one server start for all the cells of a model's server
settings) and ``judge-pass`` jobs (both: one judge model loaded once for many cells). A
``cell`` result is written by a cell job or, cell by cell, by a model job; a ``judge`` result
is the one a judge pass writes for each cell it scores."""
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)
RUN_KINDS: tuple[JobKind, ...] = ("cell", "baseline", "model", "judge-pass")
"""The kinds of job the job runtime runs (``JobSpec.kind``)."""

Execution = Literal["per-cell", "per-model"]
"""How a run's cells map onto jobs: one job per cell and a load-only baseline per server
setting (the study's layout, what a per-job accounting such as CEEMS can split), or one job
per model and server settings measuring each cell in its own windows."""
EXECUTIONS: tuple[Execution, ...] = get_args(Execution)


class Mark(StrEnum):
    """Phase marks a job stamps in its timeline (unix seconds), in the order they happen.

    A cell runs its Inspect evaluation between ``inference_*``; a judge job scores a cell's
    log between ``judging_*``, so that judging never reads as inference; a baseline has
    neither. Inside either window, ``generation_*`` bound the model's own work: the first
    request sent and the last response received, read from Inspect's model events after the
    fact (absent, with the reason in the job's result, where the log has none).

    A model job holds its loaded model idle between ``reference_idle_*`` (the in-job
    baseline) and waits between ``cooldown_*`` before each cell for the GPUs' power to come
    back near that reference. ``steady_*`` bound a cell's steady state (ML.ENERGY's: its
    ``max_connections`` requests in flight), stamped from the log after the fact like
    ``generation_*``.
    """

    JOB_START = "job_start"
    LOAD_START = "load_start"
    READY = "ready"
    WARM_UP_START = "warm_up_start"
    """A server that does not warm itself (``transformers serve``): one wave of concurrent
    requests, identical in every job of its model configuration, starts (runtime.serving)."""
    WARM_UP_END = "warm_up_end"
    REFERENCE_IDLE_START = "reference_idle_start"
    """A model job: the loaded model held idle, its in-job baseline, starts."""
    REFERENCE_IDLE_END = "reference_idle_end"
    COOLDOWN_START = "cooldown_start"
    """A packed cell: waiting for the GPUs' power to come back before its evaluation."""
    COOLDOWN_END = "cooldown_end"
    INFERENCE_START = "inference_start"
    GENERATION_START = "generation_start"
    """First request sent to the model server (Inspect's first model event of the window)."""
    STEADY_START = "steady_start"
    """ML.ENERGY's steady state opens: the cell's ``max_connections``-th request started."""
    STEADY_END = "steady_end"
    """The steady state closes: fewer than ``max_connections`` requests remain."""
    GENERATION_END = "generation_end"
    """Last response received from the model server (the latest model call's completion)."""
    INFERENCE_END = "inference_end"
    JUDGING_START = "judging_start"
    JUDGING_END = "judging_end"
    EXIT = "exit"
    SCORING_START = "scoring_start"
    SCORING_END = "scoring_end"
    PAD_START = "pad_start"
    PAD_SETTLED = "pad_settled"
    """``PAD_SETTLE_S`` into the pad: the GPUs' power has decayed to cold idle."""
    PAD_END = "pad_end"
    JOB_END = "job_end"


class JobStatus(StrEnum):
    """How a finished job went. A job that failed writes no result at all."""

    OK = "ok"
    INCOMPLETE = "incomplete"
    """It finished, but its result lists problems to read before using its numbers."""


class Domain(StrEnum):
    """What an energy reading covers."""

    GPU = "gpu"
    CPU = "cpu"


class Family(StrEnum):
    """A column family of the final table: a domain, measured or estimated."""

    GPU = "gpu"
    CPU = "cpu"
    CPU_EST = "cpu_est"

    @classmethod
    def of(cls, domain: Domain, is_estimate: bool) -> Family:
        return cls(f"{domain.value}_est" if is_estimate else domain.value)


FAMILY_TITLES = {
    Family.GPU: "GPU energy, measured (NVML energy counter)",
    Family.CPU: "CPU package energy, measured (RAPL counter)",
    Family.CPU_EST: "CPU energy, ESTIMATE (CPU time x watts per core)",
}
