"""The export file: JSON Lines, one record per line, each naming its ``kind``.

::

    {"kind": "export", "format": "chatruntime-export", "version": 1, "exportedAt": 1718000000000}
    {"kind": "agent", "agent": {...}}            an AgentSpec, as stores keep it
    {"kind": "session", "session": {...}}        a ChatSession: header and whole history
    {"kind": "checkpoint", "checkpoint": {...}}  a Checkpoint of the session before it

The first line says what the file is; agents come next, so that every session's agent is
known before the session; each session is followed by its checkpoints. The records inside are
the stores' wire format (camelCase keys, epoch-millisecond times), so a line can be read with
any JSON tool. Reading checks each line on its own: a bad line is reported with its number and
the reason, and the others are still read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from ..models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    InvalidInputError,
    WireModel,
    check_metadata,
    check_name,
    check_user_id,
    describe_validation_error,
)

EXPORT_FORMAT: Final = "chatruntime-export"
"""The ``format`` of an export file's first line."""

EXPORT_VERSION: Final = 1
"""The version of the line format this chatruntime writes and reads."""

RecordKind = Literal["export", "agent", "session", "checkpoint"]

_KINDS: Final = frozenset({"agent", "session", "checkpoint"})
"""The kinds of record that hold a model, each under a key named as the kind."""
# A JSON escape of a UTF-16 surrogate: the only way a line decoded as UTF-8 can carry text
# that no store can encode. Lines without one skip the full check.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abcdefABCDEF]")


class RecordError(Exception):
    """A line of an export file that is not a record this chatruntime can import."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ExportHeader:
    """The first line of an export file."""

    version: int
    exported_at: int | None


Record = ExportHeader | AgentSpec | ChatSession | Checkpoint
"""What one line of an export file holds."""


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def header_line(exported_at: int) -> str:
    """The first line of an export file."""
    return _dump(
        {
            "kind": "export",
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exportedAt": exported_at,
        }
    )


def record_line(record: AgentSpec | ChatSession | Checkpoint) -> str:
    """The line of an agent, a session or a checkpoint (without its newline)."""
    kind = _kind_of(record)
    return _dump({"kind": kind, kind: record.to_wire()})


def _kind_of(record: WireModel) -> str:
    if isinstance(record, ChatSession):
        return "session"
    if isinstance(record, Checkpoint):
        return "checkpoint"
    if isinstance(record, AgentSpec):
        return "agent"
    raise TypeError(f"not a record of an export file: {type(record).__name__}")


def parse_line(line: str) -> Record:
    """The record a line holds, checked as the public API checks what it stores.

    Raises:
        RecordError: The line is not JSON, names no known kind, or its record is invalid;
            the reason says which field and why.
    """
    try:
        document = json.loads(line)
    except ValueError as error:
        raise RecordError(f"not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise RecordError(f"a record is a JSON object, not {type(document).__name__}")
    kind = document.get("kind")
    if kind == "export":
        return _header(document)
    if kind not in _KINDS:
        raise RecordError(
            f"unknown kind {kind!r}: a record is one of export, agent, session, checkpoint"
        )
    body = document.get(kind)
    if not isinstance(body, dict):
        raise RecordError(f'a {kind} record holds its {kind} as an object under "{kind}"')
    extra = sorted(set(document) - {"kind", kind})
    if extra:
        raise RecordError(f"unexpected keys beside the {kind}: {', '.join(extra)}")
    if _SURROGATE_ESCAPE.search(line) and not _encodable(body):
        raise RecordError(f"the {kind} holds a lone surrogate: text must be valid Unicode")
    try:
        if kind == "agent":
            return AgentSpec.model_validate(body)
        if kind == "session":
            session = ChatSession.model_validate(body)
            _check_session(session)
            return session
        return Checkpoint.model_validate(body)
    except ValidationError as error:
        raise RecordError(f"invalid {kind}: {describe_validation_error(error, limit=3)}") from None
    except InvalidInputError as error:
        raise RecordError(f"invalid {kind}: {error.message}") from None


def _header(document: dict[str, Any]) -> ExportHeader:
    if document.get("format") != EXPORT_FORMAT:
        raise RecordError(f"not a chatruntime export: format is {document.get('format')!r}")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"the export's version must be a number, got {version!r}")
    if version > EXPORT_VERSION:
        raise RecordError(
            f"export format version {version} is newer than this chatruntime reads "
            f"({EXPORT_VERSION}): upgrade chatruntime"
        )
    exported_at = document.get("exportedAt")
    return ExportHeader(version, exported_at if isinstance(exported_at, int) else None)


def _check_session(session: ChatSession) -> None:
    # What create_session and update_session refuse, so an import stores nothing the
    # public API would not have stored (and every store can read back).
    check_name(session.name)
    check_user_id(session.user_id)
    check_metadata(session.metadata)
    check_metadata(session.state, "state")


def _encodable(body: dict[str, Any]) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
