"""What the three cluster sources (CEEMS API, Prometheus, sacct) are once their raw files are
read: the facts of a finished job they need, what a source reads into (``Reading``), and the
job-total source that CEEMS and sacct both are. Collecting those files is
``evalwatt.energy.cluster.collection``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evalwatt.base.layout import JobFiles
from evalwatt.contracts.accounting import AccountingFile, Exchange, Outcome, SourceName
from evalwatt.contracts.contract import read_contract
from evalwatt.contracts.result import JobResult
from evalwatt.energy.cluster.settings import Settings
from evalwatt.energy.sources import EnergySource, Unavailable
from evalwatt.energy.trace import WindowEnergy
from evalwatt.sampling.probes import parse_visible_devices


@dataclass(frozen=True)
class JobFacts:
    """What the cluster sources need to know about one finished job (from its result.json)."""

    job_dir: Path
    scheduler_job_id: str | None
    host: str
    marks: Mapping[str, float]
    gpu_uuids: tuple[str, ...] | None
    """The GPUs the sampler opened (NVML), or None when it recorded none."""
    gpus_allocated: int | None
    """GPUs the job was given (CUDA_VISIBLE_DEVICES), or None when unknown."""

    @classmethod
    def of(cls, job_dir: Path) -> JobFacts:
        result = read_contract(JobResult, JobFiles(job_dir).result)
        nvml = result.sampler.traces.get("nvml") if result.sampler else None
        uuids = tuple(d.uuid for d in nvml.devices) if nvml and nvml.devices else None
        visible = parse_visible_devices(result.cuda_visible_devices)
        return cls(
            job_dir=Path(job_dir),
            scheduler_job_id=result.scheduler_job_id,
            host=result.host,
            marks={str(k): v for k, v in result.marks.items()},
            gpu_uuids=uuids,
            gpus_allocated=len(visible) if visible is not None else None,
        )

    @property
    def span(self) -> tuple[float, float]:
        return self.marks["job_start"], self.marks["job_end"]

    @property
    def elapsed_s(self) -> float:
        start, end = self.span
        return end - start

    def record(
        self,
        source: SourceName,
        settings: Settings,
        started: float,
        exchanges: list[Exchange],
        status: Outcome,
        detail: str | None,
        context: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AccountingFile:
        """The raw file's record of one source's collection for this job, ended now."""
        return AccountingFile(
            source=source,
            job_dir=str(self.job_dir),
            scheduler_job_id=self.scheduler_job_id,
            host=self.host,
            marks=dict(self.marks),
            settings=settings.public(),
            started_unix=started,
            finished_unix=clock(),
            exchanges=tuple(exchanges),
            status=status,
            detail=detail,
            context=dict(context or {}),
        )


class JobTotalSource:
    """A source that knows the job's total only (the CEEMS API, sacct): no window of the job
    can be cut from it. A subclass gives its ``name``, ``domain``, what its span belongs to
    (``span_of``) and ``total``."""

    name: str
    domain: str
    is_estimate = False
    span_of = "job"

    def total(self) -> tuple[float, float | None, float | None]:
        """(J, start, end) of the job as the source counts it; Unavailable with the reason."""
        raise NotImplementedError

    def window(self, start: float, end: float) -> WindowEnergy:
        raise Unavailable(f"{self.name} gives job totals only, not a window of the job")

    def job(self) -> WindowEnergy:
        energy_j, start, end = self.total()
        if start is None or end is None:
            raise Unavailable(f"{self.name}: the {self.span_of} has no start or end time")
        return WindowEnergy(start, end, energy_j, {}, 0.0, None)


@dataclass(frozen=True)
class Reading:
    """One source's reading of its raw file for one job: the source its terms are cut from,
    and what it reports besides them (``evalwatt.contracts.record.SourceFigures``)."""

    source: EnergySource
    span: tuple[float, float] | None
    """The job as the source sees it, unix s."""
    reported_j: float | None
    """The job total as reported (PUE included if any), or None with ``reported_null_reason``."""
    reported_null_reason: str | None
    notes: tuple[str, ...]
    scope: Literal["gpu", "node"] = "gpu"
    pue: float | None = None
    """The PUE divided out of the terms (``accounting.pue``)."""
    includes_pue: bool = False
    host_j: float | None = None
    """CEEMS: the job's modelled share of host power."""
    host_null_reason: str | None = None
    exclusive: bool | None = None
    """sacct: the node ran no other job meanwhile (None: unknown)."""
    exclusive_detail: str | None = None
