"""The config reference of docs/config.md, generated from the schemas, which are generated
from the config's models (``evalwatt schema config`` prints it, ``python -m evalwatt.config``
writes it into the page; tests/test_quality.py checks that the page embeds it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evalwatt.config.generate import CONFIG_SCHEMA, MODEL_SCHEMA, json_schema
from evalwatt.config.schema import registry


def _follow(schema: Mapping[str, Any], resolver: Any) -> tuple[Mapping[str, Any], Any]:
    """``schema`` with its ``$ref`` followed through the schemas' registry, and the resolver
    (a ``referencing`` Resolver) of the schema that holds it, for the ``$ref``s inside it."""
    ref = schema.get("$ref")
    if ref is None:
        return schema, resolver
    resolved = resolver.lookup(ref)
    return _follow(resolved.contents, resolved.resolver)


def _kind(schema: Mapping[str, Any]) -> str:
    """The type column: the enum's values, the type(s), or each ``oneOf`` branch's type."""
    if "enum" in schema:
        return " / ".join(map(str, schema["enum"]))
    kind = schema.get("type")
    if kind is None and "oneOf" in schema:
        kind = [branch.get("type", "object") for branch in schema["oneOf"]]
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind or "object")


def _default(key: str, sub: Mapping[str, Any], parent: Mapping[str, Any]) -> str:
    if "default" in sub:
        return f"`{json.dumps(sub['default'])}`"
    return "required" if key in parent.get("required", []) else ""


def _config_rows(schema: Mapping[str, Any], prefix: str, resolver: Any) -> list[str]:
    """One row per key of ``schema``'s properties, and of the objects and maps under them."""
    schema, resolver = _follow(schema, resolver)
    rows = []
    for key, sub in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        resolved, inner = _follow(sub, resolver)
        text = " ".join(str(resolved.get("description", sub.get("description", ""))).split())
        text = text.replace("|", "\\|")  # a bar in a description would end the table's cell
        rows.append(f"| `{name}` | {_kind(resolved)} | {_default(key, sub, schema)} | {text} |")
        if "properties" in resolved:
            rows += _config_rows(resolved, f"{name}.", inner)
        extra = resolved.get("additionalProperties")
        if isinstance(extra, dict):
            rows += _config_rows(extra, f"{name}.<name>.", inner)
    return rows


def describe_schema() -> str:
    """Every config key with its type, default and description, as Markdown (docs/config.md)."""
    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    resolver = registry().resolver(base_uri=CONFIG_SCHEMA)
    lines = [*header, *_config_rows(json_schema(CONFIG_SCHEMA), "", resolver)]
    lines += ["", "Each model (inline list item or sheet row):", "", *header]
    model = json_schema(MODEL_SCHEMA)
    for key, sub in model["properties"].items():
        text = " ".join(str(sub.get("description", "")).split())
        lines.append(f"| `{key}` | {_kind(sub)} | {_default(key, sub, model)} | {text} |")
    return "\n".join(lines) + "\n"


REFERENCE_MARK = "Generated from the schema (`evalwatt schema config`):\n\n"
"""The line of docs/config.md after which the page is ``describe_schema()``, to its end."""


def with_reference(page: str) -> str:
    """docs/config.md with its generated reference (everything after ``REFERENCE_MARK``)
    replaced by the current one."""
    head, mark, _ = page.partition(REFERENCE_MARK)
    if not mark:
        raise ValueError(f"the page has no line {REFERENCE_MARK.strip()!r}")
    return head + mark + describe_schema()
