"""Stores: where sessions and agents persist. All implement :class:`SessionStore`."""

from ._memory import MemoryStore
from ._protocol import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    CorruptRecord,
    LoadReport,
    SessionStore,
)

__all__ = [
    "DEFAULT_LEASE_TIMEOUT",
    "DEFAULT_LEASE_TTL",
    "CorruptRecord",
    "LoadReport",
    "MemoryStore",
    "SessionStore",
]
