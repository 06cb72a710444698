"""Read a YAML config strictly: a duplicate key, a syntax error, a missing or unreadable file
each become one ``ConfigError`` naming the file and the line, never a traceback.

``yaml.safe_load`` keeps the last of two equal keys without a word; a config where
``temperature`` is written twice would run the one nobody meant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from evalwatt.base.errors import UserError

MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(UserError):
    """A YAML file that cannot be read as it was written."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping."""

    origin = "<yaml>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *anchor` may be overridden, as YAML intends
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: let PyYAML say what is wrong with it
                continue
            if first != line:
                raise YamlError(
                    f"{self.origin}:{line}: duplicate key {key!r} (first written at line "
                    f"{first}); each key may appear once in a mapping"
                )
        return super().construct_mapping(node, deep=deep)


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a byte-order mark dropped), or a UserError saying why not."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise YamlError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise YamlError(f"{path}: is a folder, not a {what} file") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise YamlError(f"{path}:{line}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    except OSError as exc:
        raise YamlError(f"{path}: cannot read the {what} file: {exc.strerror}") from None


def load_yaml(path: Path, what: str = "config") -> Any:
    """Parse the YAML file at ``path``; refuse duplicate keys and name the line of any error."""
    text = read_text(path, what)
    loader = _StrictLoader(text)
    loader.origin = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()
