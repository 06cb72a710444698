"""What every part of the typed config shares: strictness, the patterns, unique lists.

The config's models (``run_config``, ``model_entry``, ``accounting``) are the one source of the
config's keys, types, bounds, defaults and descriptions: workflow/schemas/*.yaml and the
reference of docs/config.md are generated from them (``evalwatt.config.generate``).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import core_schema

if TYPE_CHECKING:  # pydantic.json_schema is a large module: not imported to run
    from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
"""A non-empty string without control characters (a path, a command, a name)."""
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""A run, cluster or judge name: safe in paths and job names."""
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""An environment variable or a label name."""
HTTP_URL = r"^https?://[^\s@/]+(/[^\s]*)?$"
"""An http(s) URL without credentials in it."""

H = TypeVar("H", bound=Hashable)
_END_ANCHOR = re.compile(r"(?<!\\)\$\Z")


@cache
def whole_string(pattern: str) -> re.Pattern[str]:
    """A schema pattern read as JSON Schema reads it: its final ``$`` is the end of the string
    (``\\Z``), not "before a final newline" as in Python's ``re`` (``"demo\\n"`` is no name)."""
    return re.compile(_END_ANCHOR.sub(r"\\Z", pattern))


@dataclass(frozen=True)
class Matching:
    """A string field's pattern (``Annotated[str, Matching(r"^...$")]``): written in the JSON
    Schema as ``pattern``, checked by the model as a whole-string match (``whole_string``),
    the same way the loader's validation reads it."""

    pattern: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        regex, pattern = whole_string(self.pattern), self.pattern

        def check(value: str) -> str:
            if not regex.search(value):
                raise ValueError(f"not a whole match of the pattern {pattern!r}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "pattern": self.pattern}


Printable = Annotated[str, Matching(PRINTABLE)]
Name = Annotated[str, Matching(NAME)]
Identifier = Annotated[str, Matching(IDENTIFIER)]
HttpUrl = Annotated[str, Matching(HTTP_URL)]


class Section(BaseModel):
    """A part of the config: unknown keys refused, immutable once loaded, no NaN.

    The docstring under each field is its description: ``evalwatt.config.generate`` writes it
    into the JSON Schema and docs/config.md. Defaults are validated too, so that a number field
    holds a float even by default. The validators are built when first used, not on import: a
    command that never reads a config (``python -m evalwatt job``) does not pay for them.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True, defer_build=True
    )


def _unique(values: tuple[H, ...]) -> tuple[H, ...]:
    if len(set(values)) != len(values):
        raise ValueError("has repeated items")
    return values


Unique = Annotated[
    tuple[H, ...], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})
]
"""A list whose items are all different (JSON Schema's ``uniqueItems``), kept in order."""


def shown(value: float) -> str:
    """A number of the config as a user writes it: ``25`` for 25.0 (the models hold every
    number field as a float), the shortest exact form otherwise (``0.1``, ``1e-07``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def section(cls: type[Section]) -> Any:
    """A field holding a whole section: optional, built from its own defaults when absent
    (written ``default: {}`` in the schema, as a user would write it)."""
    return Field(default_factory=cls, json_schema_extra={"default": {}})
