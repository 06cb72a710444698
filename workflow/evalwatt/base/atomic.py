"""Atomic writes: a temporary file in the same folder, then a rename.

A job killed half-way never leaves a file that looks finished, and Snakemake never sees a
half-written output.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: reading it means setting it for a moment, and Snakemake runs rule
# bodies in threads (profiles: force-use-threads), where another thread could create a file
# in that moment.
_UMASK = _read_umask()


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared with the team
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, data: Any) -> None:
    """Plain JSON data only: a value JSON cannot hold (an object, NaN) raises instead of being
    written as a string. Contract files are written by their models (contracts.base)."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
