"""The study's view of a table: per setting, the run with the shortest generation.

The study (METHOD.md §1) swept Inspect's ``max_connections`` (10, 100, 1000) and kept, per
(model, benchmark, temperature), the ``max_connections`` whose run was fastest; its figures and
its GLMM then show the lowest temperature (0). This module is the one place that choice is
made: ``fastest`` makes the first (``best_view``: the final table's best view), ``study_view``
the second (one row per (model, benchmark): the figures and the GLMM). Run time is
``inference_duration_s``, the generation window.

Nulls. A row whose ``inference_duration_s`` is null has no measured run time (its generation
window could not be read: a failed or cut-short cell), so nothing shows it was the fastest: it
never wins over a row with a duration. A setting none of whose rows has a duration is still
kept, one row with its nulls and their reasons, rather than vanishing from the view; the view
lists its rows in ``undecided``, so that a caller for whom such a choice is meaningless (the
GLMM, when one of them has an energy) can refuse it. A null or absent temperature (a user's
own table, without the column) loses likewise to a known one.

Ties (equal durations, or none at all) go to the smaller ``max_connections``, fewer concurrent
requests for the same run time, then to the earlier row. Rows come out sorted by their key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

Row = Mapping[str, Any]
T = TypeVar("T")

SETTING = ("model", "benchmark", "temperature")
"""A setting of the sweep: its rows differ only in max_connections (and repeats)."""
PAIR = ("model", "benchmark")
"""What the study's figures and GLMM show one row of."""
COLUMNS = (*SETTING, "max_connections", "inference_duration_s")
"""The columns the choice reads; an absent one reads as null."""


@dataclass(frozen=True)
class View:
    """The rows a view keeps, as indices into its input, in key order; ``merged`` counts the
    keys that had several rows; ``undecided`` holds, per key whose rows no duration told
    apart, those rows' indices (the kept one first)."""

    kept: tuple[int, ...]
    merged: int
    undecided: tuple[tuple[int, ...], ...]

    def take(self, rows: Sequence[T]) -> list[T]:
        """The kept rows of ``rows`` (the input the view was made from)."""
        return [rows[i] for i in self.kept]


def _known_first(value: Any) -> tuple[bool, Any]:
    """A sort key on which a null comes after every value."""
    return (value is None, 0 if value is None else value)


def _speed(rows: Sequence[Row], i: int) -> tuple[Any, ...]:
    """The order in which rows of one setting win: measured and shortest duration first, then
    the smaller max_connections, then the earlier row."""
    row = rows[i]
    return (
        *_known_first(row.get("inference_duration_s")),
        *_known_first(row.get("max_connections")),
        i,
    )


def _view(
    rows: Sequence[Row], key: tuple[str, ...], candidates: Callable[[list[int]], list[int]]
) -> View:
    """Group rows by ``key``, narrow each group with ``candidates``, keep its fastest row."""
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[tuple(row.get(k) for k in key)].append(i)
    kept, undecided = [], []
    for k in sorted(groups, key=lambda k: tuple(map(_known_first, k))):
        group = sorted(candidates(groups[k]), key=lambda i: _speed(rows, i))
        kept.append(group[0])
        if len(group) > 1 and all(rows[i].get("inference_duration_s") is None for i in group):
            undecided.append(tuple(group))
    merged = sum(len(g) > 1 for g in groups.values())
    return View(tuple(kept), merged, tuple(undecided))


def fastest(rows: Sequence[Row]) -> View:
    """Per (model, benchmark, temperature), the row with the shortest generation."""
    return _view(rows, SETTING, lambda group: group)


def study_view(rows: Sequence[Row]) -> View:
    """Per (model, benchmark), the lowest temperature's row with the shortest generation."""

    def lowest_temperature(group: list[int]) -> list[int]:
        low = min(_known_first(rows[i].get("temperature")) for i in group)
        return [i for i in group if _known_first(rows[i].get("temperature")) == low]

    return _view(rows, PAIR, lowest_temperature)


def study_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``study_view``'s rows themselves."""
    return study_view(rows).take(rows)


def best_view(table: pa.Table) -> pa.Table:
    """The final table's best view: ``fastest``'s rows, every column kept."""
    rows = table.select([c for c in COLUMNS if c in table.column_names]).to_pylist()
    return table.take(list(fastest(rows).kept))
