"""The two kinds of session lease ``SqlStore`` holds: file locks (SQLite) and rows (PostgreSQL).

**File locks.** On SQLite every process that opens a database runs on the same machine, so the
operating system can arbitrate: a session's lease is an exclusive lock on one byte of a lock
file beside the database (``<database>-leases``), at an offset derived from the session id.
Taking and giving it back is one ``fcntl`` call that writes nothing, and the kernel drops the
locks of a process that dies, so a crashed holder never makes anyone wait. The locks are Linux
open-file-description locks (``F_OFD_SETLK``), which belong to the store's own descriptor:
two stores in one process exclude each other just as two processes do. Within a store, an
``anyio.Lock`` per session queues its own callers. An in-memory database, private to its
store, needs only those.

**Rows.** PostgreSQL serves many hosts, so there a lease is a row (session id, random token,
expiry by the server's clock) taken with one statement that also reads the session's
revision, renewed in the background while held, and deleted by the write that ends the turn
or, failing that, when the ``async with`` is left, or, if the server is away then, as soon as
it answers again (``TokenLeases``). Platforms without open-file-description locks use rows
on SQLite too.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio

from ._errors import busy
from ._keyed_locks import KeyedLocks
from ._lease import Granted as Granted
from ._lease import TokenLeases, poll
from ._lease import check_lease_arguments as check_lease_arguments
from ._protocol import Lease
from ._sql_errors import ErrorMapper

logger = logging.getLogger("chatruntime.stores.sql")

if sys.platform == "linux":
    import fcntl

    FILE_LOCKS_AVAILABLE = hasattr(fcntl, "F_OFD_SETLK")
else:  # pragma: no cover - Linux runs the tests
    FILE_LOCKS_AVAILABLE = False
"""Whether this platform has the open-file-description locks file leases need."""

# struct flock as Linux lays it out: l_type, l_whence, l_start, l_len, l_pid, padded to the
# alignment of its 64-bit members ("0q").
_FLOCK: Final = "hhqqi0q"
_OFFSET_SPAN: Final = 1 << 62
_POLL_FIRST: Final = 0.005
_POLL_MOST: Final = 0.1
_RELEASE_TIMEOUT: Final = 5.0


class FileLeases:
    """Session leases of a SQLite store: byte locks on a lock file, or in-process locks only.

    Args:
        lock_path: The lock file, created if missing; ``None`` for a database no other store
            can open (in memory).
        namespace: Mixed into the offsets (the table prefix), so stores with different
            prefixes in one database never wait for each other.
        errors: Turns a failed lock call into ``StorageError``.
    """

    def __init__(self, lock_path: str | None, namespace: str, errors: ErrorMapper) -> None:
        self.lock_path = lock_path
        self._namespace = namespace
        self._errors = errors
        self._fd = -1
        self._local = KeyedLocks()

    async def open(self) -> None:
        """Open the lock file (in a worker thread: opening may wait for the disk).

        Raises:
            StorageError: It cannot be created or opened for writing.
        """
        if self.lock_path is None or self._fd >= 0:
            return
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        with self._errors.mapped(f"opening its lease file {self.lock_path}", connecting=True):
            self._fd = await anyio.to_thread.run_sync(os.open, self.lock_path, flags, 0o644)

    def close(self) -> None:
        """Close the lock file, which gives back every lock held through it."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    @asynccontextmanager
    async def hold(self, session_id: str, *, timeout: float) -> AsyncIterator[Lease]:
        """Hold the session's lease for the body of ``async with``.

        Raises:
            BusyError: Not granted within ``timeout`` seconds.
            StorageError: The lock call failed for another reason than a holder.
        """
        deadline = anyio.current_time() + timeout
        if not await self._local.acquire(session_id, timeout=timeout):
            raise busy(session_id, timeout)
        try:
            fd = self._fd
            offset = self._offset(session_id)
            if fd >= 0:
                with self._errors.mapped(f"taking the lease of {session_id}"):
                    granted = await self._lock(fd, offset, deadline)
                if not granted:
                    raise busy(session_id, timeout)
            try:
                yield Lease(session_id)
            finally:
                if fd >= 0 and fd == self._fd:
                    with self._errors.mapped(f"releasing the lease of {session_id}"):
                        _set_lock(fd, offset, fcntl.F_UNLCK)
        finally:
            self._local.release(session_id)

    async def _lock(self, fd: int, offset: int, deadline: float) -> bool:
        async def attempt() -> bool | None:
            return True if _set_lock(fd, offset, fcntl.F_WRLCK) else None

        return (
            await poll(attempt, deadline, first=_POLL_FIRST, most=_POLL_MOST, jitter=True) is True
        )

    def _offset(self, session_id: str) -> int:
        key = f"{self._namespace}\0{session_id}".encode()
        digest = hashlib.blake2b(key, digest_size=8).digest()
        # 62 bits: two sessions share a byte with odds of one in 2**62, and if they did, one
        # would only wait for the other's turn.
        return int.from_bytes(digest, "big") % _OFFSET_SPAN


def _set_lock(fd: int, offset: int, kind: int) -> bool:
    """Take (``F_WRLCK``) or give back (``F_UNLCK``) the byte at ``offset`` without waiting;
    ``False`` if another descriptor holds it."""
    request = struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0)
    while True:
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
            return True
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):
                return False
            if error.errno != errno.EINTR:
                raise


# -- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RowLeaseOps:
    """The three statements on a store's lease rows."""

    take: Callable[[str, str, int], Awaitable[Granted]]
    """``(session_id, token, ttl_ms)``: give the row to ``token`` unless a live one exists."""
    renew: Callable[[str, str, int], Awaitable[bool]]
    """``(session_id, token, ttl_ms)``: extend the token's row; ``False`` if it is gone."""
    give_back: Callable[[str, str], Awaitable[None]]
    """``(session_id, token)``: delete the token's row if it is still there."""
    failures: tuple[type[Exception], ...]
    """What a renewal or release may fail with: logged, never raised over the turn."""


def row_leases(ops: RowLeaseOps) -> TokenLeases:
    """The lease rows of a store, held as ``TokenLeases``: keep one per store, so that a row
    the server did not take back is given back when it answers again, and close it with the
    store."""
    return TokenLeases(
        take=ops.take,
        renew=ops.renew,
        give_back=ops.give_back,
        failures=ops.failures,
        give_back_timeout=_RELEASE_TIMEOUT,
        logger=logger,
    )
