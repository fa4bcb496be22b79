"""Turning ``RedisStore`` replies into models, and models into what it stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ..models import HISTORY_ADAPTER, AgentSpec, ChatSession, HistoryItem, SessionHeader
from ..models._history import HISTORY_ITEM_ADAPTER
from ..models._session import HEADER_FIELDS
from ._protocol import CorruptRecord
from ._records import describe_invalid

__all__ = [
    "dump",
    "dump_header",
    "is_wrong_type",
    "parse_header",
    "parse_read",
    "text",
]


def text(raw: object) -> str | None:
    """A reply as text, whether the client decodes responses or not."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def dump(model: AgentSpec | HistoryItem) -> str:
    """The JSON a record is stored as."""
    return model.model_dump_json(by_alias=True, exclude_none=True)


def dump_header(header: SessionHeader) -> str:
    """The JSON a session header is stored as (the header fields only, whatever is passed)."""
    return header.model_dump_json(by_alias=True, exclude_none=True, include=set(HEADER_FIELDS))


def is_wrong_type(error: Exception) -> bool:
    """Whether Redis refused a command because the key holds another type."""
    return str(error).startswith("WRONGTYPE")


def parse_header(session_id: str, raw: object, location: str) -> SessionHeader | CorruptRecord:
    """The header stored for ``session_id``, or why it cannot be read."""
    if raw is None:
        return CorruptRecord(session_id, location, "the hash has no header field")
    try:
        header = SessionHeader.model_validate_json(raw if isinstance(raw, bytes) else str(raw))
    except ValidationError as error:
        return CorruptRecord(session_id, location, f"invalid header: {describe_invalid(error)}")
    if header.id != session_id:
        return CorruptRecord(session_id, location, f"the header's id is {header.id}")
    return header


def parse_read(
    session_id: str, reply: Sequence[Any], *, session_key: str, history_key: str
) -> ChatSession | CorruptRecord | None:
    """The session in a ``READ_SESSION`` reply: ``None`` if there is none, or why it cannot
    be read."""
    status = int(reply[0])
    if status == 0:
        return None
    if status == 2:
        return CorruptRecord(session_id, session_key, f"{session_key} is not a hash")
    if status == 3:
        return CorruptRecord(session_id, history_key, f"{history_key} is not a list")
    _status, raw_revision, raw_header, length, items = reply
    header = parse_header(session_id, raw_header, session_key)
    if isinstance(header, CorruptRecord):
        return header
    if text(raw_revision) != str(header.revision):
        return CorruptRecord(
            session_id,
            session_key,
            f"the revision field says {text(raw_revision)!r} but the header says {header.revision}",
        )
    history = _parse_items(items, int(length) - len(items))
    if isinstance(history, str):
        return CorruptRecord(session_id, history_key, history)
    return ChatSession.from_parts(header, history)


def _parse_items(raw_items: Sequence[bytes | str], first_index: int = 0) -> list[HistoryItem] | str:
    """The items, or the reason the first unreadable one cannot be read."""
    if not raw_items:
        return []
    # One validation of the whole list is several times faster than one per item; only a
    # failure pays for finding which item it was.
    if isinstance(raw_items[0], bytes):
        joined: bytes | str = b"[" + b",".join(raw_items) + b"]"  # type: ignore[arg-type]
    else:
        joined = "[" + ",".join(raw_items) + "]"  # type: ignore[arg-type]
    try:
        return HISTORY_ADAPTER.validate_json(joined)
    except ValidationError:
        pass
    for position, raw_item in enumerate(raw_items):
        try:
            HISTORY_ITEM_ADAPTER.validate_json(raw_item)
        except ValidationError as error:
            return f"invalid item at index {first_index + position}: {describe_invalid(error)}"
    # Each item is valid alone but not joined: one is more than one JSON value.
    return "an item is not a single JSON value"
