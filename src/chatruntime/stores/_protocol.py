"""The ``SessionStore`` protocol: what the manager needs from any persistence backend.

A store keeps three kinds of record: agent specs, session headers, and each session's
history as an append-only list of items. A session changes through one call,
:meth:`SessionStore.write_session`, that replaces the header and appends items in one atomic
step, guarded by the revision it was built on. That is how a turn costs the same whether the
history holds ten items or ten thousand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    CorruptDataError,
    HistoryItem,
    SessionHeader,
    SessionStatus,
)
from ..models._page import LIST_LIMIT_DEFAULT, SessionPage

DEFAULT_LEASE_TTL = 30.0
"""Seconds a session lease lives unless renewed; a crashed holder's lease ends after this."""

DEFAULT_LEASE_TIMEOUT = 10.0
"""Seconds to wait for a lease another process holds before giving up with ``BUSY``."""


@dataclass(frozen=True)
class CorruptRecord:
    """A stored session that could not be read, and why.

    Attributes:
        session_id: The session's id as the store knows it (file name, key, row id).
        location: Where it lives: a file path, a Redis key, a table and id.
        reason: What is wrong with it, in words a person can act on.
    """

    session_id: str
    location: str
    reason: str

    def error(self) -> CorruptDataError:
        """The error that calls naming this session raise (and answer as ``CORRUPT_DATA``)."""
        return CorruptDataError(
            f"session {self.session_id} cannot be read ({self.location}): {self.reason}",
            session_id=self.session_id,
            location=self.location,
            reason=self.reason,
        )


@dataclass
class LoadReport:
    """What :func:`load_all` found: the sessions read and the ones not."""

    sessions: list[ChatSession] = field(default_factory=list)
    corrupt: list[CorruptRecord] = field(default_factory=list)


@dataclass
class Lease:
    """A session lease while it is held: what ``SessionStore.lease`` yields.

    Attributes:
        session_id: The session held.
        token: The holder's token in stores that keep one (Redis, SQL), else ``""``.
        revision: The session's stored revision read in the same step that granted the
            lease, when ``revision_known`` (saves a separate :meth:`SessionStore.get_revision`).
            ``None`` with ``revision_known`` means the session does not exist.
        revision_known: Whether ``revision`` was read when the lease was granted.
        released: Set by a store whose :meth:`SessionStore.write_session` gave the lease back
            in the same step as the write; leaving the ``async with`` then does nothing more.
    """

    session_id: str
    token: str = ""
    revision: int | None = None
    revision_known: bool = False
    released: bool = False


@dataclass(frozen=True)
class CreateLimits:
    """Caps a store checks in the same atomic step as creating a session.

    Counted are the sessions that are not expired at ``now``: those whose ``expires_at`` is
    ``None`` or later than ``now``. Across processes the caps hold exactly: of many racing
    creations, only as many succeed as there is room for.

    Attributes:
        now: The current time (epoch ms) by the manager's clock.
        max_sessions: At most this many live sessions in the store, if set.
        max_sessions_per_user: At most this many live sessions with the new session's
            ``user_id`` (not checked for a session without user), if set.
    """

    now: int
    max_sessions: int | None = None
    max_sessions_per_user: int | None = None


