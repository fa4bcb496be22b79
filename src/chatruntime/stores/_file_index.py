"""``FileStore``'s session index: ``<root>/index.sqlite3``, the listing's source.

One row per session (id, agent, user, status, last activity, expiry, revision, header JSON),
with an index per listing filter ordered like listings (``last_activity DESC, id DESC``), so a
page costs what its rows cost, however many sessions there are, and one by expiry, so
finding expired sessions costs what the expired ones cost. The session files stay the
truth; the index is derived from them, and deleting it while no store has the folder open
makes the next store rebuild it.

**Kept in step.** Every change to a session's files, made under the session's lock, goes
through three steps: :meth:`SessionIndex.changing` makes sure ``pending`` holds an entry for
the session under this index's *owner* number (committed before the files change), the files
change durably, then :meth:`SessionIndex.finish` writes the session's row. Commits do not
``fsync`` (``journal_mode=WAL``, ``synchronous=NORMAL``): they survive a killed process, not a
power cut, and cost a turn no disk flush of its own. Changes of many threads at once share
one commit (:meth:`_batched`).

An entry stays while its owner lives, so the next changes of that session (a conversation's
next turns) cost one commit, the row's, instead of two. Each open index holds the lock of
its own owner number (``Slot.owner``) for as long as it is open, and its process's death
drops it: an entry whose owner's lock can be taken is a dead process's, and only those are
settled by others. An owner removes its entries when it closes (but those of rows it failed
to write, which a later listing settles), and its oldest ones when it has more than
:data:`_OWNED_MOST`.

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
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..models import SessionHeader, SessionStatus, StorageError
from ._file_codec import encode_header
from ._file_io import remove
from ._file_locks import INDEX, OWNER_SPAN, PRESENCE, LockFile, Slot
from ._paging import Position

logger = logging.getLogger("chatruntime.stores")

INDEX_VERSION: Final = 3
"""Version of the index's tables; an index of another version is rebuilt (3: ``expires_at``)."""
INDEX_NAME: Final = "index.sqlite3"
_BUSY_TIMEOUT_MS: Final = 10_000
_OWNED_MOST: Final = 512
"""Entries in ``pending`` one index keeps at most; beyond, the oldest half goes."""
_REBUILD_BATCH: Final = 500

