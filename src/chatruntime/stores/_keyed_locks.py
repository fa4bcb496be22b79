"""One lock per key (a session id) in this process, kept only while someone holds or awaits it."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

__all__ = ["KeyedLocks"]


@dataclass
class _Entry:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    users: int = 0
    """Tasks holding or waiting for ``lock``; the entry goes when this falls to zero."""


class KeyedLocks:
    """A fair ``anyio.Lock`` per key, created on demand and dropped when nobody holds or
    awaits it, so a long-running process keeps no lock per session it ever saw.

    ``anyio.Lock`` is first come, first served: a released lock goes to the task that waited
    longest, never to one that arrives later. That is what keeps concurrent calls on one
    session in call order.

    Example:
        >>> locks = KeyedLocks()
        >>> async with locks.hold(session_id):
        ...     ...  # no other task of this process holds session_id's lock
        >>> if await locks.acquire(session_id, timeout=2.0):
        ...     try:
        ...         ...
        ...     finally:
        ...         locks.release(session_id)
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """How many keys have a lock right now (held or awaited)."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the key's lock for the body of the ``async with``, waiting as long as needed."""
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    def try_acquire(self, key: str) -> bool:
        """Take the key's lock if it is free, without waiting; whether it was taken.

        A lock that was just released to a waiting task is not free: the waiter has it.
        Locks are not reentrant: the holder's own attempt raises ``RuntimeError``.
        """
        entry = self._enter(key)
        taken = False
        try:
            entry.lock.acquire_nowait()
            taken = True
        except anyio.WouldBlock:
            pass
        finally:
            if not taken:
                self._leave(key, entry)
        return taken

    async def acquire(self, key: str, *, timeout: float = math.inf) -> bool:
        """Take the key's lock, waiting up to ``timeout`` seconds; whether it was taken.

        A free lock is taken even with ``timeout=0``: only a wait is bounded. Give the lock
        back with :meth:`release` from the same task.
        """
        entry = self._enter(key)
        taken = False
        try:
            try:
                entry.lock.acquire_nowait()
                taken = True
            except anyio.WouldBlock:
                with anyio.move_on_after(timeout):
                    await entry.lock.acquire()
                    taken = True
        finally:
            if not taken:
                self._leave(key, entry)
        return taken

    def release(self, key: str) -> None:
        """Give back the key's lock, taken by this task with :meth:`acquire` or
        :meth:`try_acquire`."""
        entry = self._entries[key]
        entry.lock.release()
        self._leave(key, entry)

    def _enter(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        return entry

    def _leave(self, key: str, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self._entries[key]
