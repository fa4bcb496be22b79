"""What ``FileStore`` records look like as bytes, and why a record could not be read.

- An agent (``<agentId>.json``) is pretty-printed JSON with a 2-space indent and camelCase
  keys, as the TypeScript original writes its records.
- A snapshot (``<sessionId>.json``) is the same, except that ``history`` is its last key and
  holds one compact item per line::

      {
        "id": "…",
        …
        "state": {},
        "history": [
          {"id":"…","timestamp":…,"type":"message",…},
          {"id":"…","timestamp":…,"type":"function_call",…}
        ]
      }

  Still one JSON document that any reader (cortex included) parses whole; but the header is
  everything before ``,\\n  "history": [`` and the last items are the last lines, so a reader
  finds either without parsing the rest. JSON escapes newlines inside strings, and nested
  keys sit deeper than two spaces, so these markers cannot occur anywhere else.
- A journal (``<sessionId>.journal``) holds one compact JSON object per line, each a complete
  write: ``{"revision":N,"header":{...},"items":[...]}``. A last line without its newline is
  a torn append, whose call never returned success, and is not part of the record.

Snapshots written before this layout (items spread over several lines) and cortex's files
(any key order, any indentation) still load: they are parsed whole until their next fold
writes them in this layout.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from ..models import (
    HISTORY_ADAPTER,
    SCHEMA_VERSION,
    ChatSession,
    HistoryItem,
    SessionHeader,
    WireModel,
    describe_validation_error,
)

_MAX_LISTED_ERRORS = 8

HISTORY_KEY = b',\n  "history": ['
"""What separates the header from the history in a snapshot whose history comes last."""
ITEM_INDENT = b"    "
LINES_CLOSE = b"\n  ]\n}"
"""How a snapshot with one item per line ends (and one in the previous layout too)."""
EMPTY_CLOSE = b"]\n}"
"""What follows ``HISTORY_KEY`` in a snapshot with an empty history."""
_LINES_OPEN = b'\n    {"'
_BLOCK_OPEN = b"\n    {\n"

RecordT = TypeVar("RecordT", bound=WireModel)


class Layout(enum.Enum):
    """How a snapshot's history is laid out, as far as readers of parts of it care."""

    LINES = "lines"
    """History last, one item per line (or empty): header and tail readable on their own."""
    BLOCK = "block"
    """History last, items over several lines (this store's previous layout): the header is
    readable on its own, the tail is not."""
    OTHER = "other"
    """Anything else (cortex's key order): only the whole file can be parsed."""


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


