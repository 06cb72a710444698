"""Load a run configuration: read it, validate it, fill its defaults, check its rules.

Every config is checked on load against the JSON Schema generated from the config's models
(``workflow/schemas/config.schema.yaml``), with ``additionalProperties: false`` everywhere, so a
misspelt key fails at once instead of being silently ignored. The models then build the typed
tree and fill its defaults: the models are the one place where a key, a bound or a default
lives. Errors name the file (and line, for the model sheet), the field, the bad value and what
is allowed.

This module assembles the steps; each has its own module:

* ``evalwatt.config.run_config`` (and ``model_entry``, ``accounting``): the typed models;
* ``evalwatt.config.generate``: the JSON Schemas, generated from the models;
* ``evalwatt.config.schema``: JSON Schema validation (finite numbers, int-only integers,
  whole-string patterns) by jsonschema, with messages that name the field and what is allowed;
* ``evalwatt.config.sheet``: the TSV model sheet, typed by the model entry's fields;
* ``evalwatt.config.consistency``: rules across fields that a schema cannot express;
* ``evalwatt.config.types``: the loaded config (``Config``, ``Check``, ``ConfigError``);
* ``evalwatt.config.docs``: the reference of docs/config.md, generated from the schemas;
* ``evalwatt.config.checks``: what needs the filesystem or the installed packages.

Their public names are importable from here too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from evalwatt.base.yamlfile import YamlError, load_yaml
from evalwatt.config.checks import check_environment as run_checks
from evalwatt.config.consistency import OWNED_FLAGS, check_rules, owned_flag
from evalwatt.config.docs import describe_schema
from evalwatt.config.schema import CONFIG_SCHEMA, MODEL_SCHEMA, validate
from evalwatt.config.sheet import SheetRow, read_model_sheet
from evalwatt.config.types import Check, Config, ConfigError

__all__ = [
    "CONFIG_SCHEMA",
    "MODEL_SCHEMA",
    "OWNED_FLAGS",
    "Check",
    "Config",
    "ConfigError",
    "SheetRow",
    "check_rules",
    "describe_schema",
    "from_dict",
    "load_config",
    "owned_flag",
    "read_config_file",
    "read_model_sheet",
    "validate",
]


def _place(places: dict[str, tuple[str, str]], name: str, place: tuple[str, str]) -> None:
    """Record where model ``name`` is written; a second model of that name is an error."""
    if name in places:
        first = f"{places[name][0]}: field {places[name][1]}name"
        raise ConfigError(
            f"{place[0]}: field {place[1]}name = {name!r}: duplicate model name (also at "
            f"{first}); allowed: a name no other model has"
        )
    places[name] = place


def from_dict(data: Mapping[str, Any], base_dir: Path, origin: str = "config") -> Config:
    """Validate a config mapping (e.g. Snakemake's ``config``), fill its defaults, type it.

    ``base_dir`` is the folder relative to which a model sheet path is read. Nothing here
    reads more than the sheet: ``evalwatt.config.checks`` looks at weights, tasks and interpreters.
    """
    raw = copy.deepcopy(dict(data))
    validate(raw, CONFIG_SCHEMA, origin)
    places: dict[str, tuple[str, str]] = {}
    if isinstance(raw["models"], str):
        sheet = Path(raw["models"])
        sheet = sheet if sheet.is_absolute() else base_dir / sheet
        rows = read_model_sheet(sheet)
        for row in rows:
            validate(row.entry, MODEL_SCHEMA, f"{sheet}:{row.line}")
            _place(places, row.entry["name"], (f"{sheet}:{row.line}", ""))
        raw["models"] = [row.entry for row in rows]
    else:
        for i, model in enumerate(raw["models"]):
            _place(places, model["name"], (origin, f"models.{i}."))
    config = _typed(raw, origin, places)
    check_rules(config)
    return config


def _typed(raw: dict[str, Any], origin: str, places: dict[str, tuple[str, str]]) -> Config:
    """The typed tree of a config its schema accepted (the schema is generated from the same
    models: a refusal here means they disagree, and the message says where)."""
    try:
        return Config.loaded(raw, origin, places)
    except ValidationError as exc:
        problems = [
            f"{origin}: field {'.'.join(map(str, e['loc'])) or '<top level>'} = "
            f"{e['input']!r}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise ConfigError("\n".join(problems)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping of a YAML config file, read strictly (no duplicate keys)."""
    try:
        data = load_yaml(path, "config")
    except YamlError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: Path, *, check_environment: bool = True) -> Config:
    """Read, validate and complete the YAML config at ``path``; then, unless told not to, run
    the checks that need the filesystem and the installed packages (``evalwatt.config.checks``)."""
    config = from_dict(read_config_file(path), path.parent, origin=str(path))
    if not check_environment:
        return config
    return run_checks(config)
