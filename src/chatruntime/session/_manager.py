"""``SessionManager``: the public lifecycle API over a store, with a cache and per-session locks."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from ..agent import AgentManager
from ..models import (
    SESSION_STATUSES,
    AgentNotFoundError,
    ChatSession,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    Result,
    SessionHeader,
    SessionNotFoundError,
    SessionStatus,
    check_name,
    guard,
    new_id,
    now_ms,
    require_uuid,
)
from ..models._session import SCHEMA_VERSION, SessionContext
from ..stores import DEFAULT_LEASE_TIMEOUT, DEFAULT_LEASE_TTL, CorruptRecord, SessionStore
from ._locks import SessionLocks

_UNSET: Any = object()
RECENT_LIMIT_MAX = 10_000


class InitializeReport(BaseModel):
    """What :meth:`SessionManager.initialize` loaded, and what it could not read."""

    model_config = ConfigDict(frozen=True)

    sessions: int
    corrupt: list[CorruptRecord]


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SessionManager:
    """Sessions between people and agents, cached in memory over a :class:`SessionStore`.

    Every public method returns a :class:`Result` and never raises for an expected failure
    (bad input, unknown ids, damaged records, storage failures). Using the manager before
    :meth:`initialize` or after :meth:`close` is a programming error and raises
    ``RuntimeError``.

    Example:
        >>> async with SessionManager(store, agents) as manager:
        ...     session = (await manager.create_session(agent_id, "First chat")).unwrap()
        ...     reply = await manager.send_message(session.id, "Hello")

    Args:
        store: Where sessions persist; closed by :meth:`close`.
        agents: Resolves the agent ids sessions name.
        lease_ttl: Seconds a cross-process session lease lives unless renewed.
        lease_timeout: Seconds to wait for a session another process holds before ``BUSY``.
    """

    def __init__(
        self,
        store: SessionStore,
        agents: AgentManager,
        *,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> None:
        self.store = store
        self.agents = agents
        self.lease_ttl = lease_ttl
        self.lease_timeout = lease_timeout
        self._state = _State.NEW
        self._sessions: dict[str, ChatSession] = {}
        self._corrupt: dict[str, CorruptRecord] = {}
        self._locks = SessionLocks()

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> Result[InitializeReport]:
        """Open the store and load every session into the cache.

        Sessions that cannot be read are reported (path or key, and reason), never skipped
        silently and never rewritten; calls naming them answer ``CORRUPT_DATA``.
        """
        if self._state is _State.CLOSED:
            raise RuntimeError("cannot reopen a closed SessionManager; create a new one")

        async def load() -> InitializeReport:
            await self.store.initialize()
            report = await self.store.load_sessions()
            self._sessions = {session.id: session for session in report.sessions}
            self._corrupt = {record.session_id: record for record in report.corrupt}
            self._state = _State.OPEN
            return InitializeReport(sessions=len(self._sessions), corrupt=list(report.corrupt))

        return await guard(load)

    async def close(self) -> None:
        """Close the store (a file store folds its journals). Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._sessions.clear()
        await self.store.close()

    async def __aenter__(self) -> Self:
        (await self.initialize()).unwrap()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def corrupt_sessions(self) -> list[CorruptRecord]:
        """Sessions found unreadable at :meth:`initialize`."""
        return list(self._corrupt.values())

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self,
        agent_id: str,
        name: str,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Result[ChatSession]:
        """Start a session with an agent.

        Fails with ``VALIDATION_ERROR`` (bad id, name, user id or metadata) or
        ``AGENT_NOT_FOUND`` (no such agent, or it was deleted).
        """

        async def create() -> ChatSession:
            self._require_open()
            require_uuid(agent_id, "agent_id")
            check_name(name)
            _check_user_id(user_id)
            _check_metadata(metadata)
            if not await self.agents.exists(agent_id):
                raise AgentNotFoundError(
                    f"no agent has id {agent_id}; create it first", agent_id=agent_id
                )
            now = now_ms()
            header = SessionHeader(
                id=new_id(),
                agent_id=agent_id,
                name=name,
                created_at=now,
                updated_at=now,
                context=SessionContext(last_activity=now),
                status="active",
                schema_version=SCHEMA_VERSION,
                revision=0,
                user_id=user_id,
                metadata=dict(metadata or {}),
            )
            await self.store.write_session(header, [], expected_revision=None)
            session = ChatSession.from_parts(header, [])
            self._sessions[session.id] = session
            return session.model_copy(deep=True)

        return await guard(create)

    async def get_session(self, session_id: str) -> Result[ChatSession]:
        """One session with its history (a copy: changing it changes nothing stored)."""

        async def get() -> ChatSession:
            return (await self._lookup(session_id)).model_copy(deep=True)

        return await guard(get)

    async def list_sessions(
        self, agent_id: str | None = None, user_id: str | None = None
    ) -> Result[list[ChatSession]]:
        """Sessions, most recent activity first, optionally only one agent's or user's."""

        async def listing() -> list[ChatSession]:
            self._require_open()
            if agent_id is not None:
                require_uuid(agent_id, "agent_id")
            if user_id is not None:
                _check_user_id(user_id)
            chosen = [
                session
                for session in self._sessions.values()
                if (agent_id is None or session.agent_id == agent_id)
                and (user_id is None or session.user_id == user_id)
            ]
            chosen.sort(key=lambda s: (s.context.last_activity, s.updated_at), reverse=True)
            return [session.model_copy(deep=True) for session in chosen]

        return await guard(listing)

    async def get_sessions_by_agent(self, agent_id: str) -> Result[list[ChatSession]]:
        """An agent's sessions, most recent activity first (the original's name for it)."""
        return await self.list_sessions(agent_id=agent_id)

    async def update_session(
        self,
        session_id: str,
        *,
        name: str = _UNSET,
        status: SessionStatus = _UNSET,
        metadata: dict[str, Any] = _UNSET,
    ) -> Result[ChatSession]:
        """Rename a session, change its status (``active``, ``paused``, ``completed``) or
        replace its metadata. Fields left out keep their value."""

        async def update() -> ChatSession:
            self._require_open()
            require_uuid(session_id, "session_id")
            changes: dict[str, Any] = {}
            if name is not _UNSET:
                changes["name"] = check_name(name)
            if status is not _UNSET:
                if status not in SESSION_STATUSES:
                    raise InvalidInputError(
                        f"status must be one of {', '.join(SESSION_STATUSES)}; got {status!r}",
                        field="status",
                    )
                changes["status"] = status
            if metadata is not _UNSET:
                _check_metadata(metadata)
                changes["metadata"] = dict(metadata)
            async with self._exclusive(session_id) as current:
                header = self._next_header(current, **changes)
                updated = await self._commit(current, header, [])
            return updated.model_copy(deep=True)

        return await guard(update)

    async def delete_session(self, session_id: str) -> Result[None]:
        """Delete a session and its stored record (also one that was found corrupt)."""

        async def delete() -> None:
            self._require_open()
            require_uuid(session_id, "session_id")
            async with (
                self._locks.hold(session_id),
                self.store.lease(session_id, ttl=self.lease_ttl, timeout=self.lease_timeout),
            ):
                known = session_id in self._sessions or session_id in self._corrupt
                deleted = await self.store.delete_session(session_id)
                self._sessions.pop(session_id, None)
                self._corrupt.pop(session_id, None)
                if not (deleted or known):
                    raise SessionNotFoundError(
                        f"no session has id {session_id}", session_id=session_id
                    )

        return await guard(delete)

    async def get_recent_messages(
        self, session_id: str, limit: int = 50
    ) -> Result[list[HistoryItem]]:
        """The last ``limit`` history items of a session (default 50), oldest first."""

        async def recent() -> list[HistoryItem]:
            if (
                isinstance(limit, bool)
                or not isinstance(limit, int)
                or not (1 <= limit <= RECENT_LIMIT_MAX)
            ):
                raise InvalidInputError(
                    f"limit must be an integer from 1 to {RECENT_LIMIT_MAX}; got {limit!r}",
                    field="limit",
                )
            session = await self._lookup(session_id)
            return [item.model_copy(deep=True) for item in session.history[-limit:]]

        return await guard(recent)

    # -- internals shared with turns ------------------------------------------------------

    def _require_open(self) -> None:
        if self._state is _State.NEW:
            raise RuntimeError("SessionManager is not initialized: await manager.initialize()")
        if self._state is _State.CLOSED:
            raise RuntimeError("SessionManager is closed")

    async def _lookup(self, session_id: str) -> ChatSession:
        """The cached session, loading one another process created; raises when absent."""
        self._require_open()
        require_uuid(session_id, "session_id")
        record = self._corrupt.get(session_id)
        if record is not None:
            raise CorruptDataError(
                f"session {session_id} cannot be read ({record.location}): {record.reason}",
                session_id=session_id,
                location=record.location,
                reason=record.reason,
            )
        session = self._sessions.get(session_id)
        if session is None:
            session = await self.store.get_session(session_id)
            if session is None:
                raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
            self._sessions[session_id] = session
        return session

    @asynccontextmanager
    async def _exclusive(self, session_id: str) -> AsyncIterator[ChatSession]:
        """Hold the session in this process and across processes; yield its fresh state.

        After the lease is granted the cached copy is checked against the store's revision
        and reloaded when another process wrote in the meantime.
        """
        await self._lookup(session_id)
        async with (
            self._locks.hold(session_id),
            self.store.lease(session_id, ttl=self.lease_ttl, timeout=self.lease_timeout),
        ):
            cached = await self._lookup(session_id)
            stored_revision = await self.store.get_revision(session_id)
            if stored_revision is None:
                self._sessions.pop(session_id, None)
                raise SessionNotFoundError(
                    f"session {session_id} was deleted", session_id=session_id
                )
            if stored_revision != cached.revision:
                fresh = await self.store.get_session(session_id)
                if fresh is None:
                    self._sessions.pop(session_id, None)
                    raise SessionNotFoundError(
                        f"session {session_id} was deleted", session_id=session_id
                    )
                self._sessions[session_id] = cached = fresh
            yield cached

    def _next_header(self, current: ChatSession, **changes: Any) -> SessionHeader:
        """The header of the next revision, with ``changes`` applied."""
        values = {name: getattr(current, name) for name in SessionHeader.model_fields}
        values.update(changes)
        values["revision"] = current.revision + 1
        values["updated_at"] = max(now_ms(), current.updated_at)
        values["schema_version"] = SCHEMA_VERSION
        return SessionHeader.model_validate(values)

    async def _commit(
        self, current: ChatSession, header: SessionHeader, new_items: Sequence[HistoryItem]
    ) -> ChatSession:
        """Write the next revision in one store call, then swap it into the cache."""
        await self.store.write_session(header, new_items, expected_revision=current.revision)
        updated = ChatSession.from_parts(header, [*current.history, *new_items])
        self._sessions[header.id] = updated
        return updated


def _check_user_id(user_id: object) -> None:
    if user_id is None:
        return
    if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 256:
        raise InvalidInputError(
            "user_id must be a non-empty string of at most 256 characters", field="user_id"
        )


def _check_metadata(metadata: object) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or not all(isinstance(key, str) for key in metadata):
        raise InvalidInputError("metadata must be a dict with string keys", field="metadata")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"metadata must be JSON-serialisable: {error}", field="metadata"
        ) from None
