"""What the in-job sampler reports (sampler.json), as the job result carries it.

The sampler (evalwatt.sampling) writes it when it stops; the runtime reads it through this
model and copies it into result.json, whose ``schema_version`` covers it. A probe's metadata
is listed field by field, so that a new one is a visible change here, not a silent extra.
"""

from __future__ import annotations

from pydantic import Field

from evalwatt.base.vocabulary import Domain
from evalwatt.contracts.contract import Record


class GpuDevice(Record):
    """One GPU as NVML saw it, so that an admin can match it to their own accounting."""

    visible_as: str = Field(description="its CUDA_VISIBLE_DEVICES entry")
    nvml_index: int
    uuid: str
    name: str
    pci_bus_id: str
    memory_total_mib: int
    power_limit_mw: int | None


class TraceInfo(Record):
    """One trace file the sampler wrote, and where its numbers come from."""

    file: str = Field(description="file name in the job's folder (its first part)")
    parts: tuple[str, ...] = Field(
        default=(),
        description="every finished part, in order, the first being file; empty: file alone",
    )
    rows: int = Field(ge=0, description="rows of all its finished parts")
    source: str = Field(description="probe: nvml, rapl, cpu-model")
    domain: Domain
    is_estimate: bool = Field(description="a model's numbers, not a counter's")
    interval_s: float = Field(gt=0)
    devices: tuple[GpuDevice, ...] | None = Field(default=None, description="nvml")
    driver: str | None = Field(default=None, description="nvml: driver version")
    aux_every_rounds: int | None = Field(
        default=None, description="nvml: rounds between samples of temperature, clocks, memory"
    )
    counter_every_rounds: int | None = Field(
        default=None,
        ge=1,
        description="nvml: rounds between reads of the energy counter (power every round)",
    )
    dense_counter_every_rounds: int | None = Field(
        default=None,
        ge=1,
        description="nvml: rounds between counter reads while the job evaluates",
    )
    zones: tuple[str, ...] | None = Field(default=None, description="rapl: package zones")
    model: str | None = Field(default=None, description="cpu-model: the formula")
    watts_per_core: float | None = Field(default=None, description="cpu-model")
    pid: int | None = Field(default=None, description="cpu-model: process tree followed")
    logical_cpus: int | None = Field(default=None, description="cpu-model")
    failed_tree_walks: int | None = Field(
        default=None, description="cpu-model: samples whose process-tree walk failed"
    )

    @property
    def files(self) -> tuple[str, ...]:
        """The trace's files in order: its parts, or its one file."""
        return self.parts or (self.file,)


class SamplerStatus(Record):
    """What was sampled, how regularly, and why the other probes were not.

    Rewritten at the end of every trace part (a model job or judge pass closes a part after
    each cell) with ``final`` false, and when the sampler stops with ``final`` true: a job
    killed after some cells still has the status of the parts that hold their energy."""

    started_unix: float
    stopped_unix: float = Field(description="when it stopped; not final: when it was written")
    final: bool = Field(
        default=True, description="written as the sampler stopped; false: at a part's end"
    )
    parts: int = Field(default=1, ge=1, description="trace parts finished, each probe's alike")
    interval_s: float = Field(gt=0)
    rounds: int = Field(ge=0)
    late_rounds: int = Field(ge=0, description="rounds that started after their time")
    counter_reads_on_mark: int = Field(
        default=0, ge=0, description="marks at which the job asked for every counter at once"
    )
    max_late_s: float = Field(ge=0)
    median_late_s: float = Field(ge=0)
    traces: dict[str, TraceInfo] = Field(description="by probe")
    unavailable: dict[str, str] = Field(description="probe -> why it could not sample")