@runtime_checkable
class SessionStore(Protocol):
    """Async persistence of agents and sessions.

    Errors: stores raise :class:`~chatruntime.StorageError` for I/O failures,
    :class:`~chatruntime.CorruptDataError` for records they cannot parse,
    :class:`~chatruntime.ConflictError` for stale writes, :class:`~chatruntime.BusyError`
    for leases not granted in time. Ids reaching a store are already validated UUIDs.
    """

    async def initialize(self) -> None:
        """Create or upgrade what the store needs (folders, tables); idempotent."""
        ...

    async def close(self) -> None:
        """Flush and release resources. A closed store may be initialized again."""
        ...

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        """Insert or replace an agent spec."""
        ...

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        """The agent spec with this id, or ``None``."""
        ...

    async def list_agents(self) -> list[AgentSpec]:
        """Every stored agent spec, oldest first."""
        ...

    async def delete_agent(self, agent_id: str) -> bool:
        """Remove an agent spec; ``False`` if there was none."""
        ...

    # -- sessions -------------------------------------------------------------------------

    def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        """Every stored session with its history, and a :class:`CorruptRecord` for each one
        that cannot be read, one at a time (memory does not grow with the store's size).

        For full scans only (checks, exports); nothing on a hot path calls it.
        """
        ...

    async def count_sessions(
        self, *, user_id: str | None = None, live_at: int | None = None
    ) -> int:
        """How many sessions are stored (from the store's index; corrupt ones included).

        Args:
            user_id: Count only this user's sessions.
            live_at: Count only sessions not expired at this time (epoch ms): ``expires_at``
                is ``None`` or later.
        """
        ...

    async def expired_sessions(self, now: int, *, limit: int = 1000) -> list[str]:
        """Ids of up to ``limit`` sessions whose ``expires_at`` is at or before ``now``,
        earliest expiry first, from an index (cost independent of the store's size)."""
        ...

    async def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of session headers (no history) from the store's index, most recent
        activity first (see ``stores._paging`` for the order and the cursor).

        Its cost depends on ``limit``, not on how many sessions are stored. Sessions whose
        record cannot be read may be listed from the index; reading them raises.

        Raises:
            InvalidInputError: ``limit`` out of 1..1000, a bad status, or a cursor no listing
                returned.
        """
        ...

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        """One session, or ``None`` if it does not exist.

        With ``last``, its history holds only the last ``last`` items (all when it has
        fewer), read without reading the rest; the header is whole either way.

        Raises:
            CorruptDataError: The record exists but cannot be read.
        """
        ...

    async def get_revision(self, session_id: str) -> int | None:
        """The stored revision of a session (cheap), or ``None`` if it does not exist."""
        ...

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
        """Replace a session's header and append ``new_items`` to its history, atomically.

        ``expected_revision=None`` creates the session and fails if it exists. Otherwise the
        stored revision must equal ``expected_revision`` and ``header.revision`` must be
        ``expected_revision + 1``; the header must name the stored session's agent. When the
        call returns, the write is durable; when it raises, nothing was written.

        ``lease`` is the caller's lease on the session, if it holds one: a store may check in
        the same step that it still holds it, and give it back there (setting
        ``lease.released``) to save a round trip.

        ``keep`` (updates only) first drops every stored item after the first ``keep`` ones,
        in the same atomic step: how a restore rewinds and the SDK's ``pop_item`` removes.
        ``limits`` (creation only) are checked atomically with the insert.

        Raises:
            ConflictError: The session exists (create) or its revision moved on (update), or
                it does not exist (update).
            InvalidInputError: The revision does not step by one, the header names another
                agent than the stored session, ``keep`` is given on create or is more than
                the stored item count, or ``limits`` is given on update.
            LimitExceededError: Creating would pass one of ``limits``.
            StorageError: The write failed; the stored session is unchanged.
        """
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Remove a session, its history and its checkpoints; ``False`` if there was none."""
        ...

    # -- checkpoints ----------------------------------------------------------------------
    # The manager holds the session's lease around every change to its checkpoints.

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert a checkpoint, or replace the one with the same session and id.

        Raises:
            ConflictError: The session does not exist (checkpoints live with their session).
        """
        ...

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One checkpoint of a session, or ``None``.

        Raises:
            CorruptDataError: The record exists but cannot be read.
        """
        ...

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Every checkpoint of a session, newest first (``created_at``, then ``id``,
        descending); empty for a session without any or that does not exist."""
        ...

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        """Remove one checkpoint; ``False`` if there was none."""
        ...

    async def clear_checkpoints(self, session_id: str) -> int:
        """Remove every checkpoint of a session; how many there were."""
        ...

    def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold the session exclusively across processes for the body of an ``async with``.

        Waits up to ``timeout`` seconds for another holder, then raises ``BusyError``. A
        holder that dies loses the lease after at most ``ttl`` seconds; a living holder keeps
        it renewed. Taking and giving back a lease writes nothing durable where the store can
        avoid it (file locks), and never holds a database connection while the body runs.
        """
        ...


async def load_all(store: SessionStore) -> LoadReport:
    """Every session of ``store`` in memory at once: for tests and small stores only."""
    report = LoadReport()
    async for found in store.scan_sessions():
        if isinstance(found, CorruptRecord):
            report.corrupt.append(found)
        else:
            report.sessions.append(found)
    return report
