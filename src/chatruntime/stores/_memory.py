"""``MemoryStore``: a store in this process's memory, for tests and ephemeral bots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from weakref import WeakValueDictionary

import anyio

from ..models import (
    AgentSpec,
    BusyError,
    ChatSession,
    ConflictError,
    HistoryItem,
    SessionHeader,
)
from ._protocol import DEFAULT_LEASE_TIMEOUT, DEFAULT_LEASE_TTL, LoadReport


class MemoryStore:
    """Keeps everything in dictionaries; nothing survives the process.

    Records are copied on the way in and out, so callers can never change stored data by
    mutating what they passed or got back, just as with a real store.
    """

    def __init__(self) -> None:
        self._agents: dict[str, AgentSpec] = {}
        self._headers: dict[str, SessionHeader] = {}
        self._histories: dict[str, list[HistoryItem]] = {}
        self._leases: WeakValueDictionary[str, anyio.Lock] = WeakValueDictionary()

    def __repr__(self) -> str:
        return f"MemoryStore(sessions={len(self._headers)}, agents={len(self._agents)})"

    async def initialize(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def save_agent(self, spec: AgentSpec) -> None:
        self._agents[spec.id] = spec.model_copy(deep=True)

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        spec = self._agents.get(agent_id)
        return spec.model_copy(deep=True) if spec else None

    async def list_agents(self) -> list[AgentSpec]:
        specs = sorted(self._agents.values(), key=lambda spec: (spec.created_at, spec.id))
        return [spec.model_copy(deep=True) for spec in specs]

    async def delete_agent(self, agent_id: str) -> bool:
        return self._agents.pop(agent_id, None) is not None

    async def load_sessions(self) -> LoadReport:
        return LoadReport(sessions=[self._session(session_id) for session_id in self._headers])

    async def get_session(self, session_id: str) -> ChatSession | None:
        if session_id not in self._headers:
            return None
        return self._session(session_id)

    async def get_revision(self, session_id: str) -> int | None:
        header = self._headers.get(session_id)
        return header.revision if header else None

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
    ) -> None:
        stored = self._headers.get(header.id)
        if expected_revision is None:
            if stored is not None:
                raise ConflictError(f"session {header.id} already exists", session_id=header.id)
            self._histories[header.id] = []
        elif stored is None:
            raise ConflictError(f"session {header.id} no longer exists", session_id=header.id)
        elif stored.revision != expected_revision:
            raise ConflictError(
                f"session {header.id} is at revision {stored.revision}, "
                f"not {expected_revision}: reload it and try again",
                session_id=header.id,
                stored_revision=stored.revision,
                expected_revision=expected_revision,
            )
        self._headers[header.id] = header.header()
        self._histories[header.id].extend(item.model_copy(deep=True) for item in new_items)

    async def delete_session(self, session_id: str) -> bool:
        self._histories.pop(session_id, None)
        return self._headers.pop(session_id, None) is not None

    @asynccontextmanager
    async def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AsyncIterator[None]:
        lock = self._leases.get(session_id)
        if lock is None:
            lock = anyio.Lock()
            self._leases[session_id] = lock
        with anyio.move_on_after(timeout) as scope:
            await lock.acquire()
        if scope.cancelled_caught:
            raise BusyError(
                f"session {session_id} is busy: another turn held it for over {timeout:g}s",
                session_id=session_id,
                timeout=timeout,
            )
        try:
            yield
        finally:
            lock.release()

    def _session(self, session_id: str) -> ChatSession:
        header = self._headers[session_id]
        history = [item.model_copy(deep=True) for item in self._histories[session_id]]
        return ChatSession.from_parts(header.header(), history)