_SCHEMA = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    user_id TEXT,
    status TEXT,
    last_activity INTEGER,
    expires_at INTEGER,
    revision INTEGER,
    header TEXT
);
CREATE INDEX sessions_by_activity ON sessions (last_activity DESC, id DESC);
CREATE INDEX sessions_by_agent ON sessions (agent_id, last_activity DESC, id DESC);
CREATE INDEX sessions_by_user ON sessions (user_id, last_activity DESC, id DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX sessions_by_status ON sessions (status, last_activity DESC, id DESC);
CREATE INDEX sessions_by_expiry ON sessions (expires_at, id) WHERE expires_at IS NOT NULL;
CREATE TABLE pending (id TEXT NOT NULL, owner INTEGER NOT NULL, PRIMARY KEY (id, owner))
    WITHOUT ROWID;
CREATE INDEX pending_by_owner ON pending (owner);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "id, agent_id, user_id, status, last_activity, expires_at, revision, header"
_UPSERT = (
    f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, "
    "user_id = excluded.user_id, status = excluded.status, "
    "last_activity = excluded.last_activity, expires_at = excluded.expires_at, "
    "revision = excluded.revision, header = excluded.header"
)
_ROW_VALUES = tuple[
    str, str, str | None, str | None, int | None, int | None, int | None, str | None
]


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
    header_json: bytes | None = None
    """``header`` as :func:`~._file_codec.encode_header` encodes it, if the caller has it."""


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
        return (found.session_id, found.agent_id, None, None, None, None, None, None)
    encoded = found.header_json if found.header_json is not None else encode_header(header)
    return (
        found.session_id,
        found.agent_id,
        header.user_id,
        header.status,
        header.context.last_activity,
        header.expires_at,
        header.revision,
        encoded.decode(),
    )


def page_query(
    *,
    agent_id: str | None,
    user_id: str | None,
    status: SessionStatus | None,
    below: Position | None,
    limit: int,
) -> tuple[str, list[object]]:
    """The SQL and parameters of a listing page: a walk down one index, from the cursor's
    position on, that stops after ``limit`` rows.

    The index is chosen here, not left to SQLite's planner (which has no statistics to
    choose by): the user's if the listing names a user (a user has few sessions), else the
    agent's, else the status', else the one of all sessions. A unary ``+`` keeps the other
    filters off their indexes; they are checked on the rows walked. The cursor is a row
    value, which SQLite turns into the start of the range on the index.
    """
    filters = [("user_id", user_id), ("agent_id", agent_id), ("status", status)]
    where = ["header IS NOT NULL"]
    values: list[object] = []
    chosen = False
    for column, value in filters:
        if value is None:
            continue
        where.append(f"{'+' if chosen else ''}{column} = ?")
        values.append(value)
        chosen = True
    if below is not None:
        where.append("(last_activity, id) < (?, ?)")
        values.extend(below)
    values.append(limit)
    sql = (
        f"SELECT header FROM sessions WHERE {' AND '.join(where)} "
        "ORDER BY last_activity DESC, id DESC LIMIT ?"
    )
    return sql, values


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
        self._checked_hold: int | None = None
        """The hold of ``INDEX`` during which ``_file`` was last checked (see ``_checkout``)."""
        # One writer at a time in this process: SQLite's own wait for its write lock sleeps
        # in steps of milliseconds, which many threads of one process would pay in turn.
        self._writing = _write_lock_for(self.path)
        self._queue: list[_Op] = []
        self._queue_guard = threading.Lock()
        self._owner: int | None = None
        self._owned: OrderedDict[str, None] = OrderedDict()
        """Sessions with an entry in ``pending`` under ``_owner``, least recently changed first."""
        self._changing: dict[str, int] = {}
        """Changes under way in this process, by session (their entries must stay)."""
        self._unsettled: set[str] = set()
        """Sessions whose row this index failed to write (their entries must stay)."""
        self._owned_guard = threading.Lock()

    @property
    def owner(self) -> int | None:
        """This index's owner number while it is open (see :meth:`pending`)."""
        return self._owner

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
            self._claim_owner()
            rebuilt = self._check(scan)
            with self._transaction(durable=True) as conn:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("boot") != boot_id() or meta.get("clean") != "0":
                    conn.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [("boot", boot_id()), ("clean", "0")],
                    )
        except BaseException:
            self._give_up_owner()
            self._locks.release(PRESENCE)
            self.close_connections()
            raise
        return rebuilt

    def _claim_owner(self) -> None:
        while True:
            number = secrets.randbelow(OWNER_SPAN)
            if self._locks.acquire(Slot.owner(number), wait=False):
                self._owner = number
                return

    def _give_up_owner(self) -> None:
        if self._owner is not None:
            self._locks.release(Slot.owner(self._owner))
            self._owner = None
        with self._owned_guard:
            self._owned.clear()
            self._unsettled.clear()

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
        # Always a new file: processes still using the old one notice the new inode at
        # their next call (see _checkout), and so forget what they knew of the old one.
        self.close_connections()
        for suffix in ("", "-wal", "-shm"):
            remove(Path(f"{self.path}{suffix}"))
        with self._transaction() as conn:
            count = self._fill(conn, scan)
        logger.info(
            "rebuilt the session index %s: %d sessions in %.1fs",
            self.path,
            count,
            time.monotonic() - started,
        )

    @classmethod
    def _fill(cls, conn: sqlite3.Connection, scan: Scanner) -> int:
        """Create the tables in an empty database and a row for each session ``scan``
        finds; how many sessions that is."""
        for statement in _SCHEMA.split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {INDEX_VERSION}")
        count = 0
        batch: list[_ROW_VALUES] = []
        for found in scan():
            batch.append(_row(found))
            if len(batch) >= _REBUILD_BATCH:
                count += cls._insert_new(conn, batch)
                batch = []
        return count + cls._insert_new(conn, batch)

    @staticmethod
    def _insert_new(conn: sqlite3.Connection, rows: list[_ROW_VALUES]) -> int:
        # OR IGNORE: a session found under two agents keeps the first folder's copy.
        before = conn.total_changes
        conn.executemany(
            f"INSERT OR IGNORE INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        return conn.total_changes - before

    def close(self) -> None:
        """Remove this index's entries from ``pending`` (but those of changes under way or
        rows it failed to write) and give back its owner lock and ``PRESENCE``; the last
        store of all to close flushes the index to disk and marks it ``clean=1``. Then close
        this store's connections."""
        try:
            self._drop_owned()
            self._give_up_owner()
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
            self._checked_hold = None
        for conn in pool:
            with suppress(sqlite3.Error):
                conn.close()

    # -- the write protocol ------------------------------------------------------------------

    @contextmanager
    def changing(self, session_id: str) -> Iterator[None]:
        """Around a change of the session's files (the caller holds the session's lock and
        ``INDEX`` shared): makes sure ``pending`` has this index's entry for the session
        before the body runs, and keeps it while the body runs.

        Raises:
            StorageError: The index cannot be written; the files must not change then.
        """
        with self._owned_guard:
            self._changing[session_id] = self._changing.get(session_id, 0) + 1
        try:
            self._begin(session_id)
            yield
        finally:
            with self._owned_guard:
                left = self._changing.pop(session_id) - 1
                if left:
                    self._changing[session_id] = left

    def _begin(self, session_id: str) -> None:
        # The entry of an earlier change is still there unless the file was replaced since
        # (a rebuild elsewhere): checked first, which forgets the entries of an old file.
        self._check_file(index_held=True)
        with self._owned_guard:
            if session_id in self._owned:
                self._owned.move_to_end(session_id)
                return
        entry = (session_id, self._owner)
        self._batched(
            lambda conn: conn.execute(
                "INSERT OR IGNORE INTO pending (id, owner) VALUES (?, ?)", entry
            )
        )
        with self._owned_guard:
            self._owned[session_id] = None
            surplus: list[str] = []
            if len(self._owned) > _OWNED_MOST:
                for old in list(self._owned):
                    if len(self._owned) - len(surplus) <= _OWNED_MOST // 2:
                        break
                    if old not in self._changing and old not in self._unsettled:
                        surplus.append(old)
                for old in surplus:
                    del self._owned[old]
        if surplus:
            self._remove_entries(surplus)

    def finish(self, found: Found | None, session_id: str) -> bool:
        """Write the session's row as its files now are (``None``: deleted); whether that
        worked. A failure is logged, not raised: the files changed durably, and the pending
        entry makes a later reconciliation write the row (this process's own entry is kept
        for it). Also what repairs a row a reader found stale."""
        if found is None:
            entry = (session_id, self._owner)

            def apply(conn: sqlite3.Connection) -> None:
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
                # Only this index's entry: another process's is the one it keeps until it
                # closes or dies.
                conn.execute("DELETE FROM pending WHERE id = ? AND owner = ?", entry)

        else:
            row = _row(found)

            def apply(conn: sqlite3.Connection) -> None:
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
            with self._owned_guard:
                if session_id in self._owned:
                    self._unsettled.add(session_id)
            return False
        with self._owned_guard:
            self._unsettled.discard(session_id)
            if found is None:
                self._owned.pop(session_id, None)
        return True

    def pending(self) -> list[tuple[str, int]]:
        """The entries of ``pending`` to settle, as ``(session, owner)``: those of owners
        that are gone (their process died), and this index's own for rows it failed to
        write. Costs a lock test per owner, not a read per entry, while owners live."""
        with self._connection() as conn:
            owners = [row[0] for row in conn.execute("SELECT DISTINCT owner FROM pending")]
            gone = [owner for owner in owners if owner != self._owner and self._gone(owner)]
            entries: list[tuple[str, int]] = []
            for owner in gone:
                entries.extend(
                    (str(row[0]), owner)
                    for row in conn.execute("SELECT id FROM pending WHERE owner = ?", (owner,))
                )
        with self._owned_guard:
            if self._owner is not None:
                entries.extend((session_id, self._owner) for session_id in self._unsettled)
        return entries

    def _gone(self, owner: int) -> bool:
        slot = Slot.owner(owner)
        if not self._locks.acquire(slot, wait=False):
            return False
        self._locks.release(slot)
        return True

    def settle(self, session_id: str, owner: int, read: Reader) -> bool:
        """Rewrite the row of a session left pending by ``owner``, if it still is, and clear
        a gone owner's entry; whether the row was rewritten. The caller holds the session's
        lock, so no change of it is under way."""
        entry = (session_id, owner)
        with self._connection() as conn:
            still = conn.execute(
                "SELECT 1 FROM pending WHERE id = ? AND owner = ?", entry
            ).fetchone()
        if still is None:
            return False
        if owner == self._owner:
            return self.finish(read(session_id), session_id)
        found = read(session_id)
        row = None if found is None else _row(found)

        def apply(conn: sqlite3.Connection) -> None:
            if row is None:
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            else:
                conn.execute(_UPSERT, row)
            conn.execute("DELETE FROM pending WHERE id = ? AND owner = ?", entry)

        try:
            self._batched(apply)
        except StorageError as error:
            logger.warning("could not settle session %s in the index: %s", session_id, error)
            return False
        return True

    def _remove_entries(self, session_ids: list[str]) -> None:
        """Remove this index's entries of sessions whose rows it wrote (best effort: an entry
        left costs a read of its session after this process is gone, nothing else)."""
        entries = [(session_id, self._owner) for session_id in session_ids]
        try:
            self._batched(
                lambda conn: conn.executemany(
                    "DELETE FROM pending WHERE id = ? AND owner = ?", entries
                )
            )
        except StorageError as error:
            logger.info("left %d entries in the session index's pending: %s", len(entries), error)

    def _drop_owned(self) -> None:
        """On closing: remove this index's entries but those it must keep."""
        if self._owner is None:
            return
        with self._owned_guard:
            done = [
                session_id
                for session_id in self._owned
                if session_id not in self._changing and session_id not in self._unsettled
            ]
        if not done:
            return
        self._locks.acquire(INDEX, shared=True)
        try:
            self._remove_entries(done)
        finally:
            self._locks.release(INDEX)

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
                        with self._connection(index_held=True) as conn:
                            batch[0].apply(conn)
                    else:
                        with self._transaction_locked(index_held=True) as conn:
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

    def count(self, *, user_id: str | None = None, live_at: int | None = None) -> int:
        """Rows (sessions, damaged ones included), of ``user_id`` only and not expired at
        ``live_at`` (epoch ms) if given."""
        where: list[str] = []
        values: list[object] = []
        if user_id is not None:
            where.append("user_id = ?")
            values.append(user_id)
        if live_at is not None:
            where.append("(expires_at IS NULL OR expires_at > ?)")
            values.append(live_at)
        sql = "SELECT count(*) FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connection() as conn:
            return int(conn.execute(sql, values).fetchone()[0])

    def expired(self, now: int, limit: int) -> list[str]:
        """Ids of up to ``limit`` sessions with ``expires_at <= now``, earliest first (a walk
        down the expiry index)."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id FROM sessions WHERE expires_at IS NOT NULL AND expires_at <= ? "
                "ORDER BY expires_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
        return [str(row[0]) for row in rows]

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
        sql, values = page_query(
            agent_id=agent_id, user_id=user_id, status=status, below=below, limit=limit
        )
        with self._connection() as conn:
            return [str(row[0]) for row in conn.execute(sql, values).fetchall()]

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _connection(self, *, index_held: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection from the pool; an SQLite error becomes ``StorageError`` and the
        connection is dropped rather than given back. ``index_held``: the caller holds
        ``INDEX`` (see :meth:`_checkout`)."""
        conn = self._checkout(index_held=index_held)
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
    def _transaction_locked(
        self, *, durable: bool = False, index_held: bool = False
    ) -> Iterator[sqlite3.Connection]:
        with self._connection(index_held=index_held) as conn:
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

    def _check_file(self, *, index_held: bool = False) -> bool:
        """Make sure the pooled connections are to the file now at ``path`` (dropping them
        and what this index knew of its entries if it was replaced); whether it exists.

        The file is replaced only by a rebuild, which holds ``INDEX`` exclusively: while
        this process holds ``INDEX`` without a break (``index_held``: the caller holds it),
        the file checked last is still the index, and the ``stat`` is skipped.
        """
        hold = self._locks.hold_of(INDEX) if index_held else None
        if hold is not None and hold == self._checked_hold:
            return True
        current = _identity(self.path)
        with self._pool_guard:
            replaced = current != self._file and self._file is not None
            if current != self._file:
                stale, self._pool = self._pool, []
                self._file = current
            else:
                stale = []
            self._checked_hold = hold
        if replaced:
            with self._owned_guard:
                self._owned.clear()
                self._unsettled.clear()
        for old in stale:
            with suppress(sqlite3.Error):
                old.close()
        return current is not None

    def _checkout(self, *, index_held: bool = False) -> sqlite3.Connection:
        exists = self._check_file(index_held=index_held)
        with self._pool_guard:
            conn = self._pool.pop() if self._pool else None
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
        if not exists:
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
