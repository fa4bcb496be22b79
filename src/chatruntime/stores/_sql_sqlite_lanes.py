"""The connections of ``SqlStore`` on SQLite: lanes to aiosqlite's threads, and the writer.

aiosqlite runs every connection in a thread of its own, and its API makes one round trip to
that thread per statement, cursor and fetch: through SQLAlchemy a turn took some forty. A
:class:`Lane` instead runs one function in the connection's thread per call (a read with all
its statements, a batch of writes with its transaction), through ``_execute``, the aiosqlite
internal that SQLAlchemy's own aiosqlite adapter also relies on.

:class:`Writer` queues this process's writes and commits them in batches: whoever finds the
writer free commits every write waiting at that moment in one transaction, each in a
savepoint of its own (a failing write takes back only itself), with one fsync for the batch
(group commit). A queued write always runs to its end, whatever happens to its caller (see
:meth:`Writer.run`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Generic, TypeVar

import anyio
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import await_only

from ..models import StorageError
from ._lease import run_to_end

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "Lane",
    "Writer",
    "configure_connection",
    "configure_read_only",
    "in_snapshot",
]

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
"""How long a statement waits for another process's write transaction to end."""
_SAVEPOINT: Final = "chatruntime_write"


def configure_connection(connection: sqlite3.Connection) -> None:
    """Set up a new SQLite connection: explicit transactions, foreign keys, WAL, full sync."""
    # pysqlite would begin transactions itself, lazily and never IMMEDIATE; every transaction
    # of the store says BEGIN itself.
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # Readers then never wait for the writer; an in-memory database keeps "memory".
        _set_wal(cursor)
        # The WAL is synced at every commit: a write that returned survives a power cut
        # (NORMAL would sync only at checkpoints).
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


def _set_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database to WAL, waiting out other connections as the busy timeout would.

    The switch needs the database to itself: while another connection creates or changes a
    new database, SQLite may answer "database is locked" at once instead of calling the busy
    handler (which would only deadlock), so it is tried again here until the timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        # Called from SQLAlchemy's async adapter (a greenlet on the event loop): wait there.
        await_only(asyncio.sleep(0.01))


def configure_read_only(connection: sqlite3.Connection) -> None:
    """Set up a connection of a store open read-only: as :func:`configure_connection`, but
    without setting the journal mode (a write) and refusing every write in SQLite itself."""
    connection.isolation_level = None
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only = ON")
    finally:
        cursor.close()


class Lane:
    """One connection checked out of the engine's pool for the store's lifetime, and the
    thread aiosqlite runs it in."""

    def __init__(self, held: AsyncConnection, driver: Any) -> None:
        self._held = held
        self._driver = driver
        self.busy = 0
        """Calls queued or running on this connection."""

    @classmethod
    async def check_out(
        cls,
        engine: AsyncEngine,
        configure: Callable[[sqlite3.Connection], None] = configure_connection,
    ) -> Lane:
        """Check a connection out of ``engine``'s pool and configure it (``configure``).

        Raises:
            StorageError: The aiosqlite version offers no way to run a function in the
                connection's thread.
        """
        held = await engine.connect()
        try:
            raw = await held.get_raw_connection()
            driver = raw.driver_connection
            if not callable(getattr(driver, "_execute", None)):
                raise StorageError(
                    "this aiosqlite version cannot run a function in its connection's thread "
                    f"({type(driver).__module__}.{type(driver).__name__} has no _execute); "
                    "install aiosqlite 0.20 to 0.22"
                )
            lane = cls(held, driver)
            await lane.run(configure)
        except BaseException:
            await run_to_end(held.close)
            raise
        return lane

    async def run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """``function(connection)`` in the connection's thread: one round trip."""
        driver = self._driver
        self.busy += 1
        try:
            result: T = await driver._execute(lambda: function(driver._conn))
            return result
        finally:
            self.busy -= 1

    async def close(self) -> None:
        """Give the connection back to the engine's pool.

        Run to its end even under a raw ``Task.cancel()``: cut short, SQLAlchemy would
        invalidate the connection and leave the task that closes it behind, still pending
        when the event loop ends.
        """
        await run_to_end(self._held.close)


@dataclass(eq=False)
class _Pending(Generic[T]):
    """A write waiting for its batch."""

    apply: Callable[[sqlite3.Connection], T]
    value: Any = None
    error: Exception | None = None
    done: bool = False

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        result: T = self.value
        return result


class Writer:
    """The writer connection and the queue of writes waiting for it (group commit)."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self._waiting: list[_Pending[Any]] = []
        self._turn = anyio.Lock()

    async def run(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """``apply(connection)`` inside a write transaction, committed when this returns.

        Once queued, the write runs to its end even if the caller is cancelled meanwhile,
        by anyio or by a raw ``Task.cancel()`` (see ``run_to_end``): a write the caller
        stopped waiting for could still commit, and the caller must never believe otherwise
        (nor give back the session's lease while its write is still to land).
        """
        pending: _Pending[T] = _Pending(apply)
        self._waiting.append(pending)
        await run_to_end(partial(self._commit_until_done, pending))
        return pending.result()

    async def _commit_until_done(self, pending: _Pending[Any]) -> None:
        async with self._turn:
            if pending.done:
                return  # an earlier batch took it along
            batch, self._waiting = self._waiting, []
            try:
                await self.lane.run(partial(_commit_batch, batch))
            except Exception as error:
                for each in batch:
                    if not each.done:
                        each.error, each.done = error, True


def _commit_batch(batch: Sequence[_Pending[Any]], connection: sqlite3.Connection) -> None:
    """Apply each write in a savepoint of one transaction and commit them together."""
    applied: list[_Pending[Any]] = []
    try:
        connection.execute("BEGIN IMMEDIATE")
        for pending in batch:
            connection.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                pending.value = pending.apply(connection)
            except Exception as error:
                if not connection.in_transaction:
                    # SQLite ended the whole transaction itself (disk full, I/O error).
                    raise
                connection.execute(f"ROLLBACK TO {_SAVEPOINT}")
                connection.execute(f"RELEASE {_SAVEPOINT}")
                pending.error, pending.done = error, True
            else:
                connection.execute(f"RELEASE {_SAVEPOINT}")
                applied.append(pending)
        connection.execute("COMMIT")
    except Exception as error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        # Nothing of the batch is stored: every write not refused already fails with this.
        for pending in batch:
            if not pending.done:
                pending.error, pending.done = error, True
        return
    for pending in applied:
        pending.done = True


def in_snapshot(function: Callable[[sqlite3.Connection], T], connection: sqlite3.Connection) -> T:
    """``function`` in one read transaction: its statements see one snapshot."""
    connection.execute("BEGIN")
    try:
        return function(connection)
    finally:
        connection.execute("COMMIT")
