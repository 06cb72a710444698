"""Validate a config (or one model) against its JSON Schema, with messages a user can act on.

The schemas are generated from the config's models (``evalwatt.config.generate``); jsonschema
validates against them, with ``$ref`` (the model schema file) resolved through one
``referencing`` registry, and the models then fill the defaults. The JSON schema alone is not
trusted:

* numbers must be finite (NaN passes every bound: ``nan < 1`` and ``nan > 1`` are both false);
* an ``integer`` is an int, never ``4.0``;
* a ``pattern`` must match the whole string: ``$`` means the end of the string, as in JSON
  Schema's ECMA regexes, not "before a final newline" as in Python's ``re``.

Errors name the origin (file, and line for a sheet row), the field, the bad value and what is
allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from evalwatt.config.generate import CONFIG_SCHEMA, MODEL_SCHEMA, json_schema
from evalwatt.config.section import whole_string
from evalwatt.config.types import ConfigError

__all__ = ["CONFIG_SCHEMA", "MODEL_SCHEMA", "registry", "validate"]


def _without_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its ``$schema``: jsonschema would validate a ``$ref``'d schema that
    names its dialect with the stock validator class, not the stricter one of ``_validator``."""
    return {k: v for k, v in schema.items() if k != "$schema"}


@cache
def registry() -> Registry:
    """Both schema files, each under its file name (and its ``$id``), for ``$ref``."""
    resources = [
        (name, DRAFT202012.create_resource(_without_dialect(json_schema(name))))
        for name in (CONFIG_SCHEMA, MODEL_SCHEMA)
    ]
    return Registry().with_resources(resources)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not whole_string(pattern).search(instance):
        yield jsonschema.ValidationError("not a whole match of the pattern")


def _is_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


def _strict_class(schema: dict[str, Any]) -> Any:
    """The schema's validator class with whole-string patterns and int-only integers."""
    base = jsonschema.validators.validator_for(schema)
    return jsonschema.validators.extend(
        base,
        validators={"pattern": _pattern},
        type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer),
    )


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    generated = json_schema(schema_name)
    return _strict_class(generated)(_without_dialect(generated), registry=registry())


def _describe_allowed(error: jsonschema.ValidationError) -> str:
    """What the schema allows at the failing place, in words."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return f"allowed keys: {', '.join(allowed)}" if allowed else "no other keys are allowed"
    if error.validator == "enum":
        return f"allowed values: {', '.join(map(repr, schema['enum']))}"
    if error.validator == "pattern":
        return f"allowed: whole strings matching {schema['pattern']!r}"
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


def _non_finite(value: Any, path: str) -> Iterator[tuple[str, float]]:
    """(field, value) of every NaN or infinity inside ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path or "<top level>", value
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _non_finite(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _non_finite(sub, f"{path}.{i}" if path else str(i))


def validate(instance: Any, schema_name: str, origin: str) -> None:
    """Raise ConfigError listing every schema violation of ``instance``."""
    problems = [
        f"{origin}: field {where} = {value!r}: not a finite number; allowed: finite numbers "
        "(no .nan, .inf, nan or inf)"
        for where, value in _non_finite(instance, "")
    ]
    if problems:  # NaN passes every bound of the schema: say so before anything else
        raise ConfigError("\n".join(problems))
    errors = sorted(
        (leaf for e in _validator(schema_name).iter_errors(instance) for leaf in _leaves(e)),
        key=lambda e: [str(p) for p in e.absolute_path],
    )
    if errors:
        raise ConfigError("\n".join(_format_error(e, origin) for e in errors))
