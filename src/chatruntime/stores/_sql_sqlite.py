"""``SqlStore`` on SQLite: each call is one round trip to a connection's thread.

aiosqlite runs every connection in a thread of its own, and its API makes one round trip to
that thread per statement, cursor and fetch: through SQLAlchemy a turn took some forty. Here
each call instead runs as one function in the connection's thread (a read with all its
statements, a batch of writes with its transaction), through ``_execute``, the aiosqlite
internal that SQLAlchemy's own aiosqlite adapter also relies on. Statements are SQLAlchemy
Core constructs compiled once to SQL text.

Connections: the store checks out of the engine's pool, for as long as it is open, one writer
connection and ``pool_size`` reader connections. In WAL mode readers never wait for the
writer; each read goes to the least busy reader. Writes queue in this process and commit in
batches: whoever finds the writer free commits every write waiting at that moment in one
transaction, each in a savepoint of its own (a failing write takes back only itself), with
one fsync for the batch (group commit). So this process's connections never meet SQLite's
``BUSY``; another process's writer is waited for up to the busy timeout.

Durability: ``synchronous=FULL`` in WAL mode, as the Agents SDK's ``SQLiteSession`` runs:
the WAL is synced at every commit, so a write that returned survives a power cut.

An in-memory database is one connection that serves reads and writes alike.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Generic, TypeVar

import anyio
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..models import (
    AgentSpec,
    ChatSession,
    HistoryItem,
    SessionHeader,
    SessionPage,
    SessionStatus,
    StorageError,
)
from ._errors import (
    check_same_agent,
    session_exists,
    session_missing,
    stale_revision,
)
from ._paging import Position
from ._protocol import CorruptRecord, Lease
from ._sql_errors import ErrorMapper
from ._sql_leases import FileLeases, Granted, RowLeaseOps, hold_row_lease
from ._sql_listing import listing_select, page_of_rows
from ._sql_rows import HEADER_COLUMNS, RowReader, header_values, item_text
from ._sql_schema import SqlTables, db_now_ms, dump_json, load_json

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "SqliteBackend", "configure_connection"]

logger = logging.getLogger("chatruntime.stores.sql")

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
"""How long a statement waits for another process's write transaction to end."""
_SCAN_SESSIONS: Final = 100
"""Sessions a scan reads per round trip at most..."""
_SCAN_ITEMS: Final = 10_000
"""...and items, unless one session alone has more."""
_JSON_COLUMNS: Final = ("metadata", "state")
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
        cursor.execute("PRAGMA journal_mode = WAL")
        # The WAL is synced at every commit: a write that returned survives a power cut
        # (NORMAL would sync only at checkpoints).
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


# -- connections ----------------------------------------------------------------------------


class _Lane:
    """One connection checked out of the engine's pool for the store's lifetime, and the
    thread aiosqlite runs it in."""

    def __init__(self, held: AsyncConnection, driver: Any) -> None:
        self._held = held
        self._driver = driver
        self.busy = 0
        """Calls queued or running on this connection."""

    @classmethod
    async def check_out(cls, engine: AsyncEngine) -> _Lane:
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
            await lane.run(configure_connection)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await held.close()
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
        with anyio.CancelScope(shield=True):
            await self._held.close()


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


class _Writer:
    """The writer connection and the queue of writes waiting for it (group commit)."""

    def __init__(self, lane: _Lane) -> None:
        self.lane = lane
        self._waiting: list[_Pending[Any]] = []
        self._turn = anyio.Lock()

    async def run(self, apply: Callable[[sqlite3.Connection], T]) -> T:
        """``apply(connection)`` inside a write transaction, committed when this returns.

        Shielded from cancellation once queued: a write that the caller stopped waiting for
        could still commit, and the caller must never believe otherwise.
        """
        pending: _Pending[T] = _Pending(apply)
        with anyio.CancelScope(shield=True):
            self._waiting.append(pending)
            async with self._turn:
                if not pending.done:
                    batch, self._waiting = self._waiting, []
                    try:
                        await self.lane.run(partial(_commit_batch, batch))
                    except Exception as error:
                        for each in batch:
                            if not each.done:
                                each.error, each.done = error, True
        return pending.result()


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


