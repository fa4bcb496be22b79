"""``FileStore`` on a folder it cannot write: the index in memory, and how a folder is known
to be read-only.

A store opened read-only (``FileStore(root, read_only=True)``, or a folder where
``sessions.lock`` or ``index.sqlite3`` cannot be written: see :func:`denied`) creates and
changes nothing. It cannot use ``index.sqlite3`` (SQLite needs to write beside it to read a
database in WAL mode, and a row left stale by a crashed writer could not be repaired), so it
builds the same index in memory from the files when it opens: one scan of the session
headers, logged. Listings then show the sessions as they were at that moment; reading a
session always reads its files.

All methods block; ``FileStore`` runs them in worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..models import StorageError
from ._file_index import Scanner, SessionIndex, logger
from ._file_locks import LockFile

_DENIED_ERRNOS = frozenset({"EACCES", "EPERM", "EROFS"})
_DENIED_SQLITE = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH}
)


def denied(error: StorageError) -> bool:
    """Whether ``error`` says the folder cannot be written by this process (permissions, a
    read-only file system), rather than that something is broken."""
    if error.details.get("errno") in _DENIED_ERRNOS:
        return True
    cause = error.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    return isinstance(cause, sqlite3.Error) and code is not None and code & 0xFF in _DENIED_SQLITE


class ReadOnlyIndex(SessionIndex):
    """The session index of a store open read-only: a database in memory, built from the
    files at :meth:`open`, on one connection that threads take in turn.

    It is written only to repair a row a read found stale (as the index on disk is), never
    on disk; it has no owner, no ``pending`` entries and no presence.
    """

    def __init__(self, root: Path, locks: LockFile) -> None:
        super().__init__(root, locks)
        self._memory: sqlite3.Connection | None = None
        self._memory_guard = threading.RLock()
        # Its own: the one for the file's path serialises writers of the index on disk.
        self._writing = threading.Lock()

    def open(self, scan: Scanner) -> str | None:
        started = time.monotonic()
        self._memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        try:
            with self._transaction() as conn:
                count = self._fill(conn, scan)
        except BaseException:
            self.close_connections()
            raise
        logger.info(
            "indexed the read-only store %s in memory: %d sessions in %.1fs",
            self.path.parent,
            count,
            time.monotonic() - started,
        )
        return None

    def close(self) -> None:
        self.close_connections()

    def close_connections(self) -> None:
        with self._memory_guard:
            memory, self._memory = self._memory, None
        if memory is not None:
            with suppress(sqlite3.Error):
                memory.close()

    def pending(self) -> list[tuple[str, int]]:
        return []

    @contextmanager
    def changing(self, session_id: str) -> Iterator[None]:
        raise StorageError(
            f"the file store {self.path.parent} is open read-only: session {session_id} "
            "cannot be changed",
            path=str(self.path.parent),
        )
        yield  # pragma: no cover - a generator, for contextmanager

    @contextmanager
    def _connection(self, *, index_held: bool = False) -> Iterator[sqlite3.Connection]:
        with self._memory_guard:
            if self._memory is None:
                raise StorageError(
                    f"the in-memory index of {self.path.parent} is closed",
                    path=str(self.path.parent),
                )
            try:
                yield self._memory
            except sqlite3.Error as error:
                raise StorageError(
                    f"the in-memory session index of {self.path.parent} failed: {error}",
                    path=str(self.path.parent),
                ) from error

    def _check_file(self, *, index_held: bool = False) -> bool:
        return True
