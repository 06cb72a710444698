"""Read a TSV model sheet into model entries typed by the fields of the model entry.

Each cell becomes the type of its column's field in ``evalwatt.config.model_entry.ModelEntry``
(whole number, decimal number, boolean, a comma-separated list, or a string; empty means the
default, or null where the field allows it). The entries are validated and completed by
``evalwatt.config.load``, which knows the line each came from.
"""

from __future__ import annotations

import math
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from evalwatt.base.yamlfile import YamlError, read_text
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.types import ConfigError

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Column:
    """How a sheet column is read: the Python type of its field's values, and whether an
    empty cell means null."""

    kind: type
    nullable: bool

    @classmethod
    def of(cls, field: FieldInfo) -> Column:
        """The column of a field of the model entry (``int | None``, ``Literal[4, 8]``,
        ``tuple[str, ...]``, ...)."""
        annotation, args = field.annotation, get_args(field.annotation)
        nullable = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
        if nullable:
            (annotation,) = [a for a in args if a is not type(None)]
        if get_origin(annotation) is Annotated:  # a pattern: Annotated[str, Matching(...)]
            annotation = get_args(annotation)[0]
        origin = get_origin(annotation)
        if origin is Literal:
            return cls(type(get_args(annotation)[0]), nullable)
        if origin in (tuple, list):
            return cls(tuple, nullable)
        if not isinstance(annotation, type):
            raise TypeError(f"model entry field of unsupported type {field.annotation}")
        return cls(annotation, nullable)


COLUMNS = {name: Column.of(field) for name, field in ModelEntry.model_fields.items()}
"""The sheet's allowed columns: the model entry's fields, in their order."""


def _convert_cell(column: str, text: str, where: str) -> Any:
    """Turn one TSV cell into the type of its field."""
    text = text.strip()
    kind = COLUMNS[column]
    if text == "" and kind.nullable:
        return None
    if text == "" and kind.kind not in (tuple, str):
        raise ConfigError(f"{where}: column {column} = '': empty, but the column is required")
    problem = None
    if kind.kind is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind.kind is bool:
        if text.lower() in {"true", "false"}:
            return text.lower() == "true"
        problem = "expected true or false"
    elif kind.kind is int:
        if _INTEGER.fullmatch(text):
            return int(text)
        problem = "expected a whole number such as 16"
    elif kind.kind is float:
        if _DECIMAL.fullmatch(text) and math.isfinite(float(text)):
            return float(text)
        problem = "not a finite number; expected a decimal number such as 7.62"
    if problem:
        raise ConfigError(f"{where}: column {column} = {text!r}: {problem}")
    return text


@dataclass(frozen=True)
class SheetRow:
    """One model of the sheet and the line it was read from (1 is the header)."""

    line: int
    entry: dict[str, Any]


def read_model_sheet(path: Path) -> list[SheetRow]:
    """Read a TSV model sheet; each non-blank row becomes a model entry (validated later).

    Tab-separated, no quoting; UTF-8 with or without a byte-order mark; LF or CRLF line ends.
    Every row must have as many fields as the header.
    """
    try:
        text = read_text(path, "model sheet")
    except YamlError as exc:
        raise ConfigError(str(exc)) from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if not lines or not lines[0].strip():
        raise ConfigError(f"{path}:1: empty model sheet; the first line must name the columns")
    header = [c.strip() for c in lines[0].split("\t")]
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise ConfigError(
            f"{path}:1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"allowed columns: {', '.join(COLUMNS)}"
        )
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise ConfigError(f"{path}:1: column(s) {', '.join(twice)} appear twice in the header")
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{line_no}"
        if len(fields) != len(header):
            raise ConfigError(
                f"{where}: {len(fields)} tab-separated fields, but the header has "
                f"{len(header)} ({', '.join(header)}); every row needs one field per column "
                "(empty for the default)"
            )
        entry = {
            col: _convert_cell(col, cell, where) for col, cell in zip(header, fields, strict=True)
        }
        rows.append(SheetRow(line_no, {k: v for k, v in entry.items() if v is not None}))
    if not rows:
        raise ConfigError(f"{path}: the model sheet has a header but no model rows")
    return rows
