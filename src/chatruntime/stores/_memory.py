"""``MemoryStore``: a store in this process's memory, for tests and ephemeral bots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from ..models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    HistoryItem,
    SessionHeader,
    SessionStatus,
)
from ..models._page import LIST_LIMIT_DEFAULT, SessionPage
from ._errors import (
    busy,
    check_keep,
    check_revision_step,
    check_same_agent,
    check_write_options,
    is_live,
    limit_exceeded,
    session_exists,
    session_missing,
    stale_revision,
)
from ._keyed_locks import KeyedLocks
from ._paging import check_listing, page_from_sorted, position
from ._protocol import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    CorruptRecord,
    CreateLimits,
    Lease,
)


class MemoryStore:
    """Keeps everything in dictionaries; nothing survives the process.

    Records are copied on the way in and out, so callers can never change stored data by
    mutating what they passed or got back, just as with a real store. Listing sorts the
    matching headers on every call: this store is a test double, not an index.
    """

    def __init__(self) -> None:
        self._agents: dict[str, AgentSpec] = {}
        self._headers: dict[str, SessionHeader] = {}
        self._histories: dict[str, list[HistoryItem]] = {}
        self._checkpoints: dict[str, dict[str, Checkpoint]] = {}
        self._leases = KeyedLocks()

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

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        for session_id in list(self._headers):
            if session_id in self._headers:
                yield self._session(session_id)

    async def count_sessions(
        self, *, user_id: str | None = None, live_at: int | None = None
    ) -> int:
        return sum(
            1
            for header in self._headers.values()
            if (user_id is None or header.user_id == user_id)
            and (live_at is None or is_live(header, live_at))
        )

    async def expired_sessions(self, now: int, *, limit: int = 1000) -> list[str]:
        expired = sorted(
            (header.expires_at, header.id)
            for header in self._headers.values()
            if header.expires_at is not None and header.expires_at <= now
        )
        return [session_id for _, session_id in expired[:limit]]

    async def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> SessionPage:
        after = check_listing(
            agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
        )
        chosen = sorted(
            (
                header
                for header in self._headers.values()
                if (agent_id is None or header.agent_id == agent_id)
                and (user_id is None or header.user_id == user_id)
                and (status is None or header.status == status)
                and (after is None or position(header) < after)
            ),
            key=position,
            reverse=True,
        )
        return page_from_sorted((_copy(header) for header in chosen), limit)

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        if session_id not in self._headers:
            return None
        return self._session(session_id, last)

    async def get_revision(self, session_id: str) -> int | None:
        header = self._headers.get(session_id)
        return header.revision if header else None

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
        lease: Lease | None = None,
        keep: int | None = None,
        limits: CreateLimits | None = None,
    ) -> None:
        check_write_options(header, expected_revision, keep, limits)
        check_revision_step(header, expected_revision)
        stored = self._headers.get(header.id)
        if expected_revision is None:
            if stored is not None:
                raise session_exists(header.id)
            if limits is not None:
                await self._check_limits(limits, header)
            self._histories[header.id] = []
        elif stored is None:
            raise session_missing(header.id)
        elif stored.revision != expected_revision:
            raise stale_revision(header.id, stored.revision, expected_revision)
        else:
            check_same_agent(header, stored.agent_id)
            check_keep(header.id, keep, len(self._histories[header.id]))
        self._headers[header.id] = _copy(header)
        history = self._histories[header.id]
        if keep is not None:
            del history[keep:]
        history.extend(item.model_copy(deep=True) for item in new_items)

    async def _check_limits(self, limits: CreateLimits, header: SessionHeader) -> None:
        total = await self.count_sessions(live_at=limits.now)
        of_user = (
            await self.count_sessions(user_id=header.user_id, live_at=limits.now)
            if header.user_id is not None
            else 0
        )
        limit_exceeded(limits, header, total, of_user)

    async def delete_session(self, session_id: str) -> bool:
        self._histories.pop(session_id, None)
        self._checkpoints.pop(session_id, None)
        return self._headers.pop(session_id, None) is not None

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        if checkpoint.session_id not in self._headers:
            raise session_missing(checkpoint.session_id)
        kept = self._checkpoints.setdefault(checkpoint.session_id, {})
        kept[checkpoint.id] = checkpoint.model_copy(deep=True)

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        found = self._checkpoints.get(session_id, {}).get(checkpoint_id)
        return found.model_copy(deep=True) if found else None

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        kept = self._checkpoints.get(session_id, {}).values()
        newest_first = sorted(kept, key=lambda found: (found.created_at, found.id), reverse=True)
        return [found.model_copy(deep=True) for found in newest_first]

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        return self._checkpoints.get(session_id, {}).pop(checkpoint_id, None) is not None

    async def clear_checkpoints(self, session_id: str) -> int:
        return len(self._checkpoints.pop(session_id, {}))

    @asynccontextmanager
    async def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AsyncIterator[Lease]:
        if not await self._leases.acquire(session_id, timeout=timeout):
            raise busy(session_id, timeout)
        try:
            stored = self._headers.get(session_id)
            yield Lease(
                session_id,
                revision=stored.revision if stored else None,
                revision_known=True,
            )
        finally:
            self._leases.release(session_id)

    def _session(self, session_id: str, last: int | None = None) -> ChatSession:
        header = self._headers[session_id]
        history = self._histories[session_id]
        if last is not None:
            history = history[-last:] if last > 0 else []
        return ChatSession.from_parts(
            _copy(header), [item.model_copy(deep=True) for item in history]
        )


def _copy(header: SessionHeader) -> SessionHeader:
    """A copy of ``header`` without history that shares nothing with it.

    ``header()`` alone copies only the top level: the nested values of ``state`` and
    ``metadata`` (state modules are dicts of dicts) would stay shared with the caller, whose
    later changes would then change the stored session, which no other store allows.
    """
    return header.header().model_copy(deep=True)
