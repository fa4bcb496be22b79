"""``FileStore``'s session index: ``<root>/index.sqlite3``, the listing's source.

One row per session (id, agent, user, status, last activity, revision, header JSON), with an
index per listing filter ordered like listings (``last_activity DESC, id DESC``), so a page
costs what its rows cost, however many sessions there are. The session files stay the
truth; the index is derived from them, and deleting it while no store has the folder open
makes the next store rebuild it.

**Kept in step.** Every change to a session's files, made under the session's lock, goes
through three steps: :meth:`SessionIndex.begin` records the session in ``pending``
(committed before the files change), the files change durably, then
:meth:`SessionIndex.finish` writes the session's row, and a trigger clears its ``pending``
entry in the same statement. Commits do not ``fsync`` (``journal_mode=WAL``,
``synchronous=NORMAL``): they survive a killed process, not a power cut, and cost a turn no
disk flush of its own. Changes of many threads at once share one commit (:meth:`_batched`).

**Repaired when stale.** A row can disagree with the files when a process dies between the
file change and :meth:`~SessionIndex.finish` (its ``pending`` entry stays, and the next
listing, count or opening of the folder re-reads that session from its files), when the
machine stops while a store has the index open (commits not yet flushed may be lost: see
:meth:`SessionIndex.open`), or when someone edits the files by hand (a read of the session
compares the row's revision with the files' and rewrites it). It is rebuilt from the files
when it is missing, unreadable, of another :data:`INDEX_VERSION`, or after such a stop.

All methods block; ``FileStore`` runs them in worker threads.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..models import SCHEMA_VERSION, SessionHeader, SessionStatus, StorageError
from ._file_io import remove
from ._file_locks import INDEX, PRESENCE, LockFile
from ._paging import Position

logger = logging.getLogger("chatruntime.stores")

INDEX_VERSION: Final = 1
"""Version of the index's tables; an index of another version is rebuilt."""
INDEX_NAME: Final = "index.sqlite3"
_BUSY_TIMEOUT_MS: Final = 10_000
_REBUILD_BATCH: Final = 500

_SCHEMA = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    user_id TEXT,
    status TEXT,
    last_activity INTEGER,
    revision INTEGER,
    header TEXT
);
CREATE INDEX sessions_by_activity ON sessions (last_activity DESC, id DESC);
CREATE INDEX sessions_by_agent ON sessions (agent_id, last_activity DESC, id DESC);
CREATE INDEX sessions_by_user ON sessions (user_id, last_activity DESC, id DESC);
CREATE INDEX sessions_by_status ON sessions (status, last_activity DESC, id DESC);
CREATE TABLE pending (id TEXT PRIMARY KEY);
CREATE TRIGGER sessions_inserted AFTER INSERT ON sessions
    BEGIN DELETE FROM pending WHERE id = NEW.id; END;
CREATE TRIGGER sessions_updated AFTER UPDATE ON sessions
    BEGIN DELETE FROM pending WHERE id = NEW.id; END;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_UPSERT = (
    "INSERT INTO sessions (id, agent_id, user_id, status, last_activity, revision, header) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, "
    "user_id = excluded.user_id, status = excluded.status, "
    "last_activity = excluded.last_activity, revision = excluded.revision, "
    "header = excluded.header"
)
_ROW_VALUES = tuple[str, str, str | None, str | None, int | None, int | None, str | None]


@dataclass(frozen=True)
class Entry:
    """What the index says about one session."""

    agent_id: str
    revision: int | None
    """``None`` for a session whose files could not be read when the row was written."""


@dataclass(frozen=True)
class Found:
    """A session as the files have it, to write its row from.

    ``header`` is ``None`` when the files exist but cannot be read: the row then counts the
    session but lists nothing for it.
    """

    session_id: str
    agent_id: str
    header: SessionHeader | None


@dataclass
class _Op:
    """A change waiting for a batched write transaction."""

    apply: Callable[[sqlite3.Connection], object]
    done: bool = False
    error: StorageError | None = None


Reader = Callable[[str], Found | None]
"""Reads one session's current header from its files (``None``: no such session)."""
Scanner = Callable[[], Iterable[Found]]
"""Reads every session's current header from the files, for a rebuild."""


