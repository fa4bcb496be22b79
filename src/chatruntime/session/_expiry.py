"""The manager's expiry calls: ``refresh_session`` and ``cleanup_expired_sessions``."""

from __future__ import annotations

from ..models import BusyError, ChatSession, CorruptDataError, Result, check_user_id, guard
from ._core import SessionCore
from ._lifetime import CLEANUP_BATCH


class ExpiryOps(SessionCore):
    """Sliding expiry by hand, and removal of expired sessions (part of ``SessionManager``)."""

    async def refresh_session(
        self, session_id: str, *, user_id: str | None = None
    ) -> Result[ChatSession]:
        """Move a session's expiry to now + ``ttl``, as any activity would.

        Without a ``ttl`` on the manager nothing changes but the revision. An expired
        session cannot be brought back: it answers ``SESSION_EXPIRED``.

        Returns:
            The session (a copy), with its new ``expires_at``.
        """

        async def refresh() -> ChatSession:
            check_user_id(user_id)
            async with self._exclusive(session_id) as (entry, lease):
                self._usable(entry.session, user_id)
                header = self._next_header(entry.session)
                updated = await self._commit(entry, header, [], lease)
            return updated.model_copy(deep=True)

        return await guard(refresh)

    async def cleanup_expired_sessions(self) -> Result[int]:
        """Delete every session whose ``expires_at`` has passed, with its history,
        checkpoints and state; how many were deleted.

        Expired sessions are found from the store's expiry index, a batch at a time, so the
        cost follows the number of expired sessions, not the store's size. A session that
        cannot be read is left for a person (as :meth:`delete_session` leaves it) and not
        counted.
        """

        async def cleanup() -> int:
            self._require_open()
            deleted = 0
            # Sessions seen but not deleted (unreadable, held too long by another process,
            # already gone): asked for again with each batch, so skipped, never looped on.
            passed: set[str] = set()
            while True:
                limit = CLEANUP_BATCH + len(passed)
                now = self.lifetime.now()
                batch = await self.store.expired_sessions(now, limit=limit)
                todo = [session_id for session_id in batch if session_id not in passed]
                for session_id in todo:
                    if await self._delete_if_expired(session_id, now):
                        deleted += 1
                    else:
                        passed.add(session_id)
                if not todo or len(batch) < limit:
                    return deleted

        return await guard(cleanup)

    async def _delete_if_expired(self, session_id: str, now: int) -> bool:
        """Delete the session if it is still expired at ``now`` when held; whether it was."""
        try:
            async with (
                self._tracked(),
                self._locks.hold(session_id),
                self.store.lease(session_id, ttl=self.lease_ttl, timeout=self.lease_timeout),
            ):
                return await self._delete_held(session_id, now)
        except (BusyError, CorruptDataError):
            return False

    async def _delete_held(self, session_id: str, now: int) -> bool:
        found = await self._read(session_id, last=0)
        if found is None:
            # Gone already (another cleaner, or the store's own expiry): let the store drop
            # what its indexes may still say of it.
            await self.store.delete_session(session_id)
            self._cache.drop(session_id)
            return False
        if not self.lifetime.is_expired(found, now):
            return False
        deleted = await self.store.delete_session(session_id)
        self._cache.drop(session_id)
        return deleted
