"""Managers with expiry and limits over a fresh store, driven by a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chatruntime import AgentManager, AgentSpec, SessionManager
from chatruntime.models import ChatSession, HistoryItem, now_ms
from chatruntime.stores import SessionStore
from support.factories import bumped, turn_items
from support.stores import open_store_for_test


@dataclass
class FakeClock:
    """Epoch milliseconds that move only when the test says so.

    It starts at the real time, so a store that expires keys natively (Redis PEXPIREAT on
    ``expires_at``) does not drop them while the test runs.
    """

    now: int = field(default_factory=now_ms)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1000)


@dataclass
class Lab:
    """A store, its agents, one agent, a clock, and the managers opened on them."""

    kind: str
    store: SessionStore
    agents: AgentManager
    agent: AgentSpec
    clock: FakeClock
    manager: SessionManager

    def open_manager(self, **options: Any) -> SessionManager:
        """Another manager on the same store and clock (initialize it before use)."""
        return SessionManager(self.store, AgentManager(self.store), clock=self.clock, **options)

    async def grow(self, session_id: str, items: int) -> ChatSession:
        """Append ``items`` history items (whole turns of four) straight to the store, in
        one write: how a long history is made without running hundreds of turns."""
        assert items % 4 == 0
        stored = await self.store.get_session(session_id, last=0)
        assert stored is not None
        new: list[HistoryItem] = [
            item for n in range(items // 4) for item in turn_items(n, t=self.clock.now)
        ]
        header = bumped(stored.header())
        await self.store.write_session(header, new, expected_revision=stored.revision)
        grown = await self.store.get_session(session_id)
        assert grown is not None
        return grown


@asynccontextmanager
async def open_lab(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, **options: Any
) -> AsyncIterator[Lab]:
    """A :class:`Lab` on a fresh store of ``kind``; ``options`` go to its manager."""
    async with open_store_for_test(kind, tmp_path, request) as store:
        clock = FakeClock()
        agents = AgentManager(store)
        manager = SessionManager(store, agents, clock=clock, **options)
        (await manager.initialize()).unwrap()
        agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
        try:
            yield Lab(kind, store, agents, agent, clock, manager)
        finally:
            await manager.close()
