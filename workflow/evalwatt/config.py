"""Load and validate run configurations.

Every config is checked against ``workflow/schemas/config.schema.yaml`` on load, with
``additionalProperties: false`` everywhere, so a misspelt key fails at once instead of being
silently ignored. Defaults written in the schema are filled in, so the schema is the one place
where a default lives. Errors name the file (and line, for the model sheet), the field, the bad
value and what is allowed.

The JSON schema alone is not trusted:

* numbers must be finite (NaN passes every bound: ``nan < 1`` and ``nan > 1`` are both false);
* an ``integer`` is an int, never ``4.0``;
* a ``pattern`` must match the whole string: ``$`` means the end of the string, as in
  JSON Schema's ECMA regexes, not "before a final newline" as in Python's ``re``;
* rules across fields that a schema cannot express are checked by ``_check_rules``;
* what needs the filesystem or the installed packages is checked in ``evalwatt.checks``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from evalwatt.errors import UserError
from evalwatt.paths import SCHEMA_DIR
from evalwatt.yamlfile import YamlError, load_yaml, read_text

CONFIG_SCHEMA = "config.schema.yaml"
MODEL_SCHEMA = "model.schema.yaml"


class ConfigError(UserError):
    """A configuration that does not satisfy the schema or the planner's rules."""


@cache
def _schema(name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _without_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its ``$schema``: jsonschema would validate a ``$ref``'d schema that
    names its dialect with the stock validator class, not the stricter one of ``_validator``."""
    return {k: v for k, v in schema.items() if k != "$schema"}


@cache
def _registry() -> Registry:
    resources = [
        (name, DRAFT202012.create_resource(_without_dialect(_schema(name))))
        for name in (CONFIG_SCHEMA, MODEL_SCHEMA)
    ]
    return Registry().with_resources(resources)


_END_ANCHOR = re.compile(r"(?<!\\)\$\Z")


@cache
def _whole_string(pattern: str) -> re.Pattern[str]:
    """A schema pattern with its final ``$`` meaning the end of the string (``\\Z``)."""
    return re.compile(_END_ANCHOR.sub(r"\\Z", pattern))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Any
) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not _whole_string(pattern).search(instance):
        yield jsonschema.ValidationError("not a whole match of the pattern")


def _is_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    schema = _schema(schema_name)
    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(
        base,
        validators={"pattern": _pattern},
        type_checker=base.TYPE_CHECKER.redefine("integer", _is_integer),
    )
    return cls(_without_dialect(schema), registry=_registry())


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
    properties = _schema(MODEL_SCHEMA)["properties"]
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


# --- the typed view --------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check of ``evalwatt.checks`` that needs the filesystem or the installed packages.

    ``status`` is ``passed`` or ``deferred`` (to the job, on the compute node, with the
    reason in ``detail``); a failed check raises a ConfigError instead of being kept.
    """

    name: str
    status: str
    detail: str


@dataclass(frozen=True)
class Config:
    """A validated configuration with defaults filled in.

    ``raw`` is the plain dict (what Snakemake keeps as ``config``); the properties are the
    typed handles that the rest of the package reads. ``where`` maps a model name to the place
    it was written ("models.tsv:4" or "config.yaml: field models.2"), for messages; ``checks``
    are the environment checks of ``evalwatt.checks`` once they ran.
    """

    raw: dict[str, Any]
    origin: str = "config"
    places: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)
    checks: tuple[Check, ...] = field(default=(), compare=False)

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

    def where(self, model: str) -> str:
        """The file (and line, for a sheet row) where ``model`` is written."""
        return self.places.get(model, (self.origin, ""))[0]

    def model_field(self, model: str, key: str) -> str:
        """``FILE[:LINE]: field KEY`` of one model, as error messages name it."""
        place, prefix = self.places.get(model, (self.origin, ""))
        return f"{place}: field {prefix}{key}"


# --- rules across fields ---------------------------------------------------------------------

