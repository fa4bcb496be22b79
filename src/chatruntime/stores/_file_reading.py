"""Reading parts of ``FileStore`` files: a snapshot's header, its last items, a journal's last
lines, each without reading what comes before (see ``_file_codec`` for the layout).

Blocking functions on open file descriptors; ``FileStore`` calls them in worker threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..models import HistoryItem, SessionHeader
from ._file_codec import (
    EMPTY_CLOSE,
    HISTORY_KEY,
    LINES_CLOSE,
    Layout,
    decode_head,
    decode_item_lines,
    head_needs,
    layout_after_key,
)
from ._file_io import lines_backward, read_at

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


def read_last_items(fd: int, path: Path, head: Head, count: int) -> list[HistoryItem]:
    """The last ``count`` items of a ``LINES`` snapshot (fewer if it holds fewer), in order.

    Raises:
        Unreadable: A line read is not a valid item.
    """
    lines: list[bytes] = []
    if count > 0:
        for line in lines_backward(fd, path, head.items_start, head.items_end):
            lines.append(line)
            if len(lines) == count:
                break
    lines.reverse()
    return decode_item_lines(lines)


def journal_lines_backward(fd: int, path: Path, size: int) -> Iterator[bytes]:
    """The complete lines of the journal open as ``fd``, the last first (a torn last line,
    from an append that never returned, is not one of them)."""
    lines = lines_backward(fd, path, 0, size)
    next(lines, None)  # what follows the last newline: nothing, or a torn line
    yield from lines
