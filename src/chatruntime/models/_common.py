"""Shared pieces of the wire format: camelCase aliases, ids, epoch-millisecond clocks."""

from __future__ import annotations

import enum
import json
import time
import uuid
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from ._errors import InvalidInputError

NAME_MAX_LENGTH = 100
USER_ID_MAX_LENGTH = 256
METADATA_MAX_DEPTH = 32
"""Nesting levels metadata (and session state) may have: every store reads back what it took."""
METADATA_MAX_BYTES = 256 * 1024
"""The largest metadata, as UTF-8 JSON."""


class Unset(enum.Enum):
    """The value of a keyword argument left out, where ``None`` is a value a caller may mean."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET


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


def unicode_problem(text: str) -> str | None:
    """Why ``text`` is not valid Unicode (a lone surrogate, which no store can encode), or
    ``None`` when it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"holds a lone surrogate (U+{ord(text[error.start]):04X}) at position "
            f"{error.start}; text must be valid Unicode"
        )
    return None


def check_text(value: str, what: str) -> str:
    """Refuse text no store can keep (lone surrogates) with :class:`InvalidInputError`."""
    problem = unicode_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{what} {problem}", field=what)
    return value


def _control_character(value: str) -> int | None:
    for index, char in enumerate(value):
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return index
    return None


def check_name(value: object, what: str = "name") -> str:
    """Validate a display name: 1–100 characters, not only whitespace, valid Unicode, no
    control characters (NUL included, which PostgreSQL cannot store)."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, got {type(value).__name__}", field=what)
    if not value.strip():
        raise InvalidInputError(f"{what} must not be empty or only whitespace", field=what)
    check_text(value, what)
    if (index := _control_character(value)) is not None:
        raise InvalidInputError(
            f"{what} holds a control character (U+{ord(value[index]):04X}) at position "
            f"{index}; names are one line of printable text",
            field=what,
        )
    if len(value) > NAME_MAX_LENGTH:
        raise InvalidInputError(
            f"{what} is {len(value)} characters long; the limit is {NAME_MAX_LENGTH}",
            field=what,
            length=len(value),
            limit=NAME_MAX_LENGTH,
        )
    return value


def check_user_id(value: object) -> str | None:
    """Validate a user id: ``None``, or 1–256 printable characters (such as ``user_123``)."""
    if value is None:
        return None
    message = (
        f"user_id must be a non-empty string of at most {USER_ID_MAX_LENGTH} printable characters"
    )
    if not isinstance(value, str) or not value.strip() or len(value) > USER_ID_MAX_LENGTH:
        raise InvalidInputError(message, field="user_id")
    if unicode_problem(value) is not None or not value.isprintable():
        raise InvalidInputError(
            f"{message}; got one with {describe_unprintable(value)}", field="user_id"
        )
    return value


def describe_unprintable(value: str) -> str:
    """The first character of ``value`` a person cannot read, named (for error messages)."""
    for char in value:
        if unicode_problem(char) is not None:
            return f"a lone surrogate (U+{ord(char):04X})"
        if not char.isprintable():
            return f"the unprintable character U+{ord(char):04X}"
    return "no printable character"


def check_metadata(value: object, what: str = "metadata") -> dict[str, Any]:
    """Validate metadata: a dict with string keys, JSON values, valid Unicode, at most
    :data:`METADATA_MAX_DEPTH` levels deep and :data:`METADATA_MAX_BYTES` as JSON."""
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidInputError(f"{what} must be a dict with string keys", field=what)
    _check_json_value(value, what, depth=1)
    try:
        encoded = json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{what} must be JSON-serialisable: {error}", field=what) from None
    if len(encoded) > METADATA_MAX_BYTES:
        raise InvalidInputError(
            f"{what} is {len(encoded):,} bytes as JSON; the limit is {METADATA_MAX_BYTES:,}",
            field=what,
            size=len(encoded),
            limit=METADATA_MAX_BYTES,
        )
    return value


def _check_json_value(value: object, what: str, *, depth: int) -> None:
    """``depth`` counts the dicts and lists ``value`` is inside of, itself included."""
    if depth > METADATA_MAX_DEPTH and isinstance(value, dict | list | tuple):
        raise InvalidInputError(
            f"{what} is nested more than {METADATA_MAX_DEPTH} levels deep",
            field=what,
            limit=METADATA_MAX_DEPTH,
        )
    if isinstance(value, str):
        if (problem := unicode_problem(value)) is not None:
            raise InvalidInputError(f"{what} {problem}", field=what)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{what} must have string keys only", field=what)
            if (problem := unicode_problem(key)) is not None:
                raise InvalidInputError(f"{what} has a key that {problem}", field=what)
            _check_json_value(item, what, depth=depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json_value(item, what, depth=depth + 1)


def _valid_name(value: str) -> str:
    if not value.strip():
        raise ValueError("name must not be empty or only whitespace")
    if (problem := unicode_problem(value)) is not None:
        raise ValueError(f"name {problem}")
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