def _read(function: Callable[[sqlite3.Connection], T], connection: sqlite3.Connection) -> T:
    """``function`` in one read transaction: its statements see one snapshot."""
    connection.execute("BEGIN")
    try:
        return function(connection)
    finally:
        connection.execute("COMMIT")


# -- statements -----------------------------------------------------------------------------


class _Statements:
    """The store's statements as SQL text for sqlite3, compiled once from Core constructs."""

    def __init__(self, tables: SqlTables) -> None:
        self._dialect = SQLiteDialect_pysqlite(paramstyle="named")
        sessions, items, agents = tables.sessions, tables.history_items, tables.agents
        leases = tables.session_leases
        self._sessions = sessions
        header = [sessions.c[name] for name in HEADER_COLUMNS]
        key: sa.BindParameter[str] = sa.bindparam("key")
        self.header_columns = tuple(column.name for column in header)

        self.create = self._sql(
            sqlite.insert(sessions).on_conflict_do_nothing(index_elements=[sessions.c.id])
        )
        self.update = self._sql(
            sa.update(sessions)
            .where(
                sessions.c.id == key,
                sessions.c.revision == sa.bindparam("expected"),
                sessions.c.agent_id == sa.bindparam("stored_agent"),
            )
            .values(
                {
                    **{column.name: sa.bindparam(column.name) for column in header[1:]},
                    "item_count": sessions.c.item_count + sa.bindparam("added"),
                }
            )
            .returning(sessions.c.item_count)
        )
        self.stored = self._sql(
            sa.select(sessions.c.revision, sessions.c.agent_id).where(sessions.c.id == key)
        )
        self.add_item = self._sql(sa.insert(items))
        self.header = self._sql(sa.select(*header).where(sessions.c.id == key))
        self.revision = self._sql(sa.select(sessions.c.revision).where(sessions.c.id == key))
        self.history = self._sql(
            sa.select(items.c.seq, items.c.item)
            .where(items.c.session_id == key)
            .order_by(items.c.seq)
        )
        self.tail = (
            self._sql(
                sa.select(items.c.seq, items.c.item)
                .where(items.c.session_id == key)
                .order_by(items.c.seq.desc())
            )
            + " LIMIT :last"
        )
        self.delete_session = self._sql(sa.delete(sessions).where(sessions.c.id == key))
        self.delete_items = self._sql(sa.delete(items).where(items.c.session_id == key))
        self.count = self._sql(sa.select(sa.func.count()).select_from(sessions))
        self.scan_ids = (
            self._sql(
                sa.select(sessions.c.id, sessions.c.item_count)
                .where(sessions.c.id > sa.bindparam("after"))
                .order_by(sessions.c.id)
            )
            + " LIMIT :batch"
        )

        upsert = sqlite.insert(agents)
        self.save_agent = self._sql(
            upsert.on_conflict_do_update(
                index_elements=[agents.c.id],
                set_={"spec": upsert.excluded.spec, "created_at": upsert.excluded.created_at},
            )
        )
        self.agent = self._sql(sa.select(agents.c.spec).where(agents.c.id == key))
        self.agents = self._sql(
            sa.select(agents.c.id, agents.c.spec).order_by(agents.c.created_at, agents.c.id)
        )
        self.delete_agent = self._sql(sa.delete(agents).where(agents.c.id == key))

        take = sqlite.insert(leases).values(
            session_id=key,
            token=sa.bindparam("token"),
            expires_at=db_now_ms() + sa.bindparam("ttl_ms"),
        )
        self.take_lease = self._sql(
            take.on_conflict_do_update(
                index_elements=[leases.c.session_id],
                set_={"token": take.excluded.token, "expires_at": take.excluded.expires_at},
                where=leases.c.expires_at < db_now_ms(),
            ).returning(leases.c.token)
        )
        self.renew_lease = self._sql(
            sa.update(leases)
            .where(leases.c.session_id == key, leases.c.token == sa.bindparam("token"))
            .values(expires_at=db_now_ms() + sa.bindparam("ttl_ms"))
        )
        self.give_back_lease = self._sql(
            sa.delete(leases).where(
                leases.c.session_id == key, leases.c.token == sa.bindparam("token")
            )
        )
        self._listings: dict[tuple[bool, bool, bool, bool], str] = {}

    def listing(self, *, agent: bool, user: bool, status: bool, after: bool) -> str:
        """The listing query for a combination of filters (``:agent_id``, ``:user_id``,
        ``:status``), below a cursor (``:at``, ``:after_id``) or not, ``:limit`` rows."""
        shape = (agent, user, status, after)
        found = self._listings.get(shape)
        if found is None:
            query = listing_select(
                self._sessions, agent=agent, user=user, status=status, after=after, sqlite=True
            )
            found = self._listings[shape] = self._sql(query) + " LIMIT :limit"
        return found

    def _sql(self, statement: sa.ClauseElement) -> str:
        return str(statement.compile(dialect=self._dialect))