# Flags that evalwatt sets itself when it builds the server command (runtime/backends.py) or
# that would change the GPU count the planner chose and Slurm allocated. A copy in
# `server_args` or `vllm.extra_args` would override them or start a second, conflicting value.
OWNED_FLAGS = {
    "vllm": {
        "--model": "the weights path",
        "--served-model-name": "the model's name",
        "--host": "the server address",
        "--port": "a free port chosen in the job",
        "--tensor-parallel-size": "the planned GPU count",
        "-tp": "the planned GPU count",
        "--pipeline-parallel-size": "the planned GPU count",
        "-pp": "the planned GPU count",
        "--data-parallel-size": "the planned GPU count",
        "-dp": "the planned GPU count",
        "--gpu-memory-utilization": "vllm.gpu_memory_utilization",
        "--max-model-len": "the model's context_tokens",
        "--quantization": "the model's quantization",
        "-q": "the model's quantization",
        "--config": "every other flag (a YAML file of flags)",
    },
    "llama-cpp": {
        "--model": "the weights path",
        "--model-alias": "the model's name",
        "--host": "the server address",
        "--port": "a free port chosen in the job",
        "--n-threads": "the planned CPU count",
        "--n-ctx": "the model's context_tokens",
        "--config-file": "every other flag (a file of settings)",
    },
    "hf": {
        "--model": "the weights path",
        "--model-dir": "the weights path",
        "--config": "the weights path",
        "--preset": "the weights path",
        "--served-model-name": "the model's name",
        "--host": "the server address",
        "--port": "a free port chosen in the job",
        "--device": "the GPU Slurm allocated",
        "--max-model-len": "the model's context_tokens",
    },
}


def owned_flag(word: str, backend: str) -> str | None:
    """The owned flag that argv word ``word`` sets (``--port=8000``, ``--n_ctx``, an argparse
    abbreviation such as ``--tensor-parallel``), or None."""
    if not word.startswith("-"):
        return None
    flag = word.split("=", 1)[0].replace("_", "-")
    owned = OWNED_FLAGS[backend]
    if flag in owned:
        return flag
    if flag.startswith("--") and len(flag) >= 6:
        matches = [f for f in owned if f.startswith(flag)]
        return matches[0] if matches else None
    return None


def _server_arg_problems(raw: dict[str, Any], config: Config) -> Iterator[str]:
    for model in raw["models"]:
        for i, word in enumerate(model["server_args"]):
            flag = owned_flag(word, model["backend"])
            if flag:
                yield (
                    f"{config.model_field(model['name'], 'server_args')}.{i} = {word!r}: "
                    f"{flag} is set by evalwatt ({OWNED_FLAGS[model['backend']][flag]}); "
                    "allowed: any other server flag"
                )
    if any(m["backend"] == "vllm" for m in raw["models"]):
        for i, word in enumerate(raw["vllm"]["extra_args"]):
            flag = owned_flag(word, "vllm")
            if flag:
                yield (
                    f"{config.origin}: field vllm.extra_args.{i} = {word!r}: {flag} is set by "
                    f"evalwatt ({OWNED_FLAGS['vllm'][flag]}); allowed: any other vllm flag"
                )


def _model_problems(raw: dict[str, Any], config: Config) -> Iterator[str]:
    for model in raw["models"]:
        name = model["name"]
        heads, kv = model["attention_heads"], model["kv_heads"]
        if kv > heads or heads % kv:
            yield (
                f"{config.model_field(name, 'kv_heads')} = {kv}: model {name} has "
                f"{heads} attention heads; allowed: a divisor of attention_heads "
                "(grouped-query attention shares each KV head among whole groups)"
            )
        active = model["active_params_b"]
        if active is not None and active > model["total_params_b"]:
            yield (
                f"{config.model_field(name, 'active_params_b')} = {active}: more than "
                f"total_params_b = {model['total_params_b']}; allowed: at most total_params_b"
            )
        for bench in model["benchmarks"]:
            if bench not in raw["benchmarks"]:
                yield (
                    f"{config.model_field(name, 'benchmarks')} = {bench!r}: unknown benchmark "
                    f"of model {name}; allowed: {', '.join(sorted(raw['benchmarks']))}"
                )
        if not model["path"] and not raw["model_root"]:
            yield (
                f"{config.model_field(name, 'path')} = None: model {name} has no `path` and "
                "the config no `model_root`; allowed: a weights path, or set model_root"
            )


