"""Expiry and limits: when a session stops answering, and how many may exist at once.

A manager with a ``ttl`` stamps every session it writes with ``expires_at = now + ttl``, so a
session expires after ``ttl`` without activity (sliding: every turn, update, state save,
restore and ``refresh_session`` moves it). An expired session answers ``SESSION_EXPIRED`` until
``cleanup_expired_sessions()`` removes it. Every time here comes from one injectable clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..models import SessionExpiredError, SessionHeader, now_ms
from ..stores import CreateLimits

Clock = Callable[[], int]
"""The current time in epoch milliseconds (the unit of every stored time), e.g. ``now_ms``."""

CLEANUP_BATCH = 500
"""Expired sessions one ``cleanup_expired_sessions`` round reads from the store's index."""


@dataclass(frozen=True)
class Lifetime:
    """A manager's expiry and limit settings.

    Attributes:
        ttl_ms: Milliseconds without activity after which a session expires (``None``: never).
        max_sessions: At most this many live sessions in the store (``None``: no limit).
        max_sessions_per_user: At most this many live sessions per user (``None``: no limit).
        clock: The current time in epoch milliseconds.
    """

    ttl_ms: int | None = None
    max_sessions: int | None = None
    max_sessions_per_user: int | None = None
    clock: Clock = now_ms

    @classmethod
    def of(
        cls,
        *,
        ttl: float | None,
        max_sessions: int | None,
        max_sessions_per_user: int | None,
        clock: Clock | None,
    ) -> Lifetime:
        """Check the manager's arguments and build its settings.

        Raises:
            ValueError: ``ttl`` is not a positive number of seconds, a limit is not an integer
                of at least 1, or ``clock`` is not callable.
        """
        if ttl is not None and (
            isinstance(ttl, bool)
            or not isinstance(ttl, int | float)
            or not math.isfinite(ttl)
            or ttl <= 0
        ):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        for name, limit in (
            ("max_sessions", max_sessions),
            ("max_sessions_per_user", max_sessions_per_user),
        ):
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                raise ValueError(f"{name} must be an integer of at least 1, got {limit!r}")
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be a callable returning epoch ms, got {clock!r}")
        return cls(
            ttl_ms=None if ttl is None else max(1, round(ttl * 1000)),
            max_sessions=max_sessions,
            max_sessions_per_user=max_sessions_per_user,
            clock=clock or now_ms,
        )

    def now(self) -> int:
        """The current time by the clock (epoch ms)."""
        return int(self.clock())

    def expires_at(self, current: int | None) -> int | None:
        """The ``expires_at`` of a session written now: ``now + ttl``, or ``current`` (what
        it had) when there is no ttl."""
        return current if self.ttl_ms is None else self.now() + self.ttl_ms

    def limits(self) -> CreateLimits | None:
        """The caps a creation passes to the store, or ``None`` without any."""
        if self.max_sessions is None and self.max_sessions_per_user is None:
            return None
        return CreateLimits(self.now(), self.max_sessions, self.max_sessions_per_user)

    def is_expired(self, header: SessionHeader, now: int | None = None) -> bool:
        """Whether ``header`` has expired at ``now`` (default: the clock's now)."""
        at = self.now() if now is None else now
        return header.expires_at is not None and header.expires_at <= at

    def check(self, header: SessionHeader) -> None:
        """Refuse an expired session.

        Raises:
            SessionExpiredError: ``header.expires_at`` is at or before now.
        """
        if self.is_expired(header):
            raise SessionExpiredError(
                f"session {header.id} expired after a time without activity; start a new session",
                session_id=header.id,
                expires_at=header.expires_at,
            )
