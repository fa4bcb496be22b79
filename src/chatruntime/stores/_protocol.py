"""The ``SessionStore`` protocol: what the manager needs from any persistence backend.

A store keeps three kinds of record: agent specs, session headers, and each session's
history as an append-only list of items. A session changes through one call,
:meth:`SessionStore.write_session`, that replaces the header and appends items in one atomic
step, guarded by the revision it was built on. That is how a turn costs the same whether the
history holds ten items or ten thousand.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..models import AgentSpec, ChatSession, CorruptDataError, HistoryItem, SessionHeader

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
    """What :meth:`SessionStore.load_sessions` found: the sessions read and the ones not."""

    sessions: list[ChatSession] = field(default_factory=list)
    corrupt: list[CorruptRecord] = field(default_factory=list)


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

    async def load_sessions(self) -> LoadReport:
        """Every stored session, plus the ones that could not be read."""
        ...

    async def get_session(self, session_id: str) -> ChatSession | None:
        """One session with its full history, or ``None`` if it does not exist.

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
    ) -> None:
        """Replace a session's header and append ``new_items`` to its history, atomically.

        ``expected_revision=None`` creates the session and fails if it exists. Otherwise the
        stored revision must equal ``expected_revision``; ``header.revision`` is the new one.
        When the call returns, the write is durable; when it raises, nothing was written.

        Raises:
            ConflictError: The session exists (create) or its revision moved on (update), or
                it does not exist (update).
            StorageError: The write failed; the stored session is unchanged.
        """
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Remove a session and its history; ``False`` if there was none."""
        ...

    def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AbstractAsyncContextManager[None]:
        """Hold the session exclusively across processes for the body of an ``async with``.

        Waits up to ``timeout`` seconds for another holder, then raises ``BusyError``. A
        holder that dies loses the lease after at most ``ttl`` seconds; a living holder keeps
        it renewed.
        """
        ...