class _HeaderKey(WireModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    agent_id: str
    revision: int
    schema_version: int = 0


class JournalItems(WireModel):
    """A journal line read for its items: of the header, only what checks the line belongs
    (ids, revision, version). Half the cost of a :class:`JournalEntry`, for tail reads that
    need the header of the last line only."""

    revision: int
    header: _HeaderKey
    items: list[HistoryItem]


# -- snapshots ----------------------------------------------------------------------------------


def encode_item(item: HistoryItem) -> bytes:
    """One history item as a snapshot line holds it (without indent or comma)."""
    return item.model_dump_json(by_alias=True, exclude_none=True).encode()


def encode_head(header: SessionHeader) -> bytes:
    """The snapshot's text before ``HISTORY_KEY``: the header, stamped with our version."""
    stamped = header.model_copy(update={"schema_version": SCHEMA_VERSION})
    text = stamped.model_dump_json(
        by_alias=True, exclude_none=True, exclude={"history"}, indent=2
    ).encode()
    return text[: -len(b"\n}")]


def join_snapshot(head: bytes, item_lines: Sequence[bytes]) -> bytes:
    """A snapshot from its head (:func:`encode_head`) and its items' lines (:func:`encode_item`)."""
    if not item_lines:
        return head + HISTORY_KEY + EMPTY_CLOSE
    separator = b",\n" + ITEM_INDENT
    return head + HISTORY_KEY + b"\n" + ITEM_INDENT + separator.join(item_lines) + LINES_CLOSE


def encode_snapshot(session: ChatSession) -> bytes:
    return join_snapshot(encode_head(session), [encode_item(item) for item in session.history])


def layout_of(snapshot: bytes) -> Layout:
    """The layout of a whole snapshot's bytes."""
    at = snapshot.find(HISTORY_KEY)
    if at < 0:
        return Layout.OTHER
    return layout_after_key(snapshot[at + len(HISTORY_KEY) :], whole=True)


def layout_after_key(rest: bytes, *, whole: bool = False) -> Layout:
    """The layout, judged from the bytes that follow ``HISTORY_KEY`` (all of them when
    ``whole``, else at least the first few and the file's last few)."""
    if rest.startswith(EMPTY_CLOSE):
        return Layout.LINES if not whole or rest == EMPTY_CLOSE else Layout.OTHER
    if whole and not rest.endswith(LINES_CLOSE):
        return Layout.OTHER
    if rest.startswith(_LINES_OPEN):
        return Layout.LINES
    if rest.startswith(_BLOCK_OPEN):
        return Layout.BLOCK
    return Layout.OTHER


def head_needs() -> int:
    """Bytes after ``HISTORY_KEY`` that :func:`layout_after_key` needs to judge."""
    return max(len(_LINES_OPEN), len(_BLOCK_OPEN), len(EMPTY_CLOSE))


def item_span(snapshot: bytes) -> tuple[int, int] | None:
    """Where the item lines of a whole snapshot in the ``LINES`` layout are (start and end
    offsets, equal for an empty history); ``None`` for another layout."""
    at = snapshot.find(HISTORY_KEY)
    if at < 0:
        return None
    stop = at + len(HISTORY_KEY)
    # layout_after_key(whole=True), without copying the history to look at its ends.
    if snapshot.startswith(EMPTY_CLOSE, stop):
        return (stop, stop) if len(snapshot) == stop + len(EMPTY_CLOSE) else None
    if snapshot.endswith(LINES_CLOSE) and snapshot.startswith(_LINES_OPEN, stop):
        return (stop + 1, len(snapshot) - len(LINES_CLOSE))
    return None


def extend_snapshot(
    snapshot: bytes, header: SessionHeader, items: list[HistoryItem]
) -> bytes | None:
    """``snapshot`` with ``header`` in place of its own and ``items`` added to its history.

    Works on the text: the old items' lines are copied, not parsed, so folding a journal costs
    what copying the file costs instead of validating and serialising the whole history
    again. The result is byte for byte what :func:`encode_snapshot` makes of the whole
    session. ``snapshot`` must be already validated. Returns ``None`` for a snapshot not in
    the one-item-per-line layout, which the caller parses and re-encodes whole.
    """
    at = snapshot.find(HISTORY_KEY)
    if at < 0 or layout_after_key(snapshot[at + len(HISTORY_KEY) :], whole=True) != Layout.LINES:
        return None
    head = encode_head(header)
    rest = snapshot[at + len(HISTORY_KEY) :]
    new_lines = [encode_item(item) for item in items]
    if rest == EMPTY_CLOSE:
        return join_snapshot(head, new_lines)
    old_body = rest[1 : -len(LINES_CLOSE)]  # "    {..},\n    {..}"
    if not new_lines:
        return head + HISTORY_KEY + b"\n" + old_body + LINES_CLOSE
    separator = b",\n" + ITEM_INDENT
    return (
        head + HISTORY_KEY + b"\n" + old_body + separator + separator.join(new_lines) + LINES_CLOSE
    )


def decode_head(head: bytes) -> SessionHeader:
    """The header of a snapshot from its text before ``HISTORY_KEY``.

    Raises:
        Unreadable: Not a valid header, or written by a newer version.
    """
    return decode_record(SessionHeader, head + b"\n}")


def decode_item_block(data: bytes, lines: int) -> list[HistoryItem]:
    """History items from ``lines`` consecutive snapshot lines (``data``: the lines with
    their indents, commas and newlines, as in the file), in order, in one parse.

    Raises:
        Unreadable: The lines are not ``lines`` items, one a line.
    """
    try:
        # Indents and newlines are JSON whitespace, and every line but the last ends with
        # its comma: the lines are an array's elements as they stand.
        items = HISTORY_ADAPTER.validate_json(b"[" + data + b"]")
    except ValidationError as error:
        raise Unreadable(
            describe_validation_error(error, limit=_MAX_LISTED_ERRORS, root="history")
        ) from None
    if len(items) != lines:
        raise Unreadable(f"{lines} history lines hold {len(items)} items")
    return items


# -- records, journal lines ---------------------------------------------------------------------


def encode_record(record: WireModel) -> bytes:
    return record.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


def encode_header(header: SessionHeader) -> bytes:
    """The header as a journal line and the index hold it: compact JSON, stamped with our
    version, without history (a ``ChatSession`` passed as its header brings none)."""
    if header.schema_version != SCHEMA_VERSION:
        header = header.model_copy(update={"schema_version": SCHEMA_VERSION})
    return header.model_dump_json(by_alias=True, exclude_none=True, exclude={"history"}).encode()


def encode_journal_line(header_json: bytes, revision: int, items: Sequence[HistoryItem]) -> bytes:
    """A journal line (:class:`JournalEntry`) from the header's :func:`encode_header` bytes,
    which the caller keeps for the index row rather than encoding the header twice."""
    return b"".join(
        (
            b'{"revision":',
            str(revision).encode(),
            b',"header":',
            header_json,
            b',"items":',
            HISTORY_ADAPTER.dump_json(list(items), by_alias=True, exclude_none=True),
            b"}\n",
        )
    )


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


_JOURNAL_ITEMS = TypeAdapter(list[JournalItems])
_JOURNAL_TAIL = TypeAdapter(tuple[list[JournalItems], JournalEntry])


def decode_journal_tail(older: bytes, newest: bytes) -> tuple[list[JournalItems], JournalEntry]:
    """The journal's last line (``newest``, whole) and the lines before it (``older``, as
    in the file: lines separated by newlines; read for their items), in one parse.

    Raises:
        Unreadable: A line is not valid, or was written by a newer version.
    """
    try:
        older_items, entry = _JOURNAL_TAIL.validate_json(
            b"[[" + _as_elements(older) + b"]," + newest + b"]"
        )
    except ValidationError as error:
        raise Unreadable(
            describe_validation_error(error, limit=_MAX_LISTED_ERRORS, root="journal")
        ) from None
    _refuse_newer(entry.header.schema_version)
    for each in older_items:
        _refuse_newer(each.header.schema_version)
    return older_items, entry


def decode_journal_items_block(lines: bytes) -> list[JournalItems]:
    """Journal lines (separated by newlines, as in the file) read for their items, in one
    parse (cheaper than one each).

    Raises:
        Unreadable: A line is not valid, or was written by a newer version.
    """
    try:
        entries = _JOURNAL_ITEMS.validate_json(b"[" + _as_elements(lines) + b"]")
    except ValidationError as error:
        raise Unreadable(
            describe_validation_error(error, limit=_MAX_LISTED_ERRORS, root="journal")
        ) from None
    for entry in entries:
        _refuse_newer(entry.header.schema_version)
    return entries


def _as_elements(lines: bytes) -> bytes:
    # A journal line is compact JSON, which has no raw newline (JSON escapes them in
    # strings): the newlines are exactly the separators. An empty line makes the array
    # invalid, as it makes the journal.
    return lines.replace(b"\n", b",")


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
