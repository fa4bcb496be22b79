"""Reading parts of ``FileStore`` files: a snapshot's header, its last items, a journal's last
lines, each without reading what comes before (see ``_file_codec`` for the layout), and each
parsed in one call rather than a line at a time.

Blocking functions on open file descriptors; ``FileStore`` calls them in worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..models import HistoryItem, SessionHeader
from ._file_codec import (
    EMPTY_CLOSE,
    HISTORY_KEY,
    LINES_CLOSE,
    Layout,
    decode_head,
    decode_item_block,
    head_needs,
    layout_after_key,
)
from ._file_io import last_lines, read_at

_HEAD_BLOCK = 8192
_TAIL_PEEK = 64
_EMPTY_END = HISTORY_KEY + EMPTY_CLOSE


@dataclass(frozen=True)
class Head:
    """A snapshot whose history comes last: its header and where its item lines are."""

    header: SessionHeader
    layout: Layout
    """``LINES`` (items readable from the end) or ``BLOCK`` (only the header is)."""
    items_start: int
    items_end: int
    """The item lines are bytes ``items_start``..``items_end`` (empty when equal)."""


def read_head(fd: int, path: Path, size: int) -> Head | None:
    """The header of the snapshot open as ``fd``, read without its history; ``None`` when
    the history is not its last key (cortex's files), which only a whole parse can read.

    Raises:
        Unreadable: The header is not valid.
        StorageError: The file cannot be read.
    """
    end = read_at(fd, path, max(0, size - _TAIL_PEEK), min(size, _TAIL_PEEK))
    if end.endswith(_EMPTY_END):
        key_at = size - len(_EMPTY_END)
        header = decode_head(read_at(fd, path, 0, key_at))
        stop = key_at + len(HISTORY_KEY)
        return Head(header, Layout.LINES, stop, stop)
    if not end.endswith(b"}" + LINES_CLOSE):
        return None
    data = b""
    while True:
        chunk = read_at(fd, path, len(data), _HEAD_BLOCK)
        data += chunk
        key_at = data.find(HISTORY_KEY)
        if key_at >= 0 and len(data) >= key_at + len(HISTORY_KEY) + head_needs():
            break
        if not chunk or len(data) >= size:
            return None
    layout = layout_after_key(data[key_at + len(HISTORY_KEY) :])
    if layout == Layout.OTHER:
        return None
    header = decode_head(data[:key_at])
    return Head(header, layout, key_at + len(HISTORY_KEY) + 1, size - len(LINES_CLOSE))


def read_last_items(fd: int, path: Path, items: tuple[int, int], count: int) -> list[HistoryItem]:
    """The last ``count`` items of a ``LINES`` snapshot whose item lines are the bytes
    ``items`` (:attr:`Head.items_start`, :attr:`Head.items_end`), fewer if it holds fewer,
    in order.

    Raises:
        Unreadable: The lines read are not one valid item each.
    """
    if count <= 0:
        return []
    _, data, lines = last_lines(fd, path, items[0], items[1], count)
    return decode_item_block(data, lines) if lines else []


def journal_tail(fd: int, path: Path, size: int, count: int) -> tuple[int, bytes, int]:
    """The last ``count`` complete lines of the journal open as ``fd`` (``size`` bytes), as
    :func:`~chatruntime.stores._file_io.last_lines` returns them, without the newline that
    ends the last: a torn last line, from an append that never returned, is not one of them.
    """
    offset, data, lines = last_lines(fd, path, 0, size, count + 1)
    end = data.rfind(b"\n")
    if end < 0:
        return offset, b"", 0
    return offset, data[:end], lines - 1