def _benchmark_problems(raw: dict[str, Any], origin: str) -> Iterator[str]:
    names = [m["name"] for m in raw["models"]]
    judges = raw["judges"]
    for name, bench in raw["benchmarks"].items():
        judge = bench["judge"]
        judged = bench["scorer"].startswith("llm-judge")
        if judged and not judge:
            yield (
                f"{origin}: field benchmarks.{name}.judge = None: scorer {bench['scorer']} needs "
                f"a judge; allowed: {', '.join(sorted(judges)) or '(none defined in judges)'}"
            )
        if judge and not judged:
            yield (
                f"{origin}: field benchmarks.{name}.judge = {judge!r}: scorer {bench['scorer']} "
                "uses no judge (it would run a judge job for nothing); allowed: null, or an "
                "llm-judge scorer"
            )
        if judge and judge not in judges:
            yield (
                f"{origin}: field benchmarks.{name}.judge = {judge!r}: unknown judge; "
                f"allowed: {', '.join(sorted(judges)) or '(none defined)'}"
            )
    for name, judge in judges.items():
        if judge["model"] not in names:
            yield (
                f"{origin}: field judges.{name}.model = {judge['model']!r}: not a model of "
                f"`models`; allowed: {', '.join(names)}"
            )


def _sampling_problems(raw: dict[str, Any], origin: str) -> Iterator[str]:
    """A `sampling` key that matches no model's family is a typo (or a dead entry): refused.
    A model whose family has no key uses the server's defaults, which the study did for every
    family but Qwen3; the plan records each cell's top-p, top-k and max tokens (None = unset)."""
    families = sorted({m["family"] for m in raw["models"]})
    thinking = sorted({m["family"] for m in raw["models"] if m["reasoning"]})
    for key in raw["sampling"]:
        family, plus, rest = key.partition("+")
        if plus and rest != "reasoning":
            yield (
                f"{origin}: field sampling = {key!r}: unknown suffix +{rest}; allowed keys: "
                "a model family, or <family>+reasoning"
            )
        elif plus and family not in thinking:
            yield (
                f"{origin}: field sampling = {key!r}: no reasoning model has family {family!r}; "
                f"families of reasoning models: {', '.join(thinking) or '(none)'}"
            )
        elif not plus and family not in families:
            yield (
                f"{origin}: field sampling = {key!r}: no model has family {family!r}; "
                f"allowed: {', '.join(families)}"
            )


