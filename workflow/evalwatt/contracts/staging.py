"""stage/manifest.json: what ``evalwatt stage`` staged for offline compute nodes, where and when.

Written on the login node (``evalwatt.ops.staging``), read by every job before it starts
(``evalwatt.runtime.offline.require_staged``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from evalwatt.contracts.contract import Contract, Record


class StagedModel(Record):
    name: str
    hf_id: str
    path: str = Field(description="weights as the job reads them ($VARS expanded)")
    source: Literal["package", "disk", "downloaded"]
    staged_at: str = Field(description="ISO time, UTC")


class StagedDataset(Record):
    benchmark: str
    task: str
    task_args: dict[str, Any]
    caches: dict[str, str] = Field(description="cache variables the task was loaded with")
    staged_at: str = Field(description="ISO time, UTC")


class StageManifest(Contract):
    """What `evalwatt stage` staged for offline compute nodes, where and when."""

    FILE: ClassVar[str] = "stage manifest (stage/manifest.json)"

    schema_version: Literal[1] = 1
    run: str
    written_at: str = Field(description="ISO time, UTC")
    models: tuple[StagedModel, ...]
    datasets: tuple[StagedDataset, ...]
    offline_tasks: tuple[str, ...] = Field(description="tasks that need nothing staged")
