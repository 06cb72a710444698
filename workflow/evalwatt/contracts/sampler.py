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

    file: str = Field(description="file name in the job's folder")
    rows: int = Field(ge=0)
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


class SamplerStatus(Record):
    """What was sampled, how regularly, and why the other probes were not."""

    started_unix: float
    stopped_unix: float
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