def _time_problems(raw: dict[str, Any], origin: str) -> Iterator[str]:
    cluster, job = raw["cluster"], raw["job"]
    limit_s = cluster["time_limit_min"] * 60
    padded_s = cluster["accounting_window_s"] + cluster["pad_margin_s"]
    if cluster["accounting_window_s"] > 0 and padded_s >= limit_s:
        yield (
            f"{origin}: field cluster.accounting_window_s = {cluster['accounting_window_s']}: "
            f"with pad_margin_s = {cluster['pad_margin_s']} every job pads to {padded_s:g} s, "
            f"past its time limit (time_limit_min = {cluster['time_limit_min']}, {limit_s} s); "
            "allowed: window + margin below the time limit"
        )
    if job["ready_timeout_s"] >= limit_s:
        yield (
            f"{origin}: field job.ready_timeout_s = {job['ready_timeout_s']}: not below the "
            f"job's time limit (time_limit_min = {cluster['time_limit_min']}, {limit_s} s), so a "
            "server that never starts is killed by Slurm instead of reported; allowed: less"
        )


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def _accounting_problems(raw: dict[str, Any], origin: str) -> Iterator[str]:
    """The `accounting` section: a source needs its server, the headline order names only
    collected sources, credentials come from one place and never travel in clear text."""
    acc = raw["accounting"]
    sources = acc["sources"]
    where = f"{origin}: field accounting"
    if "ceems-api" in sources:
        if not acc["ceems"]["url"]:
            yield (
                f"{where}.ceems.url = None: source ceems-api needs the API server's URL; "
                "allowed: an http(s) URL, or drop ceems-api from accounting.sources"
            )
        if not acc["cluster_id"]:
            yield (
                f"{where}.cluster_id = None: source ceems-api looks units up by job id and "
                "cluster id; allowed: CEEMS's id of this cluster"
            )
    if "prometheus" in sources and not acc["prometheus"]["url"]:
        yield (
            f"{where}.prometheus.url = None: source prometheus needs the server's URL; "
            "allowed: an http(s) URL, or drop prometheus from accounting.sources"
        )
    for i, name in enumerate(acc["headline_order"]):
        if name != "nvml" and name not in sources:
            yield (
                f"{where}.headline_order.{i} = {name!r}: not collected (accounting.sources = "
                f"{sources}); allowed: nvml or a source of accounting.sources"
            )
    creds = acc["credentials"]
    if creds["file"] and creds["env"]:
        yield (
            f"{where}.credentials = file {creds['file']!r} and env {creds['env']!r}: two "
            "places for one secret; allowed: one of them"
        )
    if creds["file"] or creds["env"]:
        for key in ("ceems", "prometheus"):
            url = acc[key]["url"]
            host = str(url).split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0] if url else ""
            if url and url.startswith("http://") and host not in _LOOPBACK_HOSTS:
                yield (
                    f"{where}.{key}.url = {url!r}: credentials would cross the network in clear "
                    "text; allowed: an https URL (http only on the loopback)"
                )
    if acc["backoff_initial_s"] > acc["backoff_max_s"]:
        yield (
            f"{where}.backoff_initial_s = {acc['backoff_initial_s']}: above backoff_max_s = "
            f"{acc['backoff_max_s']}; allowed: at most backoff_max_s"
        )


def _place(places: dict[str, tuple[str, str]], name: str, place: tuple[str, str]) -> None:
    """Record where model ``name`` is written; a second model of that name is an error."""
    if name in places:
        first = f"{places[name][0]}: field {places[name][1]}name"
        raise ConfigError(
            f"{place[0]}: field {place[1]}name = {name!r}: duplicate model name (also at "
            f"{first}); allowed: a name no other model has"
        )
    places[name] = place


def _check_rules(raw: dict[str, Any], config: Config) -> None:
    """Rules across fields that JSON Schema cannot express; every problem in one message."""
    problems = [
        *_model_problems(raw, config),
        *_server_arg_problems(raw, config),
        *_benchmark_problems(raw, config.origin),
        *_sampling_problems(raw, config.origin),
        *_time_problems(raw, config.origin),
        *_accounting_problems(raw, config.origin),
    ]
    if problems:
        raise ConfigError("\n".join(problems))


def from_dict(data: Mapping[str, Any], base_dir: Path, origin: str = "config") -> Config:
    """Validate a config mapping (e.g. Snakemake's ``config``) and fill its defaults.

    ``base_dir`` is the folder relative to which a model sheet path is read. Nothing here
    reads more than the sheet: ``evalwatt.checks`` looks at weights, tasks and interpreters.
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
    _fill_defaults(raw, _schema(CONFIG_SCHEMA), _schema(CONFIG_SCHEMA))
    for model in raw["models"]:  # under a oneOf, which _fill_defaults does not enter
        _fill_defaults(model, _schema(MODEL_SCHEMA), _schema(MODEL_SCHEMA))
    validate(raw, CONFIG_SCHEMA, origin)
    config = Config(raw, origin=origin, places=places)
    _check_rules(raw, config)
    return config


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
    the checks that need the filesystem and the installed packages (``evalwatt.checks``)."""
    config = from_dict(read_config_file(path), path.parent, origin=str(path))
    if not check_environment:
        return config
    from evalwatt.checks import check_environment as run_checks

    return run_checks(config)
