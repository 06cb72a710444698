"""The loaded configuration: ``Config`` (the typed tree, where it was written, its checks) and
``ConfigError``.

``evalwatt.config.load`` builds a ``Config`` (schema, sheet, defaults, rules); everything else
reads one, through its typed sections (``config.cluster.gpu_model``,
``config.model(name).backend``). Nothing here validates.
"""

from __future__ import annotations

from typing import Any

from pydantic import PrivateAttr

from evalwatt.base.errors import UserError
from evalwatt.base.model_path import written_path
from evalwatt.config.model_entry import ModelEntry
from evalwatt.config.run_config import RunConfig, SamplingProfile
from evalwatt.contracts.plan import Check

__all__ = ["Check", "Config", "ConfigError"]


class ConfigError(UserError):
    """A configuration that does not satisfy the schema or the planner's rules."""


class Config(RunConfig):
    """A validated run configuration, defaults filled in: the sections of ``RunConfig``, and
    what loading it learnt.

    ``origin`` is the file it was read from; ``places`` maps a model name to the place it was
    written ("models.tsv:4", or the config file and "models.2."), for messages; ``checks`` are
    the environment checks of ``evalwatt.config.checks`` once they ran.
    """

    _origin: str = PrivateAttr("config")
    _places: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    _checks: tuple[Check, ...] = PrivateAttr(())

    @classmethod
    def loaded(
        cls, data: dict[str, Any], origin: str, places: dict[str, tuple[str, str]]
    ) -> Config:
        """The tree of ``data`` (a mapping its schema accepted), read from ``origin``."""
        config = cls.model_validate(data)
        config._origin, config._places = origin, places
        return config

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def places(self) -> dict[str, tuple[str, str]]:
        return self._places

    @property
    def checks(self) -> tuple[Check, ...]:
        return self._checks

    @property
    def raw(self) -> dict[str, Any]:
        """The tree as plain data (a fresh copy: writing into it changes nothing). For the
        readers not yet converted to the typed sections (ops/, smk/)."""
        return self.model_dump(mode="json")

    def with_checks(self, checks: tuple[Check, ...]) -> Config:
        """This config with the environment checks that passed or were deferred."""
        config = self.model_copy()
        config._checks = checks
        return config

    def replace(self, **sections: Any) -> Config:
        """A copy with some top-level keys replaced (tests, tools), e.g.
        ``config.replace(job=config.job.model_copy(update={"python": "/opt/py"}))``. Nothing
        is validated again."""
        return self.model_copy(update=sections)

    def model(self, name: str) -> ModelEntry:
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(self.model_names())}")

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def weights(self, model: ModelEntry) -> str:
        """The model's weights as written: its ``path``, else ``<model_root>/<hf_id>``
        (``evalwatt.base.model_path`` resolves it)."""
        path = written_path(model.path, self.model_root, model.hf_id)
        if path is None:  # the rules refuse it on load: a Config built past them
            raise ConfigError(f"model {model.name}: no `path` and no `model_root` in the config")
        return path

    def sampling_profile(self, model: ModelEntry) -> tuple[str, SamplingProfile] | None:
        """The ``sampling`` profile that applies to ``model`` and its key: ``<family>+reasoning``
        for a reasoning model, else (or when that one is absent or empty) ``<family>``; None
        when neither sets anything (the server's defaults)."""
        keys = (model.family + "+reasoning", model.family) if model.reasoning else (model.family,)
        for key in keys:
            profile = self.sampling.get(key)
            if profile is not None and profile.model_fields_set:
                return key, profile
        return None

    def where(self, model: str) -> str:
        """The file (and line, for a sheet row) where ``model`` is written."""
        return self._places.get(model, (self._origin, ""))[0]

    def model_field(self, model: str, key: str) -> str:
        """``FILE[:LINE]: field KEY`` of one model, as error messages name it."""
        place, prefix = self._places.get(model, (self._origin, ""))
        return f"{place}: field {prefix}{key}"
