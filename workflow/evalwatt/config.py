"""Load and validate run configurations.

Every config is checked against ``workflow/schemas/config.schema.yaml`` on load, with
``additionalProperties: false`` everywhere, so a misspelt key fails at once instead of being
silently ignored. Defaults written in the schema are filled in, so the schema is the one place
where a default lives. Errors name the field, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

from evalwatt.errors import UserError
from evalwatt.paths import SCHEMA_DIR

CONFIG_SCHEMA = "config.schema.yaml"
MODEL_SCHEMA = "model.schema.yaml"


class ConfigError(UserError):
    """A configuration that does not satisfy the schema or the planner's rules."""


@cache
def _schema(name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@cache
def _registry() -> Registry:
    resources = [
        (name, Resource.from_contents(_schema(name))) for name in (CONFIG_SCHEMA, MODEL_SCHEMA)
    ]
    return Registry().with_resources(resources)


def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    schema = _schema(schema_name)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry())


def _describe_allowed(error: jsonschema.ValidationError) -> str:
    """What the schema allows at the failing place, in words."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return f"allowed keys: {', '.join(allowed)}" if allowed else "no other keys are allowed"
    if error.validator == "enum":
        return f"allowed values: {', '.join(map(repr, schema['enum']))}"
    if error.validator == "pattern":
        return f"allowed: strings matching {schema['pattern']!r}"
    if error.validator in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        return f"allowed: {error.validator} {schema[error.validator]}"
    if error.validator == "type":
        return f"allowed type: {schema['type']}"
    description = schema.get("description")
    return f"({description.strip()})" if description else ""


def _format_error(error: jsonschema.ValidationError, origin: str) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    value = error.instance
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    allowed = _describe_allowed(error)
    return f"{origin}: field {where} = {shown}: {error.message}. {allowed}".rstrip(". ") + "."


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors that say what is wrong: inside a oneOf (models: a sheet path or a list),
    the sub-errors of the branch that applies rather than "not valid under any schema"."""
    if error.validator != "oneOf" or not error.context:
        return [error]
    specific = [
        e for e in error.context if e.validator != "type" or e.absolute_path != error.absolute_path
    ]
    return [leaf for e in (specific or [error]) for leaf in (_leaves(e) if e is not error else [e])]