def _row(found: Found) -> _ROW_VALUES:
    header = found.header
    if header is None:
        return (found.session_id, found.agent_id, None, None, None, None, None)
    stamped = header.model_copy(update={"schema_version": SCHEMA_VERSION})
    return (
        found.session_id,
        found.agent_id,
        header.user_id,
        header.status,
        header.context.last_activity,
        header.revision,
        # A ChatSession passed as its header must not bring its history along.
        stamped.model_dump_json(by_alias=True, exclude_none=True, exclude={"history"}),
    )


def boot_id() -> str:
    """What tells one run of this machine from the next (Linux's boot id where available)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        # Elsewhere: when the machine booted, to the minute (a clock step may change it,
        # which costs one needless rebuild, never a wrong index).
        booted = time.time() - time.clock_gettime(time.CLOCK_MONOTONIC)
        return f"booted-{round(booted / 60)}"


class SessionIndex:
    """The index of one store folder, with a pool of connections for worker threads."""

    def __init__(self, root: Path, locks: LockFile) -> None:
        self.path = root / INDEX_NAME
        self._locks = locks
        self._pool: list[sqlite3.Connection] = []
        self._pool_guard = threading.Lock()
        self._file: tuple[int, int] | None = None
        # One writer at a time in this process: SQLite's own wait for its write lock sleeps
        # in steps of milliseconds, which many threads of one process would pay in turn.
        self._writing = _write_lock_for(self.path)
        self._queue: list[_Op] = []
        self._queue_guard = threading.Lock()

    # -- opening and closing ----------------------------------------------------------------

    def open(self, scan: Scanner) -> str | None:
        """Make the index usable: create it, or rebuild it when it cannot be trusted. Holds
        ``PRESENCE`` shared until :meth:`close`. Returns why it was rebuilt, if it was.

        Rebuilt (a scan of every session's files, logged) when the file is missing,
        unreadable or of another version, and when the machine restarted while some store
        still had the index open: such a store marked it ``clean=0`` durably when it opened,
        and only the last store to close marks it ``clean=1`` after flushing it to disk. A
        restart therefore means that commits made without a flush may be lost, and only
        then is the index rebuilt; otherwise opening costs the same at any size.
        """
        self._locks.acquire(PRESENCE, shared=True)
        try:
            rebuilt = self._check(scan)
            with self._transaction(durable=True) as conn:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("boot") != boot_id() or meta.get("clean") != "0":
                    conn.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [("boot", boot_id()), ("clean", "0")],
                    )
        except BaseException:
            self._locks.release(PRESENCE)
            self.close_connections()
            raise
        return rebuilt

    def _check(self, scan: Scanner) -> str | None:
        # Checked under INDEX shared (no rebuild under way elsewhere), rebuilt under INDEX
        # exclusive (no session file changing anywhere), checked again first: another
        # process may have rebuilt it meanwhile.
        self._locks.acquire(INDEX, shared=True)
        try:
            reason = self._distrust()
        finally:
            self._locks.release(INDEX)
        if reason is None:
            return None
        self._locks.acquire(INDEX)
        try:
            reason = self._distrust()
            if reason is not None:
                self._rebuild(scan, reason)
        finally:
            self._locks.release(INDEX)
        return reason

    def _distrust(self) -> str | None:
        """Why the index must be rebuilt, or ``None`` if it can be used as it is."""
        if not self.path.exists():
            return "it does not exist yet"
        try:
            with self._connection() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version != INDEX_VERSION:
                    return f"it is of version {version}, not {INDEX_VERSION}"
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except StorageError as error:
            if not _damaged(error):
                raise
            return f"it cannot be read ({error.__cause__})"
        if meta.get("clean") == "0" and meta.get("boot") != boot_id():
            return "the machine restarted while a store had it open"
        return None

    def _rebuild(self, scan: Scanner, reason: str) -> None:
        logger.info("rebuilding the session index %s: %s", self.path, reason)
        started = time.monotonic()
        try:
            with self._connection() as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except StorageError as error:
            if not _damaged(error):
                raise
            # Not a database at all: start a new file. Processes still using the old one
            # notice the new inode at their next call (see _connection).
            self.close_connections()
            for suffix in ("", "-wal", "-shm"):
                remove(Path(f"{self.path}{suffix}"))
        count = 0
        with self._transaction() as conn:
            tables = [
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                ).fetchall()
            ]
            for table in tables:
                conn.execute(f'DROP TABLE "{table}"')
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            batch: list[_ROW_VALUES] = []
            for found in scan():
                batch.append(_row(found))
                if len(batch) >= _REBUILD_BATCH:
                    count += self._insert_new(conn, batch)
                    batch = []
            count += self._insert_new(conn, batch)
        logger.info(
            "rebuilt the session index %s: %d sessions in %.1fs",
            self.path,
            count,
            time.monotonic() - started,
        )

    @staticmethod
    def _insert_new(conn: sqlite3.Connection, rows: list[_ROW_VALUES]) -> int:
        # OR IGNORE: a session found under two agents keeps the first folder's copy.
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO sessions (id, agent_id, user_id, status, last_activity, "
            "revision, header) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return conn.total_changes - before

    def close(self) -> None:
        """Give back ``PRESENCE``; the last store of all to close flushes the index to disk
        and marks it ``clean=1``. Then close this store's connections."""
        try:
            self._locks.release(PRESENCE)
            if self._locks.acquire(PRESENCE, wait=False):
                try:
                    self._locks.acquire(INDEX)
                    try:
                        with self._transaction() as conn:
                            conn.execute(
                                "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '1')"
                            )
                        with self._connection() as conn:
                            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    finally:
                        self._locks.release(INDEX)
                finally:
                    self._locks.release(PRESENCE)
        finally:
            self.close_connections()

    def close_connections(self) -> None:
        with self._pool_guard:
            pool, self._pool = self._pool, []
            self._file = None
        for conn in pool:
            with suppress(sqlite3.Error):
                conn.close()

    # -- the write protocol ------------------------------------------------------------------

    def begin(self, session_id: str) -> None:
        """Record that the session's files are about to change (before they do).

        Raises:
            StorageError: The index cannot be written; the files must not change then.
        """
        self._batched(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO pending (id) VALUES (?)", (session_id,)
            )
        )

    def finish(self, found: Found | None, session_id: str) -> bool:
        """Write the session's row as its files now are (``None``: deleted) and clear its
        pending entry; whether that worked. A failure is logged, not raised: the files
        changed durably, and the pending entry makes a later reconciliation write the row.
        Also what repairs a row a reader found stale."""
        if found is None:

            def apply(conn: sqlite3.Connection) -> None:
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                conn.execute("DELETE FROM pending WHERE id = ?", (session_id,))

        else:
            row = _row(found)

            def apply(conn: sqlite3.Connection) -> None:
                # A trigger clears the pending entry in the same statement.
                conn.execute(_UPSERT, row)

        try:
            self._batched(apply)
        except StorageError as error:
            logger.warning(
                "could not update the session index for session %s (it will be repaired "
                "from the files): %s",
                session_id,
                error,
            )
            return False
        return True

    def pending(self) -> list[str]:
        with self._connection() as conn:
            return [row[0] for row in conn.execute("SELECT id FROM pending").fetchall()]

    def settle(self, session_id: str, read: Reader) -> bool:
        """Rewrite the row of a session left pending, if it still is; whether it was. The
        caller holds the session's lock, so no change of it is under way: the entry is a
        dead (or failed) writer's."""
        with self._connection() as conn:
            still = conn.execute("SELECT 1 FROM pending WHERE id = ?", (session_id,)).fetchone()
        if still is None:
            return False
        self.finish(read(session_id), session_id)
        return True

    def _batched(self, apply: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``apply`` in a write transaction, together with those of other threads.

        Whichever thread gets the write lock commits everything queued by then in one
        transaction; the others find theirs done. Under load this is one commit for many
        changes, rather than a queue of commits each waiting for the last.

        Raises:
            StorageError: The transaction holding ``apply`` failed (none of it was written).
        """
        op = _Op(apply)
        with self._queue_guard:
            self._queue.append(op)
        with self._writing:
            if not op.done:
                with self._queue_guard:
                    batch, self._queue = self._queue, []
                try:
                    if len(batch) == 1:
                        # One statement commits by itself: no BEGIN and COMMIT round trips.
                        with self._connection() as conn:
                            batch[0].apply(conn)
                    else:
                        with self._transaction_locked() as conn:
                            for each in batch:
                                each.apply(conn)
                except StorageError as error:
                    for each in batch:
                        each.error = error
                finally:
                    for each in batch:
                        each.done = True
        if op.error is not None:
            raise StorageError(op.error.message, **op.error.details) from op.error

    # -- reading -----------------------------------------------------------------------------

    def entry(self, session_id: str) -> Entry | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT agent_id, revision FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else Entry(row[0], row[1])

    def lookup(self, session_id: str) -> tuple[Entry | None, bool]:
        """The session's row, if any, and whether a change of it is pending."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT s.agent_id, s.revision, EXISTS (SELECT 1 FROM pending WHERE id = :id) "
                "FROM (SELECT :id AS id) AS q LEFT JOIN sessions AS s ON s.id = q.id",
                {"id": session_id},
            ).fetchone()
        entry = None if row[0] is None else Entry(row[0], row[1])
        return entry, bool(row[2])

    def count(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])

    def page(
        self,
        *,
        agent_id: str | None,
        user_id: str | None,
        status: SessionStatus | None,
        below: Position | None,
        limit: int,
    ) -> list[str]:
        """Header JSON of up to ``limit`` listed sessions, in listing order."""
        where = ["header IS NOT NULL"]
        values: list[object] = []
        for column, value in (("agent_id", agent_id), ("user_id", user_id), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        if below is not None:
            where.append("(last_activity, id) < (?, ?)")
            values.extend(below)
        sql = (
            f"SELECT header FROM sessions WHERE {' AND '.join(where)} "
            "ORDER BY last_activity DESC, id DESC LIMIT ?"
        )
        values.append(limit)
        with self._connection() as conn:
            return [str(row[0]) for row in conn.execute(sql, values).fetchall()]

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection from the pool; an SQLite error becomes ``StorageError`` and the
        connection is dropped rather than given back."""
        conn = self._checkout()
        try:
            yield conn
        except sqlite3.Error as error:
            with suppress(sqlite3.Error):
                conn.close()
            raise StorageError(
                f"the session index {self.path} failed: {error}", path=str(self.path)
            ) from error
        except BaseException:
            with suppress(sqlite3.Error):
                conn.close()
            raise
        with self._pool_guard:
            self._pool.append(conn)

    @contextmanager
    def _transaction(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._writing, self._transaction_locked(durable=durable) as conn:
            yield conn

    @contextmanager
    def _transaction_locked(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._connection() as conn:
            if durable:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous = NORMAL")

    def _checkout(self) -> sqlite3.Connection:
        current = _identity(self.path)
        with self._pool_guard:
            if current != self._file:
                # The file was replaced (a rebuild of an unreadable index by some process):
                # connections to the old one must go.
                stale, self._pool = self._pool, []
                self._file = current
            else:
                stale = []
            conn = self._pool.pop() if self._pool else None
        for old in stale:
            with suppress(sqlite3.Error):
                old.close()
        if conn is not None:
            return conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as error:
            raise StorageError(
                f"cannot open the session index {self.path}: {error}", path=str(self.path)
            ) from error
        if current is None:
            with self._pool_guard:
                self._file = _identity(self.path)
        return conn


def _damaged(error: StorageError) -> bool:
    """Whether SQLite said the file is not a database, or a damaged one."""
    cause = error.__cause__
    return isinstance(cause, sqlite3.DatabaseError) and getattr(
        cause, "sqlite_errorcode", None
    ) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StorageError(f"cannot inspect {path}: {error.strerror}", path=str(path)) from error
    return (stat.st_dev, stat.st_ino)


_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _write_lock_for(path: Path) -> threading.Lock:
    key = os.path.realpath(path)
    with _write_locks_guard:
        return _write_locks.setdefault(key, threading.Lock())
