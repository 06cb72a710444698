"""What every contract file shares: a version, strict fields, one reader and one writer.

A contract is a file that one process or stage writes and another reads (spec.json,
result.json, timeline.json, energy/<cell>.json, a row of the final table). Each is a pydantic
model: unknown keys are refused (``extra="forbid"``), so a misspelt or stale key fails where
it is read instead of being silently ignored, and NaN or infinity are refused, so that a
missing number is a null with a reason, never a number that JSON cannot hold. Each file
carries ``schema_version``; a reader refuses a version it does not know before it looks at
anything else, so an old file fails with a message that says so rather than with a list of
missing fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from evalwatt.base.atomic import write_text
from evalwatt.base.errors import UserError


class ContractError(UserError):
    """A contract file that cannot be read or does not match its model."""


class SchemaVersionError(ContractError):
    """A contract file written by another version of its schema."""


class Record(BaseModel):
    """A part of a contract: strict, immutable, no NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Contract(Record):
    """A whole contract file. Subclasses declare ``schema_version: Literal[N] = N``."""

    FILE: ClassVar[str] = "contract file"
    """What the file is, in words, for error messages (e.g. "job result (result.json)")."""

    OLDER_VERSIONS: ClassVar[tuple[int, ...]] = ()
    """Earlier versions this evalwatt still reads: only where every field added since has a
    default that says what the old file did not record (``schema_version: Literal[1, 2]``)."""

    @classmethod
    def known_version(cls) -> int:
        """The ``schema_version`` this evalwatt writes for this file."""
        return int(cls.model_fields["schema_version"].default)


C = TypeVar("C", bound=Contract)


def parse_contract(model: type[C], data: Any, origin: str) -> C:
    """Check the version of ``data``, then validate it; ``origin`` names it in errors."""
    version = data.get("schema_version") if isinstance(data, dict) else None
    known = model.known_version()
    if version != known and version not in model.OLDER_VERSIONS:
        older = ", ".join(map(str, model.OLDER_VERSIONS))
        readable = f"{older} and {known}" if older else str(known)
        only = "" if model.OLDER_VERSIONS else " only"
        raise SchemaVersionError(
            f"{origin}: {model.FILE} has schema_version {version!r}; this evalwatt reads "
            f"version {readable}{only}. Rerun the step that writes it with this evalwatt."
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"{origin}: not a valid {model.FILE}:\n{exc}") from exc


def read_contract(model: type[C], path: Path | str) -> C:
    """Read one contract file, refusing an unknown version or any key the model lacks."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the {model.FILE}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ContractError(f"{path}: the {model.FILE} is not JSON: {exc}") from exc
    return parse_contract(model, data, str(path))


def write_contract(path: Path | str, contract: Contract) -> None:
    """Write a contract atomically, serialised by its model (no ``default=str`` fallback)."""
    write_text(path, contract.model_dump_json(indent=2) + "\n")
