"""The config's JSON Schemas, generated from its models (``evalwatt.config.run_config``).

The models are the one source of every key, type, bound, pattern, default and description.
From them come the two schema files of workflow/schemas (what the loader validates a file
against, and what an editor or Snakemake user reads) and, from those, the reference of
docs/config.md (``evalwatt.config.docs``). ``python -m evalwatt.config`` rewrites all three;
tests/unit/test_config.py checks that the committed files are what the models generate.

Pydantic's own JSON Schema is rewritten into the plain form a reader expects: nested sections
inline rather than behind ``$ref``, ``type: [string, "null"]`` rather than ``anyOf``, a map's
key pattern as ``propertyNames``, no generated titles; a model entry is a ``$ref`` to the
model schema file, which validates one sheet row on its own.
"""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from evalwatt.base.atomic import write_text
from evalwatt.base.paths import SCHEMA_DIR
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.run_config import RunConfig
from evalwatt.config.section import Section

CONFIG_SCHEMA = "config.schema.yaml"
MODEL_SCHEMA = "model.schema.yaml"
ROOTS: dict[str, type[BaseModel]] = {CONFIG_SCHEMA: RunConfig, MODEL_SCHEMA: ModelEntry}
_FILE_OF = {model.__name__: name for name, model in ROOTS.items()}
HEADER = (
    "# Generated from the models of evalwatt.config (run_config.py, model_entry.py,\n"
    "# accounting.py) by `python -m evalwatt.config`: edit the models, never this file.\n"
)
_ORDER = [
    "$schema",
    "$id",
    "title",
    "description",
    "type",
    "enum",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "uniqueItems",
    "minProperties",
    "propertyNames",
    "additionalProperties",
    "required",
    "items",
    "oneOf",
    "default",
    "properties",
]


def _nullable(branches: list[dict[str, Any]]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` as X with ``type: [X's type, "null"]``."""
    (kept,) = [b for b in branches if b != {"type": "null"}]
    if len(branches) != 2 or "type" not in kept:
        raise ValueError(f"unsupported union in a config model: {branches}")
    return {**kept, "type": [kept["type"], "null"]}


def _plain(node: Mapping[str, Any], defs: Mapping[str, Any], root: str) -> dict[str, Any]:
    """One schema of pydantic's output in the plain form (see the module's docstring)."""
    out = dict(node)
    ref = out.pop("$ref", None)
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name in _FILE_OF and name != root:
            return {"$ref": _FILE_OF[name], **out}
        out = {**_plain(defs[name], defs, root), **out}
    out.pop("title", None)
    out.pop("$defs", None)  # inlined where used
    if "description" in out:
        out["description"] = " ".join(str(out["description"]).split())
    if "anyOf" in out:
        out = {**_nullable([_plain(b, defs, root) for b in out.pop("anyOf")]), **out}
    if "enum" in out:
        out.pop("type", None)  # the values say it; one message per bad value, not two
    if out.get("additionalProperties") is True:
        del out["additionalProperties"]
    patterns = out.pop("patternProperties", None)
    if patterns:
        ((pattern, values),) = patterns.items()
        out["propertyNames"] = {"pattern": pattern}
        out["additionalProperties"] = values
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), Mapping):
            out[key] = _plain(out[key], defs, root)
    if "oneOf" in out:
        out["oneOf"] = [_plain(b, defs, root) for b in out["oneOf"]]
    if "properties" in out:
        out["properties"] = {k: _plain(v, defs, root) for k, v in out["properties"].items()}
    rank = {key: i for i, key in enumerate(_ORDER)}
    return dict(sorted(out.items(), key=lambda item: rank.get(item[0], len(rank))))


def _sections() -> Iterator[type[Section]]:
    """Every model of the config (the subclasses of ``Section``, at any depth)."""
    todo = list(Section.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        yield cls


@cache
def field_docs() -> dict[str, dict[str, str]]:
    """{model: {field: the docstring under the field}}, read from the models' source files.

    A field's docstring is its description. Pydantic's ``use_attribute_docstrings`` would
    read them on import, class by class, for ~0.3 s of every command; they are needed only
    here, to write the schema."""
    docs: dict[str, dict[str, str]] = {}
    for path in {inspect.getsourcefile(cls) for cls in _sections()}:
        tree = ast.parse(Path(str(path)).read_text(encoding="utf-8"))
        for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
            fields = docs.setdefault(cls.name, {})
            for field, doc in zip(cls.body, cls.body[1:], strict=False):
                if (
                    isinstance(field, ast.AnnAssign)
                    and isinstance(field.target, ast.Name)
                    and isinstance(doc, ast.Expr)
                    and isinstance(doc.value, ast.Constant)
                    and isinstance(doc.value.value, str)
                ):
                    fields[field.target.id] = doc.value.value
    return docs


def _describe(node: dict[str, Any], model: str) -> None:
    """Give each property of ``node`` (pydantic's schema of ``model``) its field's docstring."""
    docs = field_docs().get(model, {})
    for field, sub in node.get("properties", {}).items():
        if field in docs:
            sub["description"] = docs[field]


@cache
def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (config.schema.yaml or model.schema.yaml) generated from its
    model (cached: never mutate it)."""
    model = ROOTS[name]
    generated = model.model_json_schema()
    _describe(generated, model.__name__)
    for def_name, node in generated.get("$defs", {}).items():
        _describe(node, def_name)
    body = _plain(generated, generated.get("$defs", {}), model.__name__)
    head = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://evalwatt.invalid/schemas/{name}",
        "title": model.model_config.get("title"),
    }
    return {**head, **body}


def schema_text(name: str) -> str:
    """The schema file ``name`` as committed in workflow/schemas."""
    tree = json.loads(json.dumps(json_schema(name)))  # no shared objects: no YAML anchors
    body = yaml.safe_dump(tree, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Write both schema files into ``folder`` (workflow/schemas); the paths written."""
    written = []
    for name in ROOTS:
        path = folder / name
        write_text(path, schema_text(name))
        written.append(path)
    return written
