"""Per-session locks in this process that disappear when nobody holds or waits for them."""

from __future__ import annotations

from ..stores._keyed_locks import KeyedLocks

__all__ = ["SessionLocks"]


class SessionLocks(KeyedLocks):
    """One fair lock per session id, created on demand and dropped when idle; ``len()`` is
    how many sessions have one right now.

    The lock's fairness (first come, first served) is what keeps concurrent messages to one
    session in call order.
    """