# -- the backend ----------------------------------------------------------------------------


@dataclass
class SqliteBackend:
    """The session and agent calls of ``SqlStore`` on SQLite (see the module docstring).

    Args:
        tables: The store's tables.
        errors: Maps failures to ``StorageError``.
        readers: Reader connections to hold (none for an in-memory database).
        prefix: The table prefix, which keeps the leases of stores in one database apart.
        file_leases: Use lock-file leases (else lease rows, on platforms without them).
    """

    tables: SqlTables
    errors: ErrorMapper
    readers: int
    prefix: str
    file_leases: bool
    _sql: _Statements = field(init=False)
    _rows: RowReader = field(init=False)
    _writer: _Writer | None = field(init=False, default=None)
    _readers: list[_Lane] = field(init=False, default_factory=list)
    _leases: FileLeases | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._sql = _Statements(self.tables)
        self._rows = RowReader(self.tables)

    async def open(self, engine: AsyncEngine, *, memory: bool) -> None:
        """Check out the connections and open the lock file."""
        with self.errors.mapped("opening its connections", connecting=True):
            writer = _Writer(await _Lane.check_out(engine))
            self._writer = writer
            for _ in range(0 if memory else self.readers):
                self._readers.append(await _Lane.check_out(engine))
            path = await writer.lane.run(_database_file)
            if self.file_leases or not path:
                lock_path = f"{path}-leases" if path else None
                self._leases = FileLeases(lock_path, self.prefix, self.errors)
                await self._leases.open()

    async def close(self) -> None:
        """Give the connections back to the engine's pool and close the lock file."""
        lanes = [self._writer.lane] if self._writer is not None else []
        lanes += self._readers
        self._writer, self._readers = None, []
        leases, self._leases = self._leases, None
        if leases is not None:
            leases.close()
        with self.errors.mapped("closing"):
            for lane in lanes:
                await lane.close()

    # -- agents -----------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        values = {"id": spec.id, "spec": dump_json(spec.to_wire()), "created_at": spec.created_at}
        await self._write(
            f"saving agent {spec.id}", partial(_execute, self._sql.save_agent, values)
        )

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        row = await self._read_one(
            f"reading agent {agent_id}", partial(_one, self._sql.agent, {"key": agent_id})
        )
        return None if row is None else self._rows.agent(agent_id, row[0])

    async def list_agents(self) -> list[AgentSpec]:
        rows = await self._read_one("listing agents", partial(_all, self._sql.agents, {}))
        return [self._rows.agent(agent_id, raw) for agent_id, raw in rows]

    async def delete_agent(self, agent_id: str) -> bool:
        deleted = await self._write(
            f"deleting agent {agent_id}",
            partial(_rowcount, self._sql.delete_agent, {"key": agent_id}),
        )
        return deleted == 1

    # -- sessions ---------------------------------------------------------------------------

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        after = ""
        while True:
            batch = await self._read_many("scanning sessions", partial(_scan, self._sql, after))
            if not batch:
                return
            for header, items in batch:
                yield self._rows.session(self._header_row(header), items)
            after = batch[-1][0][0]

    async def count_sessions(self) -> int:
        [(count,)] = await self._read_one("counting sessions", partial(_all, self._sql.count, {}))
        return int(count)

    async def list_sessions(
        self,
        *,
        agent_id: str | None,
        user_id: str | None,
        status: SessionStatus | None,
        after: Position | None,
        limit: int,
    ) -> SessionPage:
        sql = self._sql.listing(
            agent=agent_id is not None,
            user=user_id is not None,
            status=status is not None,
            after=after is not None,
        )
        params: dict[str, Any] = {"limit": limit + 1}
        if agent_id is not None:
            params["agent_id"] = agent_id
        if user_id is not None:
            params["user_id"] = user_id
        if status is not None:
            params["status"] = status
        if after is not None:
            params["at"], params["after_id"] = after
        rows = await self._read_one("listing sessions", partial(_all, sql, params))
        return page_of_rows([self._header_row(row) for row in rows], limit, self._rows)

    async def get_session(self, session_id: str, *, last: int | None) -> ChatSession | None:
        found = await self._read_many(
            f"reading session {session_id}", partial(_session, self._sql, session_id, last)
        )
        if found is None:
            return None
        header, items = found
        outcome = self._rows.session(self._header_row(header), items)
        if isinstance(outcome, CorruptRecord):
            raise outcome.error()
        return outcome

    async def get_revision(self, session_id: str) -> int | None:
        row = await self._read_one(
            f"reading session {session_id}", partial(_one, self._sql.revision, {"key": session_id})
        )
        return None if row is None else int(row[0])

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
        lease: Lease | None,
    ) -> None:
        values = header_values(header)
        for column in _JSON_COLUMNS:
            values[column] = dump_json(values[column])
        items: list[tuple[str, str]] = [(item.type, item_text(item)) for item in new_items]
        # A lease row (where file locks are missing) goes back in the write's transaction.
        releasing = (
            self._leases is None
            and lease is not None
            and lease.session_id == header.id
            and bool(lease.token)
            and not lease.released
        )
        token = lease.token if releasing and lease is not None else None
        await self._write(
            f"writing session {header.id}",
            partial(_write_session, self._sql, header, values, items, expected_revision, token),
        )
        if releasing and lease is not None:
            lease.released = True

    async def delete_session(self, session_id: str) -> bool:
        deleted = await self._write(
            f"deleting session {session_id}", partial(_delete_session, self._sql, session_id)
        )
        return deleted == 1

    def lease(
        self, session_id: str, *, ttl: float, timeout: float
    ) -> AbstractAsyncContextManager[Lease]:
        if self._leases is not None:
            return self._leases.hold(session_id, timeout=timeout)
        ops = RowLeaseOps(
            take=self._take_lease,
            renew=self._renew_lease,
            give_back=self._give_back_lease,
            failures=(StorageError, RuntimeError),
        )
        return hold_row_lease(ops, session_id, ttl=ttl, timeout=timeout)

    async def _take_lease(self, session_id: str, token: str, ttl_ms: int) -> Granted:
        params = {"key": session_id, "token": token, "ttl_ms": ttl_ms}
        row = await self._write(
            f"taking the lease of {session_id}", partial(_one, self._sql.take_lease, params)
        )
        return Granted(granted=row is not None and row[0] == token)

    async def _renew_lease(self, session_id: str, token: str, ttl_ms: int) -> bool:
        params = {"key": session_id, "token": token, "ttl_ms": ttl_ms}
        renewed = await self._write(
            "renewing a lease", partial(_rowcount, self._sql.renew_lease, params)
        )
        return renewed == 1

    async def _give_back_lease(self, session_id: str, token: str) -> None:
        params = {"key": session_id, "token": token}
        await self._write(
            "releasing a lease", partial(_rowcount, self._sql.give_back_lease, params)
        )

    # -- connections ------------------------------------------------------------------------

    async def _write(self, doing: str, apply: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._require_writer()
        with self.errors.mapped(doing):
            return await writer.run(apply)

    async def _read_one(self, doing: str, function: Callable[[sqlite3.Connection], T]) -> T:
        """A read of one statement (it needs no transaction of its own)."""
        with self.errors.mapped(doing):
            return await self._reader().run(function)

    async def _read_many(self, doing: str, function: Callable[[sqlite3.Connection], T]) -> T:
        """A read of several statements, in one snapshot."""
        with self.errors.mapped(doing):
            return await self._reader().run(partial(_read, function))

    def _reader(self) -> _Lane:
        if self._readers:
            return min(self._readers, key=lambda lane: lane.busy)
        return self._require_writer().lane

    def _require_writer(self) -> _Writer:
        if self._writer is None:
            raise RuntimeError("SqlStore is closed")
        return self._writer

    def _header_row(self, row: Sequence[Any]) -> dict[str, Any]:
        values = dict(zip(self._sql.header_columns, row, strict=True))
        for column in _JSON_COLUMNS:
            if isinstance(values[column], str):
                values[column] = load_json(values[column])
        return values


# -- what runs in the connection's thread ---------------------------------------------------


def _execute(sql: str, params: Mapping[str, Any], connection: sqlite3.Connection) -> None:
    connection.execute(sql, params)


def _rowcount(sql: str, params: Mapping[str, Any], connection: sqlite3.Connection) -> int:
    return connection.execute(sql, params).rowcount


def _one(sql: str, params: Mapping[str, Any], connection: sqlite3.Connection) -> Any:
    # fetchall, not fetchone: it runs the statement to its end (RETURNING included).
    rows = connection.execute(sql, params).fetchall()
    return rows[0] if rows else None


def _all(sql: str, params: Mapping[str, Any], connection: sqlite3.Connection) -> list[Any]:
    return connection.execute(sql, params).fetchall()


def _database_file(connection: sqlite3.Connection) -> str:
    for _, name, path in connection.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return str(path or "")
    return ""


def _session(
    sql: _Statements, session_id: str, last: int | None, connection: sqlite3.Connection
) -> tuple[Any, list[tuple[int, str]]] | None:
    header = connection.execute(sql.header, {"key": session_id}).fetchone()
    if header is None:
        return None
    if last is None:
        items = connection.execute(sql.history, {"key": session_id}).fetchall()
    elif last > 0:
        items = connection.execute(sql.tail, {"key": session_id, "last": last}).fetchall()
        items.reverse()
    else:
        items = []
    return header, items


def _scan(
    sql: _Statements, after: str, connection: sqlite3.Connection
) -> list[tuple[Any, list[tuple[int, str]]]]:
    found: list[tuple[Any, list[tuple[int, str]]]] = []
    budget = _SCAN_ITEMS
    for session_id, item_count in connection.execute(
        sql.scan_ids, {"after": after, "batch": _SCAN_SESSIONS}
    ).fetchall():
        if found and item_count > budget:
            break
        budget -= item_count
        session = _session(sql, session_id, None, connection)
        if session is not None:
            found.append(session)
    return found


def _write_session(
    sql: _Statements,
    header: SessionHeader,
    values: dict[str, Any],
    items: list[tuple[str, str]],
    expected_revision: int | None,
    lease_token: str | None,
    connection: sqlite3.Connection,
) -> None:
    session_id = header.id
    if expected_revision is None:
        created = connection.execute(sql.create, {**values, "item_count": len(items)})
        if created.rowcount != 1:
            raise session_exists(session_id)
        first = 0
    else:
        params = {
            **values,
            "key": session_id,
            "expected": expected_revision,
            "stored_agent": header.agent_id,
            "added": len(items),
        }
        updated = connection.execute(sql.update, params).fetchall()
        if not updated:
            _refuse(sql, header, expected_revision, connection)
        first = updated[0][0] - len(items)
    if items:
        connection.executemany(
            sql.add_item,
            (
                {"session_id": session_id, "seq": first + offset, "type": kind, "item": text}
                for offset, (kind, text) in enumerate(items)
            ),
        )
    if lease_token is not None:
        connection.execute(sql.give_back_lease, {"key": session_id, "token": lease_token})


def _refuse(
    sql: _Statements,
    header: SessionHeader,
    expected_revision: int,
    connection: sqlite3.Connection,
) -> None:
    """Raise why an update matched no row."""
    stored = connection.execute(sql.stored, {"key": header.id}).fetchone()
    if stored is None:
        raise session_missing(header.id)
    revision, agent_id = stored
    if revision != expected_revision:
        raise stale_revision(header.id, int(revision), expected_revision)
    check_same_agent(header, str(agent_id))
    raise AssertionError("an update matched no row, yet the row matches")  # pragma: no cover


def _delete_session(sql: _Statements, session_id: str, connection: sqlite3.Connection) -> int:
    # The foreign key cascades; this also covers connections of a caller's engine that were
    # opened before the store switched foreign keys on.
    deleted = connection.execute(sql.delete_session, {"key": session_id}).rowcount
    connection.execute(sql.delete_items, {"key": session_id})
    return deleted
