"""The manager's cache: a bounded, least-recently-used map of the sessions in use.

It is a cache, never a copy of the store: a session enters on first use and leaves when the
bound is reached, when it is deleted, or on :meth:`SessionCache.clear`. An entry may hold the
whole history or only its tail (a turn whose window needs no more read no more); it keeps the
model input that replays its history, extended turn by turn, so a turn's conversion costs
the same at item 10 and item 10,000.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.items import TResponseInputItem

from ..models import ChatSession, HistoryItem, MessageItem
from ._replay import call_ids_of, history_to_input

DEFAULT_CACHE_SIZE = 1000
"""Sessions a manager keeps in memory unless told otherwise."""


@dataclass
class Replay:
    """The model input that replays a whole history, and the call ids it has seen."""

    inputs: list[TResponseInputItem]
    call_ids: set[str]

    @classmethod
    def of(cls, history: Sequence[HistoryItem]) -> Replay:
        return cls(inputs=history_to_input(history), call_ids=call_ids_of(history))

    def extended(self, new_items: Sequence[HistoryItem]) -> Replay | None:
        """This replay with ``new_items`` appended, or ``None`` when they could change what
        is sent of the items before them (they name a call id seen before, or do not start
        with a person's message, so a step could span the boundary)."""
        if not new_items:
            return self
        first = new_items[0]
        if not (isinstance(first, MessageItem) and first.role != "assistant"):
            return None
        added = call_ids_of(new_items)
        if added & self.call_ids:
            return None
        self.inputs.extend(history_to_input(new_items))
        self.call_ids |= added
        return self


@dataclass
class Entry:
    """One cached session.

    Attributes:
        session: The header and the history, or its last items when ``complete`` is false.
        complete: Whether ``session.history`` is the whole history.
        replay: The model input of the whole history, once a turn needed it.
    """

    session: ChatSession
    complete: bool = True
    replay: Replay | None = field(default=None, repr=False)

    @property
    def revision(self) -> int:
        return self.session.revision


class SessionCache:
    """At most ``capacity`` sessions, the least recently used leaving first."""

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"cache_size must be an integer of at least 1, got {capacity!r}")
        self.capacity = capacity
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._entries

    def get(self, session_id: str) -> Entry | None:
        """The entry of ``session_id`` (now the most recently used), or ``None``."""
        entry = self._entries.get(session_id)
        if entry is not None:
            self._entries.move_to_end(session_id)
        return entry

    def put(self, entry: Entry) -> Entry:
        """Cache ``entry`` unless the cache holds a newer revision, or the same revision
        with more of its history; return the entry now cached."""
        session_id = entry.session.id
        cached = self._entries.get(session_id)
        if cached is not None and (
            cached.revision > entry.revision
            or (cached.revision == entry.revision and (cached.complete or not entry.complete))
        ):
            self._entries.move_to_end(session_id)
            return cached
        self.replace(entry)
        return entry

    def replace(self, entry: Entry) -> None:
        """Cache ``entry`` whatever is cached (a commit's result is always the newest)."""
        self._entries[entry.session.id] = entry
        self._entries.move_to_end(entry.session.id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def drop(self, session_id: str) -> None:
        self._entries.pop(session_id, None)

    def clear(self) -> None:
        self._entries.clear()
