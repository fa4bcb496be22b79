"""What ``FileStore`` records look like as bytes, and why a record could not be read.

- A snapshot (``<sessionId>.json``) and an agent (``<agentId>.json``) are pretty-printed JSON
  with a 2-space indent and camelCase keys, as the TypeScript original writes them.
- A journal (``<sessionId>.journal``) holds one compact JSON object per line, each a complete
  write: ``{"revision":N,"header":{...},"items":[...]}``. A last line without its newline is
  a torn append, whose call never returned success, and is not part of the record.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import ValidationError

from ..models import (
    SCHEMA_VERSION,
    ChatSession,
    HistoryItem,
    SessionHeader,
    WireModel,
    describe_validation_error,
)

_MAX_LISTED_ERRORS = 8

# Our snapshots end with the history: ``\n  "history": [\n    {...},\n    {...}\n  ]\n}``.
# JSON escapes newlines inside strings, and nested keys sit deeper than two spaces, so this
# opening occurs once, at the top level.
_HISTORY_OPEN = b'\n  "history": ['
_HISTORY_CLOSE = b"\n  ]\n}"
_EMPTY_HISTORY_CLOSE = b"]\n}"

RecordT = TypeVar("RecordT", bound=WireModel)


class Unreadable(Exception):
    """A record that cannot be decoded; ``reason`` says why, for people."""

    def __init__(self, reason: str, *, newer: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.newer = newer
        """True when the record was written by a newer chatruntime (a version problem)."""


class JournalEntry(WireModel):
    """One journal line: the header after a write and the items that write appended."""

    revision: int
    header: SessionHeader
    items: list[HistoryItem]


def encode_snapshot(session: ChatSession) -> bytes:
    stamped = session.model_copy(update={"schema_version": SCHEMA_VERSION})
    return stamped.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


def extend_snapshot(
    snapshot: bytes, header: SessionHeader, items: list[HistoryItem]
) -> bytes | None:
    """``snapshot`` with ``header`` in place of its own and ``items`` added to its history.

    Works on the text: the old history is copied, not parsed, so folding a journal costs what
    copying the file costs instead of validating and serialising the whole history again.
    The result is byte for byte what :func:`encode_snapshot` makes of the whole session.
    ``snapshot`` must be already validated. Returns ``None`` for a snapshot not laid out as
    we write them (cortex's, whose history is not last), which the caller re-encodes whole.
    """
    old = _history_body(snapshot)
    if old is None:
        return None
    new_text = encode_snapshot(ChatSession.from_parts(header, items))
    new = _history_body(new_text)
    if new is None:  # encode_snapshot always writes this layout; kept for safety
        return None
    prefix = new_text[: new_text.rindex(_HISTORY_OPEN) + len(_HISTORY_OPEN)]
    bodies = [body for body in (old, new) if body]
    if not bodies:
        return prefix + _EMPTY_HISTORY_CLOSE
    return prefix + b"\n" + b",\n".join(bodies) + _HISTORY_CLOSE


def _history_body(snapshot: bytes) -> bytes | None:
    """The text of the history's items (between the brackets), if the history comes last."""
    start = snapshot.rfind(_HISTORY_OPEN)
    if start < 0:
        return None
    rest = snapshot[start + len(_HISTORY_OPEN) :]
    if rest == _EMPTY_HISTORY_CLOSE:
        return b""
    if rest.startswith(b"\n") and rest.endswith(_HISTORY_CLOSE):
        return rest[1 : -len(_HISTORY_CLOSE)]
    return None


def encode_record(record: WireModel) -> bytes:
    return record.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


def encode_journal_line(header: SessionHeader, items: list[HistoryItem]) -> bytes:
    stamped = header.model_copy(update={"schema_version": SCHEMA_VERSION})
    entry = JournalEntry(revision=header.revision, header=stamped, items=items)
    return entry.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n"


def decode_record(model: type[RecordT], data: bytes) -> RecordT:
    """Validate ``data`` as ``model``, refusing records of a newer schema version.

    Raises:
        Unreadable: Not JSON, not valid against the schema, or written by a newer version.
    """
    try:
        record = model.model_validate_json(data)
    except ValidationError as error:
        _refuse_newer(_peek_schema_version(data))
        raise Unreadable(
            describe_validation_error(error, limit=_MAX_LISTED_ERRORS, root="record")
        ) from None
    _refuse_newer(getattr(record, "schema_version", 0))
    return record


def decode_journal_line(line: bytes) -> JournalEntry:
    entry = decode_record(JournalEntry, line)
    _refuse_newer(entry.header.schema_version)
    return entry


def _peek_schema_version(data: bytes) -> int | None:
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    version = parsed.get("schemaVersion") if isinstance(parsed, dict) else None
    if not isinstance(version, int) and isinstance(parsed, dict):
        header = parsed.get("header")
        version = header.get("schemaVersion") if isinstance(header, dict) else None
    return version if isinstance(version, int) else None


def _refuse_newer(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise Unreadable(
            f"written by a newer chatruntime (schema version {version}; "
            f"this one reads up to {SCHEMA_VERSION}): upgrade chatruntime to read it",
            newer=True,
        )
