"""Stores and SDK sessions that add up, per session, the time spent in their calls.

Under load a turn's latency is mostly waiting for the CPU behind the other turns in flight;
these wrappers tell how much of it the store itself took (lease waits included), on both
sides, without touching either implementation. A turn's share is taken with :meth:`take`
once the turn returns.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from agents.items import TResponseInputItem
from agents.memory import Session

from chatruntime.models import SessionHeader
from chatruntime.stores import Lease, SessionStore


class _Clock:
    def __init__(self) -> None:
        self._spent: defaultdict[str, float] = defaultdict(float)

    def add(self, key: str, started: float) -> None:
        self._spent[key] += time.perf_counter() - started

    def take(self, key: str) -> float:
        """Seconds spent for ``key`` since the last take, and start again from zero."""
        return self._spent.pop(key, 0.0)


class TimedStore:
    """A :class:`SessionStore` that times every call naming a session, then delegates."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self._clock = _Clock()
        self.take = self._clock.take

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def get_session(self, session_id: str, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return await self._store.get_session(session_id, **options)
        finally:
            self._clock.add(session_id, started)

    async def get_revision(self, session_id: str) -> int | None:
        started = time.perf_counter()
        try:
            return await self._store.get_revision(session_id)
        finally:
            self._clock.add(session_id, started)

    async def write_session(self, header: SessionHeader, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        try:
            await self._store.write_session(header, *args, **options)
        finally:
            self._clock.add(header.id, started)

    @asynccontextmanager
    async def lease(self, session_id: str, **options: Any) -> AsyncIterator[Lease]:
        manager = self._store.lease(session_id, **options)
        started = time.perf_counter()
        lease = await manager.__aenter__()
        self._clock.add(session_id, started)
        try:
            yield lease
        except BaseException as error:
            started = time.perf_counter()
            suppressed = await manager.__aexit__(type(error), error, error.__traceback__)
            self._clock.add(session_id, started)
            if not suppressed:
                raise
        else:
            started = time.perf_counter()
            await manager.__aexit__(None, None, None)
            self._clock.add(session_id, started)


class TimedSession:
    """An SDK :class:`Session` that times its calls, then delegates."""

    def __init__(self, session: Session) -> None:
        self.inner = session
        self.session_id = session.session_id
        self.session_settings = session.session_settings
        self._clock = _Clock()

    def take(self) -> float:
        return self._clock.take("")

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        started = time.perf_counter()
        try:
            return await self.inner.get_items(limit)
        finally:
            self._clock.add("", started)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        started = time.perf_counter()
        try:
            await self.inner.add_items(items)
        finally:
            self._clock.add("", started)

    async def pop_item(self) -> TResponseInputItem | None:
        started = time.perf_counter()
        try:
            return await self.inner.pop_item()
        finally:
            self._clock.add("", started)

    async def clear_session(self) -> None:
        await self.inner.clear_session()
