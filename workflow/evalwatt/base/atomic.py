"""Atomic writes: a temporary file in the same folder, then a rename.

A job killed half-way never leaves a file that looks finished, and Snakemake never sees a
half-written output.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _new_file_beside(path: Path) -> Path:
    """A new, empty file beside ``path`` with the mode any new file gets there (0666 less the
    umask, or the folder's default ACL): the kernel applies them, so nothing reads the umask
    (which means setting it, for every thread of the process) and nothing chmods."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_file_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, data: Any) -> None:
    """Plain JSON data only: a value JSON cannot hold (an object, NaN) raises instead of being
    written as a string. Contract files are written by their models (contracts.base)."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
