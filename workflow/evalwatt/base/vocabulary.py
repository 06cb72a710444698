"""The words the contracts share, each defined once: job kinds, marks, statuses, domains.

*Domain* is what a reading covers (the GPUs or the CPU package); *family* is a column family
of the final table, where measured and modelled numbers of one domain never mix (``cpu`` is
RAPL, measured; ``cpu_est`` is the CPU-time model, an estimate).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

JobKind = Literal["cell", "baseline", "judge"]
JOB_KINDS: tuple[JobKind, ...] = get_args(JobKind)


class Mark(StrEnum):
    """Phase marks a job stamps in its timeline (unix seconds), in the order they happen.

    A cell runs its Inspect evaluation between ``inference_*``; a judge job scores a cell's
    log between ``judging_*``, so that judging never reads as inference; a baseline has
    neither. Inside either window, ``generation_*`` bound the model's own work: the first
    request sent and the last response received, read from Inspect's model events after the
    fact (absent, with the reason in the job's result, where the log has none).
    """

    JOB_START = "job_start"
    LOAD_START = "load_start"
    READY = "ready"
    INFERENCE_START = "inference_start"
    GENERATION_START = "generation_start"
    """First request sent to the model server (Inspect's first model event of the window)."""
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
