"""Per-session locks in this process that disappear when nobody holds or waits for them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio


@dataclass
class _Entry:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    users: int = 0


class SessionLocks:
    """One ``anyio.Lock`` per session id, created on demand and dropped when idle.

    ``anyio.Lock`` is fair (first come, first served), which is what keeps concurrent
    messages to one session in call order.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session's lock for the body of the ``async with``."""
        entry = self._entries.get(session_id)
        if entry is None:
            entry = self._entries[session_id] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[session_id]

    def __len__(self) -> int:
        """How many sessions have a lock right now (held or awaited)."""
        return len(self._entries)
