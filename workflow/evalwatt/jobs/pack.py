"""A packed job: the cells one per-model job runs, or one judge pass scores.

Its id names its folder and its Snakemake target, so it must be stable: the same cells give
the same id on every machine and in every Snakemake process (the one that plans the DAG and
the one Slurm runs the job in), and other cells give another id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

PackKind = Literal["model", "judge-pass"]
PACK_KINDS: tuple[PackKind, ...] = ("model", "judge-pass")


def pack_id(group: str, cell_ids: Iterable[str]) -> str:
    """``<group>__<8 hex>``: the group (a baseline id, a judge's name) and a hash of the sorted
    cell ids, so that a rerun for the missing cells only is another job with another folder."""
    blob = "\n".join(sorted(cell_ids)).encode()
    return f"{group}__{hashlib.sha256(blob).hexdigest()[:8]}"


@dataclass(frozen=True)
class Pack:
    """The cells of one packed job, in the order it runs them."""

    kind: PackKind
    group: str
    """What the cells share: the baseline id (server settings) of a model job, the judge's
    name of a judge pass."""
    model: str
    """The model the job serves: the cells' model, or the judge's."""
    cells: tuple[str, ...]
    estimate_s: float
    """The planner's seconds for the whole job (load, reference idle, cells, cooldowns, pad)."""

    @cached_property
    def id(self) -> str:
        """Worked out once: a judge pass's cells are hundreds, sorted and hashed, and a dry run
        asks its id for each of them."""
        return pack_id(self.group, self.cells)
