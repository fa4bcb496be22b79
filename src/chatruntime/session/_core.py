"""The core under :class:`SessionManager`: cache, locks, leases and the one-write commit.

Everything here keeps one promise: the cache never disagrees with the store. A session is
read on first use into a bounded LRU cache, checked against the stored revision whenever a
call holds it, and changed only by :meth:`SessionCore._commit`, which writes the new
revision in one store call and then swaps it into the cache, shielded from cancellation.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ..models import (
    ChatSession,
    CorruptDataError,
    HistoryItem,
    SessionHeader,
    SessionNotFoundError,
    UsageError,
    now_ms,
    require_uuid,
)
from ..models._session import SCHEMA_VERSION
from ..stores import CorruptRecord, Lease, SessionStore
from ._cache import Entry, Replay, SessionCache
from ._lifetime import Lifetime
from ._locks import SessionLocks
from ._window import WindowPolicy


def check_owner(session: SessionHeader, user_id: str | None) -> None:
    """A caller that names a user sees only that user's sessions: another user's answers
    exactly as an unknown id, so its existence does not leak."""
    if user_id is not None and session.user_id != user_id:
        raise SessionNotFoundError(f"no session has id {session.id}", session_id=session.id)


class Lifecycle(enum.Enum):
    """Where a manager is in its life: new, open (initialized) or closed."""

    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SessionCore:
    """The cache, per-session locks and leases, and commits of a :class:`SessionManager`.

    Args:
        store: Where sessions persist.
        lease_ttl: Seconds a cross-process session lease lives unless renewed.
        lease_timeout: Seconds to wait for a session another process holds before ``BUSY``.
        cache_size: The most sessions kept in memory.
        lifetime: Expiry and limits (default: sessions never expire, no limits).
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        lease_ttl: float,
        lease_timeout: float,
        cache_size: int,
        lifetime: Lifetime | None = None,
    ) -> None:
        self.store = store
        self.lease_ttl = lease_ttl
        self.lease_timeout = lease_timeout
        self.lifetime = lifetime or Lifetime()
        self._state = Lifecycle.NEW
        self._cache = SessionCache(cache_size)
        self._corrupt: dict[str, CorruptRecord] = {}
        self._locks = SessionLocks()
        self._in_flight = 0
        self._settled = anyio.Event()

    def _require_open(self) -> None:
        if self._state is Lifecycle.NEW:
            raise UsageError("SessionManager is not initialized: await manager.initialize()")
        if self._state is Lifecycle.CLOSED:
            raise UsageError("SessionManager is closed")

    @asynccontextmanager
    async def _tracked(self) -> AsyncIterator[None]:
        """Count the body as work in flight, which :meth:`close` waits for."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._settled.set()
                self._settled = anyio.Event()

    async def _read(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        """Read a session from the store (its last ``last`` items only, when given),
        remembering a damaged one for :attr:`corrupt_sessions`."""
        try:
            return await self.store.get_session(session_id, last=last)
        except CorruptDataError as error:
            self._corrupt[session_id] = CorruptRecord(
                session_id,
                str(error.details.get("location") or error.details.get("path") or ""),
                str(error.details.get("reason") or error.message),
            )
            raise

    async def _lookup(self, session_id: str) -> Entry:
        """The session with its whole history, cached; raises when absent."""
        self._require_open()
        require_uuid(session_id, "session_id")
        return await self._find(session_id)

    async def _find(self, session_id: str) -> Entry:
        """:meth:`_lookup` without the open check, for work that began before :meth:`close`.

        A cached entry is used as it is when its revision is the stored one.
        """
        entry = self._cache.get(session_id)
        stored = await self.store.get_revision(session_id) if entry is not None else None
        if entry is not None and entry.complete and entry.revision == stored:
            return entry
        loaded = await self._read(session_id)
        if loaded is None:
            self._cache.drop(session_id)
            raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
        return self._cache.put(Entry(loaded))

    @asynccontextmanager
    async def _exclusive(
        self,
        session_id: str,
        *,
        window: WindowPolicy | None = None,
        content: str = "",
    ) -> AsyncIterator[tuple[Entry, Lease]]:
        """Hold the session in this process and across processes; yield its fresh state
        and the lease.

        Once the lease is granted, the cached entry is checked against the stored revision
        and read again when another process wrote in the meantime. With a ``window`` that
        needs only the tail of the history, only the tail is read.
        """
        self._require_open()
        require_uuid(session_id, "session_id")
        async with (
            self._tracked(),
            self._locks.hold(session_id),
            self.store.lease(session_id, ttl=self.lease_ttl, timeout=self.lease_timeout) as lease,
        ):
            stored = (
                lease.revision
                if lease.revision_known
                else await self.store.get_revision(session_id)
            )
            if stored is None:
                self._cache.drop(session_id)
                raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
            entry = self._cache.get(session_id)
            if (
                entry is None
                or entry.revision != stored
                or not self._enough(entry, window, content)
            ):
                entry = await self._load_for(session_id, window, content)
            yield entry, lease

    @staticmethod
    def _enough(entry: Entry, window: WindowPolicy | None, content: str) -> bool:
        """Whether the entry holds as much history as a turn with ``window`` needs."""
        if entry.complete:
            return True
        if window is None or window.first_read() is None:
            return False
        return window.tail_suffices(entry.session.history, content)

    async def _load_for(self, session_id: str, window: WindowPolicy | None, content: str) -> Entry:
        """Read as much of the session as a turn with ``window`` needs, and cache it."""
        want = window.first_read() if window is not None else None
        while True:
            loaded = await self._read(session_id, last=want)
            if loaded is None:
                self._cache.drop(session_id)
                raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
            complete = want is None or len(loaded.history) < want
            entry = Entry(loaded, complete=complete)
            if want is None or complete or window is None:
                break
            if window.tail_suffices(loaded.history, content):
                break
            want *= 2
        self._cache.replace(entry)
        return entry

    def _usable(self, session: SessionHeader, user_id: str | None) -> None:
        """Refuse a session the caller may not use: another user's (answered exactly as an
        unknown id, so its existence does not leak), then an expired one.

        Raises:
            SessionNotFoundError: ``user_id`` is given and is not the session's.
            SessionExpiredError: The session has expired.
        """
        check_owner(session, user_id)
        self.lifetime.check(session)

    async def _current_header(self, session_id: str, user_id: str | None) -> SessionHeader:
        """The session's stored header (from the cache when it holds the stored revision),
        checked with :meth:`_usable`; raises when absent."""
        self._require_open()
        require_uuid(session_id, "session_id")
        entry = self._cache.get(session_id)
        found: SessionHeader | None = None
        if entry is not None and entry.revision == await self.store.get_revision(session_id):
            found = entry.session
        else:
            found = await self._read(session_id, last=0)
        if found is None:
            self._cache.drop(session_id)
            raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
        self._usable(found, user_id)
        return found.header()

    async def _insert(self, header: SessionHeader, items: Sequence[HistoryItem]) -> ChatSession:
        """Create a session in one store write, within the manager's limits, and cache it.

        Raises:
            LimitExceededError: ``max_sessions`` or ``max_sessions_per_user`` is reached.
        """
        await self.store.write_session(
            header, items, expected_revision=None, limits=self.lifetime.limits()
        )
        session = ChatSession.from_parts(header, list(items))
        replay = Replay(inputs=[], call_ids=set()) if not items else None
        self._cache.put(Entry(session, replay=replay))
        return session

    def _next_header(self, current: ChatSession, **changes: Any) -> SessionHeader:
        """The header of the next revision, with ``changes`` applied; with a ttl, its
        ``expires_at`` moves to now + ttl (every write is activity)."""
        values = {name: getattr(current, name) for name in SessionHeader.model_fields}
        values["expires_at"] = self.lifetime.expires_at(current.expires_at)
        values.update(changes)
        values["revision"] = current.revision + 1
        values["updated_at"] = max(now_ms(), current.updated_at)
        values["schema_version"] = SCHEMA_VERSION
        return SessionHeader.model_validate(values)

    async def _commit(
        self,
        entry: Entry,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        lease: Lease,
        *,
        keep: int | None = None,
    ) -> ChatSession:
        """Write the next revision in one store call, then swap it into the cache.

        With ``keep``, the store first drops every stored item after the first ``keep`` (in
        the same atomic step) and the cached history follows: a whole history is cut to
        ``keep`` items, a tail (whose position in the history is unknown) becomes the tail
        ``new_items``, which the next call reads more of when it needs more.

        Checkpoints that share items ``keep`` drops get their own copy of them first (see
        :meth:`_keep_checkpoints_whole`), so a rewind or an SDK ``pop_item`` never takes an
        item from a checkpoint.

        Shielded: a cancellation lands before the write (nothing stored) or after the swap
        (all stored), never between the store and the cache.
        """
        if keep is not None:
            await self._keep_checkpoints_whole(entry, keep)
        with anyio.CancelScope(shield=True):
            await self.store.write_session(
                header, new_items, expected_revision=entry.revision, lease=lease, keep=keep
            )
            if keep is not None:
                updated = self._cache_rewound(entry, header, new_items, keep)
            else:
                updated = self._cache_appended(entry, header, new_items)
        return updated

    async def _keep_checkpoints_whole(self, entry: Entry, keep: int) -> None:
        """Give every checkpoint of the session that shares more than ``keep`` stored items
        its own copy of those past ``keep``, before a write drops them.

        Safe at any moment: a checkpoint reads the same history whether it shares an item or
        holds it, so a failure here or in the write after it loses nothing. The caller holds
        the session's lease, so its history cannot move meanwhile.
        """
        session_id = entry.session.id
        needing = [
            checkpoint
            for checkpoint in await self.store.list_checkpoints(session_id)
            if checkpoint.shared_count > keep
        ]
        if not needing:
            return
        history = entry.session.history
        if not entry.complete:
            whole = await self._read(session_id)
            if whole is None:
                raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
            history = whole.history
        for checkpoint in needing:
            if checkpoint.shared_count > len(history):
                raise CorruptDataError(
                    f"checkpoint {checkpoint.id} shares {checkpoint.shared_count} items of "
                    f"session {session_id}, which holds {len(history)}",
                    session_id=session_id,
                    checkpoint_id=checkpoint.id,
                    reason="checkpoint shares more items than the session holds",
                )
            moved = [item.model_copy(deep=True) for item in history[keep : checkpoint.shared_count]]
            await self.store.save_checkpoint(
                checkpoint.model_copy(
                    update={"shared_count": keep, "items": moved + checkpoint.items}
                )
            )

    def _cache_appended(
        self, entry: Entry, header: SessionHeader, new_items: Sequence[HistoryItem]
    ) -> ChatSession:
        """Cache the revision ``header`` whose history is the entry's plus ``new_items``."""
        # The history list is extended in place: copying it would make every turn cost in
        # proportion to the history. Nothing outside the cache holds it (callers get deep
        # copies).
        history = entry.session.history
        kept = len(history)
        history.extend(new_items)
        if not entry.complete and len(history) > kept > 0:
            # A tail stays the size it was read at: the next turn reads more if its window
            # needs more (see _enough), so memory does not grow turn by turn.
            del history[: len(history) - kept]
        replay = entry.replay.extended(new_items) if entry.replay is not None else None
        updated = ChatSession.from_parts(header, history)
        self._cache.replace(Entry(updated, complete=entry.complete, replay=replay))
        return updated

    def _cache_rewound(
        self, entry: Entry, header: SessionHeader, new_items: Sequence[HistoryItem], keep: int
    ) -> ChatSession:
        """Cache the revision ``header`` whose history is the first ``keep`` stored items
        plus ``new_items``."""
        if not entry.complete:
            updated = ChatSession.from_parts(header, list(new_items))
            self._cache.replace(Entry(updated, complete=False))
            return updated
        history = entry.session.history
        cut = keep < len(history)
        del history[keep:]
        history.extend(new_items)
        replay = None
        if entry.replay is not None and not cut:
            replay = entry.replay.extended(new_items)
        updated = ChatSession.from_parts(header, history)
        self._cache.replace(Entry(updated, complete=True, replay=replay))
        return updated
