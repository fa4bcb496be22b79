"""``SessionManager``: the public API over a store, with a cache, per-session locks and turns."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, Self

from agents import RunConfig
from pydantic import BaseModel, ConfigDict

from ..agent import AgentManager
from ..models import (
    SESSION_STATUSES,
    AgentNotFoundError,
    ChatSession,
    HistoryItem,
    InvalidInputError,
    Result,
    SessionHeader,
    SessionNotFoundError,
    SessionPage,
    SessionStatus,
    UsageError,
    check_metadata,
    check_name,
    check_user_id,
    guard,
    new_id,
    now_ms,
    require_uuid,
)
from ..models._common import UNSET, Unset
from ..models._page import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX
from ..models._session import SCHEMA_VERSION, SessionContext
from ..stores import DEFAULT_LEASE_TIMEOUT, DEFAULT_LEASE_TTL, CorruptRecord, SessionStore
from ..stores._paging import check_listing
from ._cache import DEFAULT_CACHE_SIZE
from ._checkpoints import CheckpointOps
from ._core import Lifecycle, check_owner
from ._expiry import ExpiryOps
from ._lifetime import Clock, Lifetime
from ._state_ops import StateOps
from ._turn_ops import TurnOps, is_timeout
from ._user import UserSessions
from ._window import WindowPolicy

_UNSET = UNSET
RECENT_LIMIT_MAX = 10_000


class CheckReport(BaseModel):
    """What :meth:`SessionManager.check` read: how many sessions, and which could not be."""

    model_config = ConfigDict(frozen=True)

    sessions: int
    corrupt: list[CorruptRecord]


CheckProgress = Callable[[int, int], None]
"""Called by :meth:`SessionManager.check` as it goes: sessions read so far, and in all."""


class SessionManager(ExpiryOps, CheckpointOps, StateOps, TurnOps):
    """Sessions between people and agents, cached in memory over a :class:`SessionStore`.

    Every public method returns a :class:`Result` and never raises for an expected failure
    (bad input, unknown ids, damaged records, storage failures). Using the manager before
    :meth:`initialize` or after :meth:`close` is a programming error and raises
    :class:`UsageError` (a ``RuntimeError``).

    Beyond sessions and turns it offers users (``user_id=`` on every call, :meth:`for_user`),
    expiry and limits (``ttl``, ``max_sessions``, :meth:`refresh_session`,
    :meth:`cleanup_expired_sessions`), checkpoints with restore and fork
    (:meth:`save_checkpoint`, :meth:`restore_checkpoint`, :meth:`fork_session`) and state
    modules (:meth:`save_session_state`, :meth:`load_session_state`).

    Example:
        >>> async with SessionManager(store, agents) as manager:
        ...     session = (await manager.create_session(agent_id, "First chat")).unwrap()
        ...     reply = await manager.send_message(session.id, "Hello")

    Args:
        store: Where sessions persist; closed by :meth:`close`.
        agents: Resolves the agent ids sessions name, and supplies the model provider.
        lease_ttl: Seconds a cross-process session lease lives unless renewed.
        lease_timeout: Seconds to wait for a session another process holds before ``BUSY``.
        default_timeout: Seconds a turn may take when the call names no ``timeout``
            (``None``: no limit). The time waiting for earlier turns of the session counts.
        max_turns: The most model calls one turn may make (tool rounds, handoffs) before it
            fails with ``MAX_TURNS_EXCEEDED``.
        window: Trims the history sent to the model (:class:`LastItems`,
            :class:`TokenBudget`); ``None`` sends it all. :meth:`set_window` overrides it
            per agent. The stored history is never trimmed.
        run_config: The SDK run configuration of every turn (guardrails, model settings,
            hooks, tracing). Its model provider is used only when ``agents.model_provider``
            is ``None``. Without a ``run_config`` and without ``agents.model_provider``,
            models come from :meth:`ModelConfig.from_env` (OpenAI, an OpenAI-compatible
            server, or the offline model), and traces are exported only to OpenAI itself.
        cache_size: The most sessions kept in memory; the least recently used leave first
            and are read again from the store when next used.
        ttl: Seconds without activity after which a session expires (``None``: never).
            Every write (turn, update, state save, restore, :meth:`refresh_session`) moves
            its ``expires_at`` to now + ``ttl``; an expired session answers
            ``SESSION_EXPIRED`` until :meth:`cleanup_expired_sessions` removes it.
        max_sessions: At most this many live (unexpired) sessions in the store; creating
            one more answers ``LIMIT_EXCEEDED`` (exact across processes).
        max_sessions_per_user: At most this many live sessions per ``user_id``.
        clock: The current time as epoch milliseconds (an ``int``), for expiry, limits and
            checkpoint times; default :func:`chatruntime.models.now_ms`. Tests pass a fake
            one so that expiry needs no sleeping.
    """

    def __init__(
        self,
        store: SessionStore,
        agents: AgentManager,
        *,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        default_timeout: float | None = None,
        max_turns: int = 10,
        window: WindowPolicy | None = None,
        run_config: RunConfig | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        ttl: float | None = None,
        max_sessions: int | None = None,
        max_sessions_per_user: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        lifetime = Lifetime.of(
            ttl=ttl,
            max_sessions=max_sessions,
            max_sessions_per_user=max_sessions_per_user,
            clock=clock,
        )
        if default_timeout is not None and not is_timeout(default_timeout):
            raise ValueError(f"default_timeout must be positive seconds, got {default_timeout!r}")
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be an integer of at least 1, got {max_turns!r}")
        super().__init__(
            store,
            lease_ttl=lease_ttl,
            lease_timeout=lease_timeout,
            cache_size=cache_size,
            lifetime=lifetime,
        )
        self.agents = agents
        self.default_timeout = default_timeout
        self.max_turns = max_turns
        self.window = window
        self.run_config = run_config
        self._windows: dict[str, WindowPolicy] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> Result[None]:
        """Open the store (create or upgrade what it needs). No session is read: each is
        read when first used, so opening costs the same for ten sessions or a million.

        Damaged sessions answer ``CORRUPT_DATA`` when a call names them; :meth:`check`
        finds them all.
        """
        if self._state is Lifecycle.CLOSED:
            raise UsageError("cannot reopen a closed SessionManager; create a new one")

        async def open_store() -> None:
            await self.store.initialize()
            self._state = Lifecycle.OPEN

        return await guard(open_store)

    async def check(self, progress: CheckProgress | None = None) -> Result[CheckReport]:
        """Read every stored session once and report the ones that cannot be read (where,
        and why). A full scan: its cost grows with the store, so nothing calls it for you.

        Sessions are read one at a time (memory stays flat) and are not cached; damaged
        ones are never rewritten, and calls naming them answer ``CORRUPT_DATA``.

        Args:
            progress: Called after each session with (sessions read, sessions in all).
        """

        async def scan() -> CheckReport:
            self._require_open()
            total = await self.store.count_sessions()
            read = 0
            corrupt: list[CorruptRecord] = []
            async for found in self.store.scan_sessions():
                read += 1
                if isinstance(found, CorruptRecord):
                    corrupt.append(found)
                    self._corrupt[found.session_id] = found
                if progress is not None:
                    progress(read, max(total, read))
            return CheckReport(sessions=read - len(corrupt), corrupt=corrupt)

        return await guard(scan)

    async def refresh(self) -> Result[None]:
        """Forget every cached session, so the next calls read them from the store.

        Never needed for correctness: turns, updates and reads check the stored revision.
        """

        async def forget() -> None:
            self._require_open()
            self._cache.clear()

        return await guard(forget)

    async def close(self) -> None:
        """Refuse new calls, wait for turns and updates in flight, then close the store (a
        file store folds its journals). Idempotent.

        Raises:
            StorageError: The store failed to flush; what was stored before stays stored.
        """
        if self._state is Lifecycle.CLOSED:
            return
        self._state = Lifecycle.CLOSED
        while self._in_flight:
            await self._settled.wait()
        self._cache.clear()
        try:
            await self.agents.aclose()
        finally:
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
        """Sessions this manager found unreadable so far (by :meth:`check` or when used)."""
        return list(self._corrupt.values())

    @property
    def cached_sessions(self) -> int:
        """How many sessions are in memory now (at most ``cache_size``)."""
        return len(self._cache)

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self,
        agent_id: str,
        name: str,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Result[ChatSession]:
        """Start a session with an agent.

        Fails with ``VALIDATION_ERROR`` (bad id, name, user id or metadata),
        ``AGENT_NOT_FOUND`` (no such agent, or it was deleted) or ``LIMIT_EXCEEDED`` (the
        manager's ``max_sessions`` or ``max_sessions_per_user`` is reached).
        """

        async def create() -> ChatSession:
            self._require_open()
            require_uuid(agent_id, "agent_id")
            check_name(name)
            check_user_id(user_id)
            if metadata is not None:
                check_metadata(metadata)
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
                expires_at=self.lifetime.expires_at(None),
            )
            session = await self._insert(header, [])
            return session.model_copy(deep=True)

        return await guard(create)

    async def get_session(
        self, session_id: str, *, user_id: str | None = None
    ) -> Result[ChatSession]:
        """One session with its history (a copy: changing it changes nothing stored).

        With ``user_id``, a session of another user answers ``SESSION_NOT_FOUND`` exactly
        as an unknown id does (so does every call that takes ``user_id``). An expired
        session answers ``SESSION_EXPIRED`` (so does every call that names one).
        """

        async def get() -> ChatSession:
            check_user_id(user_id)
            entry = await self._lookup(session_id)
            self._usable(entry.session, user_id)
            return entry.session.model_copy(deep=True)

        return await guard(get)

    async def list_sessions(
        self,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        *,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> Result[SessionPage]:
        """A page of sessions (headers, no history), most recent activity first.

        Served by the store's index: its cost depends on ``limit``, not on how many
        sessions there are. Pass the page's ``next_cursor`` back as ``cursor`` for the next
        one; it is ``None`` on the last page.

        Fails with ``VALIDATION_ERROR`` (a bad id, user id, status, ``limit`` outside
        1..1000, or a cursor no listing returned).

        Example:
            >>> page = (await manager.list_sessions(user_id="user_123", limit=20)).unwrap()
            >>> [s.name for s in page.sessions]
        """

        async def listing() -> SessionPage:
            self._require_open()
            if agent_id is not None:
                require_uuid(agent_id, "agent_id")
            check_user_id(user_id)
            check_listing(
                agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
            )
            return await self.store.list_sessions(
                agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
            )

        return await guard(listing)

    async def get_sessions_by_agent(
        self, agent_id: str, *, limit: int = LIST_LIMIT_DEFAULT, cursor: str | None = None
    ) -> Result[SessionPage]:
        """A page of an agent's sessions, most recent activity first (the original's name
        for :meth:`list_sessions` with ``agent_id``)."""
        return await self.list_sessions(agent_id=agent_id, limit=limit, cursor=cursor)

    async def get_sessions_by_user(
        self, user_id: str, *, limit: int = LIST_LIMIT_DEFAULT, cursor: str | None = None
    ) -> Result[SessionPage]:
        """A page of a user's sessions, most recent activity first."""
        return await self.list_sessions(user_id=user_id, limit=limit, cursor=cursor)

    async def session_exists(self, session_id: str, *, user_id: str | None = None) -> Result[bool]:
        """Whether a session with this id is stored (and, with ``user_id``, is that user's).

        Reads the header alone. A damaged session answers ``CORRUPT_DATA``, an expired one
        ``SESSION_EXPIRED`` (until :meth:`cleanup_expired_sessions` removes it).
        """

        async def exists() -> bool:
            check_user_id(user_id)
            try:
                await self._current_header(session_id, user_id)
            except SessionNotFoundError:
                return False
            return True

        return await guard(exists)

    async def get_active_session_count(self, user_id: str | None = None) -> Result[int]:
        """How many live (unexpired) sessions are stored: all of them, or one user's,
        counted from the store's indexes."""

        async def count() -> int:
            self._require_open()
            check_user_id(user_id)
            return await self.store.count_sessions(user_id=user_id, live_at=self.lifetime.now())

        return await guard(count)

    async def delete_user_sessions(self, user_id: str) -> Result[int]:
        """Delete every session of a user, expired ones included; how many were deleted.
        Damaged sessions are left for a person (see :meth:`delete_session`) and not
        counted."""
        return await self._delete_all(user_id=user_id)

    async def delete_agent_sessions(self, agent_id: str) -> Result[int]:
        """Delete every session of an agent, expired ones included; how many were deleted
        (damaged ones are left)."""
        return await self._delete_all(agent_id=agent_id)

    async def _delete_all(
        self, *, user_id: str | None = None, agent_id: str | None = None
    ) -> Result[int]:
        async def delete_all() -> int:
            self._require_open()
            if agent_id is not None:
                require_uuid(agent_id, "agent_id")
            check_user_id(user_id)
            if user_id is None and agent_id is None:
                raise InvalidInputError("name a user or an agent", field="user_id")
            # Collect first: deleting while walking a keyset listing is safe, but a page at a
            # time keeps the walk simple and bounded.
            deleted = 0
            while True:
                page = await self.store.list_sessions(
                    agent_id=agent_id, user_id=user_id, limit=LIST_LIMIT_MAX
                )
                progress = 0
                for header in page.sessions:
                    result = await guard(partial(self._delete, header.id, None, expired_too=True))
                    if result.success:
                        deleted += 1
                        progress += 1
                if page.next_cursor is None or progress == 0:
                    return deleted

        return await guard(delete_all)

    def for_user(self, user_id: str) -> UserSessions:
        """This manager seen by one user: every call is scoped to ``user_id``, and sessions
        are created for it. Another user's session answers ``SESSION_NOT_FOUND``, worded as
        for an unknown id.

        Example:
            >>> alice = manager.for_user("alice")
            >>> session = (await alice.create_session(agent_id, "Chat")).unwrap()
            >>> reply = await alice.send_message(session.id, "Hello")
        """
        check_user_id(user_id)
        return UserSessions(self, user_id)

    async def update_session(
        self,
        session_id: str,
        *,
        name: str | Unset = _UNSET,
        status: SessionStatus | Unset = _UNSET,
        metadata: dict[str, Any] | Unset = _UNSET,
        user_id: str | None = None,
    ) -> Result[ChatSession]:
        """Rename a session, change its status (``active``, ``paused``, ``completed``) or
        replace its metadata. Fields left out keep their value."""

        async def update() -> ChatSession:
            self._require_open()
            require_uuid(session_id, "session_id")
            check_user_id(user_id)
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
                if metadata is None:
                    raise InvalidInputError(
                        "metadata must be a dict with string keys; pass {} to clear it",
                        field="metadata",
                    )
                check_metadata(metadata)
                changes["metadata"] = dict(metadata)
            async with self._exclusive(session_id) as (entry, lease):
                self._usable(entry.session, user_id)
                header = self._next_header(entry.session, **changes)
                updated = await self._commit(entry, header, [], lease)
            return updated.model_copy(deep=True)

        return await guard(update)

    async def delete_session(self, session_id: str, *, user_id: str | None = None) -> Result[None]:
        """Delete a session with its history, checkpoints and saved state.

        A session found corrupt answers ``CORRUPT_DATA`` and stays on disk: damaged data is
        for a person to inspect, repair or remove by hand, never for the library to drop.
        An expired session answers ``SESSION_EXPIRED`` like every call naming it;
        :meth:`cleanup_expired_sessions` (or :meth:`delete_user_sessions`) removes it.
        """
        return await guard(lambda: self._delete(session_id, user_id))

    async def _delete(
        self, session_id: str, user_id: str | None, *, expired_too: bool = False
    ) -> None:
        self._require_open()
        require_uuid(session_id, "session_id")
        check_user_id(user_id)
        async with (
            self._tracked(),
            self._locks.hold(session_id),
            self.store.lease(session_id, ttl=self.lease_ttl, timeout=self.lease_timeout),
        ):
            # Read it first: a damaged record is refused, never dropped.
            found = await self._read(session_id, last=1)
            if found is not None:
                check_owner(found, user_id)
                if not expired_too:
                    self.lifetime.check(found)
            deleted = found is not None and await self.store.delete_session(session_id)
            self._cache.drop(session_id)
            if not deleted:
                raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)

    async def get_recent_messages(
        self, session_id: str, limit: int = 50, *, user_id: str | None = None
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
            self._require_open()
            require_uuid(session_id, "session_id")
            check_user_id(user_id)
            entry = self._cache.get(session_id)
            stored = await self.store.get_revision(session_id) if entry is not None else None
            if (
                entry is None
                or entry.revision != stored
                or (not entry.complete and len(entry.session.history) < limit)
            ):
                # Only the tail is read, and it is not cached: a look at the last messages
                # must not push the sessions in use out of the cache.
                session = await self._read(session_id, last=limit)
                if session is None:
                    raise SessionNotFoundError(
                        f"no session has id {session_id}", session_id=session_id
                    )
                self._usable(session, user_id)
                # Read for this call alone: nobody else holds these items.
                return session.history[-limit:]
            self._usable(entry.session, user_id)
            return [item.model_copy(deep=True) for item in entry.session.history[-limit:]]

        return await guard(recent)
