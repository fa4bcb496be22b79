"""Shared pieces of the wire format: camelCase aliases, ids, epoch-millisecond clocks."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from ._errors import InvalidInputError

NAME_MAX_LENGTH = 100


class WireModel(BaseModel):
    """Base of every persisted model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict, as written to stores (camelCase, ``None`` fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def now_ms() -> int:
    """Milliseconds since the Unix epoch, the unit of every stored time."""
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A fresh random UUID, as stored."""
    return str(uuid.uuid4())


def is_uuid(value: object) -> bool:
    """True when ``value`` is a UUID in its canonical form: lowercase 8-4-4-4-12 hex.

    Only one spelling is accepted, so one UUID can never name two files on a
    case-sensitive disk.
    """
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _check_uuid(value: str) -> str:
    if not is_uuid(value):
        raise ValueError(f"{value!r} is not a UUID")
    return value


Uuid = Annotated[str, AfterValidator(_check_uuid)]
"""A string that must be a canonical UUID (which also keeps it safe as a file name)."""


def require_uuid(value: object, what: str) -> str:
    """Return ``value`` if it is a UUID, else raise :class:`InvalidInputError` naming ``what``."""
    if not is_uuid(value):
        raise InvalidInputError(
            f"{what} must be a lowercase UUID such as "
            f"'123e4567-e89b-42d3-a456-426614174000', got {value!r}",
            field=what,
            value=repr(value),
        )
    return str(value)


def check_name(value: object, what: str = "name") -> str:
    """Validate a display name: 1–100 characters, not only whitespace."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}", field=what)
    if not value.strip():
        raise InvalidInputError(f"{what} must not be empty or only whitespace", field=what)
    if len(value) > NAME_MAX_LENGTH:
        raise InvalidInputError(
            f"{what} is {len(value)} characters long; the limit is {NAME_MAX_LENGTH}",
            field=what,
            length=len(value),
            limit=NAME_MAX_LENGTH,
        )
    return value


def _valid_name(value: str) -> str:
    if not value.strip():
        raise ValueError("name must not be empty or only whitespace")
    return value


Name = Annotated[str, AfterValidator(_valid_name)]


def describe_validation_error(
    error: ValidationError, *, limit: int | None = None, root: str = "value"
) -> str:
    """One line naming each bad field, e.g. ``name: String should have at least 1 character``.

    Args:
        error: What pydantic found wrong.
        limit: List at most this many problems, then say how many more there are.
        root: The name of a problem with the whole value rather than one field.
    """
    problems = error.errors(include_url=False)
    for problem in problems:
        if problem["type"] == "json_invalid":
            detail = str(problem.get("ctx", {}).get("error", ""))
            return f"not valid JSON: {detail or problem['msg']}"
    shown = problems if limit is None else problems[:limit]
    parts = [
        f"{'.'.join(str(part) for part in problem['loc']) or root}: {problem['msg']}"
        for problem in shown
    ]
    if len(problems) > len(shown):
        parts.append(f"and {len(problems) - len(shown)} more problems")
    return "; ".join(parts)
