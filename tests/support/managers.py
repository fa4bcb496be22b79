"""A ready ``SessionManager`` over a fresh store of a given kind, with one stored agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatruntime import AgentManager, AgentSpec, SessionManager
from chatruntime.stores import SessionStore
from support.stores import open_store_for_test


@dataclass
class Harness:
    store: SessionStore
    agents: AgentManager
    manager: SessionManager
    agent: AgentSpec


@asynccontextmanager
async def open_harness(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    async with open_store_for_test(kind, tmp_path, request) as store:
        agents = AgentManager(store)
        manager = SessionManager(store, agents)
        (await manager.initialize()).unwrap()
        agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
        try:
            yield Harness(store, agents, manager, agent)
        finally:
            await manager.close()
