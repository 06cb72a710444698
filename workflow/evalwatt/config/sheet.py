"""Read a TSV model sheet into model entries typed as the model schema asks.

Each cell becomes the JSON type of its column in ``workflow/schemas/model.schema.yaml``
(integer, number, boolean, a comma-separated array, or a string; empty means the default,
or null where the column allows it). The entries are validated and completed by
``evalwatt.config.load``, which knows the line each came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalwatt.base.yamlfile import YamlError, read_text
from evalwatt.config.schema import MODEL_SCHEMA, load_schema
from evalwatt.config.types import ConfigError

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _convert_cell(column: str, text: str, prop: Mapping[str, Any], where: str) -> Any:
    """Turn one TSV cell into the JSON type the model schema asks for."""
    text = text.strip()
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "enum" in prop and not types:
        types = sorted({type(v).__name__ for v in prop["enum"]})
        types = ["integer" if t == "int" else "string" for t in types]
    if text == "" and "null" in types:
        return None
    if text == "" and "array" not in types and "string" not in types:
        raise ConfigError(f"{where}: column {column} = '': empty, but the column is required")
    problem = None
    if "array" in types:
        return [part.strip() for part in text.split(",") if part.strip()]
    if "boolean" in types:
        if text.lower() in {"true", "false"}:
            return text.lower() == "true"
        problem = "expected true or false"
    elif "integer" in types:
        if _INTEGER.fullmatch(text):
            return int(text)
        problem = "expected a whole number such as 16"
    elif "number" in types:
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
    properties = load_schema(MODEL_SCHEMA)["properties"]
    if not lines or not lines[0].strip():
        raise ConfigError(f"{path}:1: empty model sheet; the first line must name the columns")
    header = [c.strip() for c in lines[0].split("\t")]
    unknown = [c for c in header if c not in properties]
    if unknown:
        raise ConfigError(
            f"{path}:1: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"allowed columns: {', '.join(properties)}"
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
            col: _convert_cell(col, cell, properties[col], where)
            for col, cell in zip(header, fields, strict=True)
        }
        rows.append(SheetRow(line_no, {k: v for k, v in entry.items() if v is not None}))
    if not rows:
        raise ConfigError(f"{path}: the model sheet has a header but no model rows")
    return rows
