"""The contracts' fields as Markdown, from their JSON Schemas (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from evalwatt.contracts.contract import Contract
from evalwatt.contracts.record import CellRecord
from evalwatt.contracts.result import JobResult
from evalwatt.contracts.row import TableRow
from evalwatt.contracts.spec import JobSpec
from evalwatt.contracts.timeline import TimelineFile

CONTRACTS: tuple[type[Contract], ...] = (JobSpec, TimelineFile, JobResult, CellRecord, TableRow)


def _type(schema: dict[str, Any]) -> str:
    """A field's type in a few words: ``$ref`` names, unions joined with ``|``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " \\| ".join(_type(s) for s in schema["anyOf"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return " / ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        items = schema.get("items") or schema.get("prefixItems") or {}
        inner = ", ".join(_type(i) for i in items) if isinstance(items, list) else _type(items)
        return f"list of {inner}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    return str(kind)


def _table(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"**{name}**", "", "| field | type | meaning |", "|---|---|---|"]
    required = set(schema.get("required", []))
    for field, sub in schema.get("properties", {}).items():
        optional = "" if field in required else " (optional)"
        text = " ".join(str(sub.get("description", "")).split())
        lines.append(f"| `{field}` | {_type(sub)}{optional} | {text} |")
    return [*lines, ""]


def describe_contract(model: type[Contract]) -> str:
    """One contract and the records it is made of, as Markdown tables."""
    schema = model.model_json_schema()
    lines = [f"### {model.FILE}, schema_version {model.known_version()}", ""]
    lines += [" ".join(str(schema.get("description", "")).split()), ""]
    lines += _table(model.__name__, schema)
    for name, sub in schema.get("$defs", {}).items():
        if "properties" in sub:
            lines += _table(name, sub)
    return "\n".join(lines)


def describe_contracts() -> str:
    return "\n".join(describe_contract(m) for m in CONTRACTS)