def validate(instance: Any, schema_name: str, origin: str) -> None:
    """Raise ConfigError listing every schema violation of ``instance``."""
    errors = sorted(
        (leaf for e in _validator(schema_name).iter_errors(instance) for leaf in _leaves(e)),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    if errors:
        raise ConfigError("\n".join(_format_error(e, origin) for e in errors))


def _deref(
    schema: Mapping[str, Any], root: Mapping[str, Any]
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """Follow a ``$ref`` (local ``#/...`` or another schema file); return (schema, its root)."""
    ref = schema.get("$ref")
    if ref is None:
        return schema, root
    if not ref.startswith("#/"):
        return _schema(ref), _schema(ref)
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return target, root


def _fill_defaults(instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> None:
    """Write the schema's ``default`` values into ``instance``, recursively, in place."""
    if "$ref" in schema:
        _fill_defaults(instance, *_deref(schema, root))
        return
    if isinstance(instance, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            if key in instance:
                _fill_defaults(instance[key], sub, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in instance.items():
                if key not in schema.get("properties", {}):
                    _fill_defaults(value, extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(item, schema["items"], root)


# --- the model sheet -------------------------------------------------------------------------


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
    try:
        if "array" in types:
            return [part.strip() for part in text.split(",") if part.strip()]
        if "boolean" in types:
            lowered = text.lower()
            if lowered not in {"true", "false"}:
                raise ValueError("expected true or false")
            return lowered == "true"
        if "integer" in types:
            return int(text)
        if "number" in types:
            return float(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: column {column} = {text!r}: {exc}") from exc
    return text


def read_model_sheet(path: Path) -> list[dict[str, Any]]:
    """Read a TSV model sheet; each row becomes a model entry (validated later)."""
    properties = _schema(MODEL_SCHEMA)["properties"]
    models = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        if reader.fieldnames is None:
            raise ConfigError(f"{path}: empty model sheet")
        unknown = [c for c in reader.fieldnames if c not in properties]
        if unknown:
            raise ConfigError(
                f"{path}: unknown column(s) {', '.join(unknown)}; "
                f"allowed columns: {', '.join(properties)}"
            )
        for line_no, row in enumerate(reader, start=2):
            where = f"{path}:{line_no}"
            entry = {
                col: _convert_cell(col, text or "", properties[col], where)
                for col, text in row.items()
            }
            models.append({k: v for k, v in entry.items() if v is not None})
    return models


# --- the typed view --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """A validated configuration with defaults filled in.

    ``raw`` is the plain dict (what Snakemake keeps as ``config``); the properties are the
    typed handles that the rest of the package reads.
    """

    raw: dict[str, Any]

    @property
    def run(self) -> str:
        return str(self.raw["run"])

    @property
    def results_dir(self) -> Path:
        return Path(self.raw["results_dir"])

    @property
    def cluster(self) -> dict[str, Any]:
        return self.raw["cluster"]

    @property
    def models(self) -> list[dict[str, Any]]:
        return self.raw["models"]

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.raw["benchmarks"]

    def model(self, name: str) -> dict[str, Any]:
        for model in self.models:
            if model["name"] == name:
                return model
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(self.model_names())}")

    def model_names(self) -> Iterator[str]:
        return (m["name"] for m in self.models)


def _check_references(raw: dict[str, Any], origin: str) -> None:
    """Cross-field rules that JSON Schema cannot express."""
    names = [m["name"] for m in raw["models"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{origin}: field models: duplicate model name(s) {duplicates}")
    problems = []
    for model in raw["models"]:
        for bench in model.get("benchmarks", []):
            if bench not in raw["benchmarks"]:
                problems.append(
                    f"field models[{model['name']}].benchmarks = {bench!r}: unknown benchmark; "
                    f"allowed: {', '.join(sorted(raw['benchmarks']))}"
                )
    for name, bench in raw["benchmarks"].items():
        judge = bench.get("judge")
        if bench["scorer"].startswith("llm-judge") and not judge:
            problems.append(
                f"field benchmarks.{name}.judge = None: scorer {bench['scorer']} needs a judge"
            )
        if judge and judge not in raw.get("judges", {}):
            problems.append(
                f"field benchmarks.{name}.judge = {judge!r}: unknown judge; "
                f"allowed: {', '.join(sorted(raw.get('judges', {}))) or '(none defined)'}"
            )
    for name, judge in raw.get("judges", {}).items():
        if judge["model"] not in names:
            problems.append(
                f"field judges.{name}.model = {judge['model']!r}: not a model of `models`; "
                f"allowed: {', '.join(names)}"
            )
    if problems:
        raise ConfigError("\n".join(f"{origin}: {p}" for p in problems))


def from_dict(data: Mapping[str, Any], base_dir: Path, origin: str = "config") -> Config:
    """Validate a config mapping (e.g. Snakemake's ``config``) and fill its defaults.

    ``base_dir`` is the folder relative to which a model sheet path is read.
    """
    raw = copy.deepcopy(dict(data))
    validate(raw, CONFIG_SCHEMA, origin)
    if isinstance(raw["models"], str):
        sheet = Path(raw["models"])
        sheet = sheet if sheet.is_absolute() else base_dir / sheet
        raw["models"] = read_model_sheet(sheet)
        for i, model in enumerate(raw["models"]):
            validate(model, MODEL_SCHEMA, f"{sheet} row {i + 2}")
    _fill_defaults(raw, _schema(CONFIG_SCHEMA), _schema(CONFIG_SCHEMA))
    for model in raw["models"]:  # under a oneOf, which _fill_defaults does not enter
        _fill_defaults(model, _schema(MODEL_SCHEMA), _schema(MODEL_SCHEMA))
    validate(raw, CONFIG_SCHEMA, origin)
    _check_references(raw, origin)
    return Config(raw)


def describe_schema() -> str:
    """Every config key with its type, default and description, as Markdown (docs/config.md)."""
    root = _schema(CONFIG_SCHEMA)
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def walk(schema: Mapping[str, Any], prefix: str, top: Mapping[str, Any]) -> None:
        if "$ref" in schema:
            target, new_top = _deref(schema, top)
            walk(target, prefix, new_top)
            return
        for key, sub in schema.get("properties", {}).items():
            name = f"{prefix}{key}"
            resolved = _deref(sub, top)[0] if sub.get("$ref", "").startswith("#/") else sub
            kind = resolved.get("type", "object")
            if isinstance(kind, list):
                kind = " or ".join(kind)
            if "enum" in resolved:
                kind = " / ".join(map(str, resolved["enum"]))
            default = (
                f"`{json.dumps(sub['default'])}`"
                if "default" in sub
                else "required"
                if key in schema.get("required", [])
                else ""
            )
            text = " ".join(str(resolved.get("description", sub.get("description", ""))).split())
            lines.append(f"| `{name}` | {kind} | {default} | {text} |")
            if "properties" in resolved:
                walk(resolved, f"{name}.", top)
            extra = resolved.get("additionalProperties")
            if isinstance(extra, dict):
                walk(extra, f"{name}.<name>.", top)

    walk(root, "", root)
    lines += [
        "",
        "Each model (inline list item or sheet row):",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    model = _schema(MODEL_SCHEMA)
    for key, sub in model["properties"].items():
        kind = sub.get("type", " / ".join(map(str, sub.get("enum", []))))
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        default = (
            f"`{json.dumps(sub['default'])}`"
            if "default" in sub
            else ("required" if key in model["required"] else "")
        )
        text = " ".join(str(sub.get("description", "")).split())
        lines.append(f"| `{key}` | {kind} | {default} | {text} |")
    return "\n".join(lines) + "\n"


def load_config(path: Path) -> Config:
    """Read, validate and complete the YAML config at ``path``."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return from_dict(data, path.parent, origin=str(path))
