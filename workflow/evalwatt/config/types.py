"""The typed view of a validated configuration: ``Config``, its ``Check`` records and
``ConfigError``.

``evalwatt.config.load`` builds a ``Config`` (schema, defaults, sheet, rules); everything else
reads one. Nothing here validates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalwatt.base.errors import UserError


class ConfigError(UserError):
    """A configuration that does not satisfy the schema or the planner's rules."""


@dataclass(frozen=True)
class Check:
    """One check of ``evalwatt.config.checks`` that needs the filesystem or the installed packages.

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
    are the environment checks of ``evalwatt.config.checks`` once they ran.
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
