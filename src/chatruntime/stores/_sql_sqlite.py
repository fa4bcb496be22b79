"""``SqlStore`` on SQLite: each call is one round trip to a connection's thread.

Each call runs as one function in a connection's thread (see ``_sql_sqlite_lanes``): a read
with all its statements, a batch of writes with its transaction. Statements are SQLAlchemy
Core constructs compiled once to SQL text.

Connections: the store checks out of the engine's pool, for as long as it is open, one writer
connection and ``pool_size`` reader connections. In WAL mode readers never wait for the
writer; each read goes to the least busy reader. Writes queue in this process and commit in
batches, one fsync a batch. So this process's connections never meet SQLite's ``BUSY``;
another process's writer is waited for up to the busy timeout. Every write transaction
begins ``IMMEDIATE``: it holds the database's write lock from its first statement, so what a
write counts (the live sessions a creation's limits allow) cannot change before it commits,
in any process.

Durability: ``synchronous=FULL`` in WAL mode, as the Agents SDK's ``SQLiteSession`` runs:
the WAL is synced at every commit, so a write that returned survives a power cut.

An in-memory database is one connection that serves reads and writes alike. A database open
read-only (see ``_sql_readonly``) has reader connections only.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ..models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    HistoryItem,
    SessionHeader,
    SessionPage,
    SessionStatus,
    StorageError,
)
from ._errors import (
    check_keep,
    check_same_agent,
    limit_exceeded,
    session_exists,
    session_missing,
    stale_revision,
)
from ._lease import TokenLeases
from ._paging import Position
from ._protocol import CorruptRecord, CreateLimits, Lease
from ._sql_errors import ErrorMapper
from ._sql_leases import FileLeases, Granted, RowLeaseOps, row_leases
from ._sql_lifecycle import (
    CheckpointStatements,
    count_select,
    drop_items_from,
    drop_stale_leases,
    expired_select,
)
from ._sql_listing import listing_select, page_of_rows
from ._sql_readonly import refused, refused_lease
from ._sql_rows import (
    HEADER_COLUMNS,
    JSON_HEADER_COLUMNS,
    RowReader,
    checkpoint_values,
    header_values,
    item_text,
)
from ._sql_schema import SqlTables, db_now_ms, dump_json, load_json
from ._sql_sqlite_lanes import Lane, Writer, configure_read_only, in_snapshot

__all__ = ["SqliteBackend"]

logger = logging.getLogger("chatruntime.stores.sql")

T = TypeVar("T")

_SCAN_SESSIONS: Final = 100
"""Sessions a scan reads per round trip at most..."""
_SCAN_ITEMS: Final = 10_000
"""...and items, unless one session alone has more."""


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
        update = sa.update(sessions).where(
            sessions.c.id == key,
            sessions.c.revision == sa.bindparam("expected"),
            sessions.c.agent_id == sa.bindparam("stored_agent"),
        )
        changes: dict[str, Any] = {column.name: sa.bindparam(column.name) for column in header[1:]}
        self.update = self._sql(
            update.values(
                {**changes, "item_count": sessions.c.item_count + sa.bindparam("added")}
            ).returning(sessions.c.item_count)
        )
        # A rewind: the first :keep items stay (if there are that many), then the new ones.
        self.update_keeping = self._sql(
            update.where(sessions.c.item_count >= sa.bindparam("keep"))
            .values({**changes, "item_count": sa.bindparam("keep") + sa.bindparam("added")})
            .returning(sessions.c.item_count)
        )
        self.drop_items_from = self._sql(drop_items_from(tables))
        self.stored = self._sql(
            sa.select(sessions.c.revision, sessions.c.agent_id, sessions.c.item_count).where(
                sessions.c.id == key
            )
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
        self.counts = {
            (user, live): self._sql(count_select(sessions, user=user, live=live))
            for user in (False, True)
            for live in (False, True)
        }
        self.expired = self._sql(expired_select(sessions)) + " LIMIT :limit"
        checkpoints = CheckpointStatements(tables, sqlite.insert)
        self.save_checkpoint = self._sql(checkpoints.save)
        self.checkpoint = self._sql(checkpoints.get)
        self.checkpoints = self._sql(checkpoints.list)
        self.delete_checkpoint = self._sql(checkpoints.delete)
        self.clear_checkpoints = self._sql(checkpoints.clear)
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
        self.drop_stale_leases = self._sql(drop_stale_leases(tables))
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
        read_only: Why the database is open read-only (see ``_sql_readonly``), or ``None``:
            then the backend holds reader connections only, no lock file and no lease rows,
            and refuses every write and lease with ``StorageError``.
    """

    tables: SqlTables
    errors: ErrorMapper
    readers: int
    prefix: str
    file_leases: bool
    read_only: str | None = None
    _sql: _Statements = field(init=False)
    _rows: RowReader = field(init=False)
    _writer: Writer | None = field(init=False, default=None)
    _readers: list[Lane] = field(init=False, default_factory=list)
    _leases: FileLeases | None = field(init=False, default=None)
    _row_leases: TokenLeases | None = field(init=False, default=None)
    """Where file locks are missing: one for the store's life, so that it remembers lease
    rows it could not give back and gives them back later."""

    def __post_init__(self) -> None:
        self._sql = _Statements(self.tables)
        self._rows = RowReader(self.tables)

    async def open(self, engine: AsyncEngine, *, memory: bool) -> None:
        """Check out the connections and open the lock file."""
        if self.read_only is not None:
            with self.errors.mapped("opening its connections", connecting=True):
                for _ in range(max(self.readers, 1)):
                    self._readers.append(await Lane.check_out(engine, configure_read_only))
            return
        with self.errors.mapped("opening its connections", connecting=True):
            writer = Writer(await Lane.check_out(engine))
            self._writer = writer
            for _ in range(0 if memory else self.readers):
                self._readers.append(await Lane.check_out(engine))
            path = await writer.lane.run(_database_file)
            if self.file_leases or not path:
                lock_path = f"{path}-leases" if path else None
                self._leases = FileLeases(lock_path, self.prefix, self.errors)
                await self._leases.open()
            else:
                self._row_leases = row_leases(
                    RowLeaseOps(
                        take=self._take_lease,
                        renew=self._renew_lease,
                        give_back=self._give_back_lease,
                        failures=(StorageError, RuntimeError),
                    )
                )

    async def close(self) -> None:
        """Give back the lease rows still to give back (while the writer is there), the
        connections to the engine's pool, and close the lock file."""
        row_leases, self._row_leases = self._row_leases, None
        if row_leases is not None:
            await row_leases.close()
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

    async def count_sessions(self, *, user_id: str | None, live_at: int | None) -> int:
        sql = self._sql.counts[(user_id is not None, live_at is not None)]
        params = {"user_id": user_id, "now": live_at}
        [(count,)] = await self._read_one("counting sessions", partial(_all, sql, params))
        return int(count)

    async def expired_sessions(self, now: int, *, limit: int) -> list[str]:
        params = {"now": now, "limit": limit}
        rows = await self._read_one(
            "finding expired sessions", partial(_all, self._sql.expired, params)
        )
        return [str(session_id) for (session_id,) in rows]

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
        keep: int | None,
        limits: CreateLimits | None,
    ) -> None:
        values = header_values(header)
        for column in JSON_HEADER_COLUMNS:
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
        write = _SessionWrite(header, values, items, expected_revision, keep, limits, token)
        await self._write(f"writing session {header.id}", partial(write.apply, self._sql))
        if releasing and lease is not None:
            lease.released = True

    async def delete_session(self, session_id: str) -> bool:
        deleted = await self._write(
            f"deleting session {session_id}", partial(_delete_session, self._sql, session_id)
        )
        return deleted == 1

    # -- checkpoints ------------------------------------------------------------------------

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        values = checkpoint_values(checkpoint)
        values["body"] = dump_json(values["body"])
        await self._write(
            f"saving checkpoint {checkpoint.id} of session {checkpoint.session_id}",
            partial(_save_checkpoint, self._sql, values),
        )

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        params = {"key": session_id, "checkpoint_id": checkpoint_id}
        row = await self._read_one(
            f"reading checkpoint {checkpoint_id} of session {session_id}",
            partial(_one, self._sql.checkpoint, params),
        )
        return None if row is None else self._rows.checkpoint(session_id, checkpoint_id, row[0])

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        rows = await self._read_one(
            f"listing the checkpoints of session {session_id}",
            partial(_all, self._sql.checkpoints, {"key": session_id}),
        )
        return [self._rows.checkpoint(session_id, str(found), body) for found, body in rows]

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        params = {"key": session_id, "checkpoint_id": checkpoint_id}
        deleted = await self._write(
            f"deleting checkpoint {checkpoint_id} of session {session_id}",
            partial(_rowcount, self._sql.delete_checkpoint, params),
        )
        return deleted == 1

    async def clear_checkpoints(self, session_id: str) -> int:
        return await self._write(
            f"deleting the checkpoints of session {session_id}",
            partial(_rowcount, self._sql.clear_checkpoints, {"key": session_id}),
        )

    # -- leases -----------------------------------------------------------------------------

    def lease(
        self, session_id: str, *, ttl: float, timeout: float
    ) -> AbstractAsyncContextManager[Lease]:
        if self.read_only is not None:
            doing = f"taking the lease of session {session_id}"
            return refused_lease(refused(self.errors.where, self.read_only, doing))
        if self._leases is not None:
            return self._leases.hold(session_id, timeout=timeout)
        if self._row_leases is None:
            raise RuntimeError("SqlStore is closed")
        return self._row_leases.hold(session_id, ttl=ttl, timeout=timeout)

    async def drop_stale_leases(self, now: int) -> int:
        # Rows only: a file lock ends with its holder's process, so none is ever stale.
        return await self._write(
            "dropping stale leases", partial(_rowcount, self._sql.drop_stale_leases, {"now": now})
        )

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
        if self.read_only is not None:
            raise refused(self.errors.where, self.read_only, doing)
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
            return await self._reader().run(partial(in_snapshot, function))

    def _reader(self) -> Lane:
        if self._readers:
            return min(self._readers, key=lambda lane: lane.busy)
        if self.read_only is not None:
            raise RuntimeError("SqlStore is closed")
        return self._require_writer().lane

    def _require_writer(self) -> Writer:
        if self._writer is None:
            raise RuntimeError("SqlStore is closed")
        return self._writer

    def _header_row(self, row: Sequence[Any]) -> dict[str, Any]:
        values = dict(zip(self._sql.header_columns, row, strict=True))
        for column in JSON_HEADER_COLUMNS:
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


@dataclass(frozen=True)
class _SessionWrite:
    """One ``write_session``, ready to apply in the writer's transaction."""

    header: SessionHeader
    values: dict[str, Any]
    items: list[tuple[str, str]]
    """``(type, JSON text)`` of each new item."""
    expected_revision: int | None
    keep: int | None
    limits: CreateLimits | None
    lease_token: str | None

    def apply(self, sql: _Statements, connection: sqlite3.Connection) -> None:
        header, items = self.header, self.items
        session_id = header.id
        if self.expected_revision is None:
            if connection.execute(sql.stored, {"key": session_id}).fetchone() is not None:
                raise session_exists(session_id)
            if self.limits is not None:
                # Inside the write transaction, which began IMMEDIATE: no process can create
                # a session between this count and the insert.
                _check_limits(sql, self.limits, header, connection)
            connection.execute(sql.create, {**self.values, "item_count": len(items)})
            first = 0
        else:
            params = {
                **self.values,
                "key": session_id,
                "expected": self.expected_revision,
                "stored_agent": header.agent_id,
                "added": len(items),
            }
            if self.keep is None:
                updated = connection.execute(sql.update, params).fetchall()
            else:
                params["keep"] = self.keep
                updated = connection.execute(sql.update_keeping, params).fetchall()
            if not updated:
                _refuse(sql, header, self.expected_revision, self.keep, connection)
            first = updated[0][0] - len(items)
            if self.keep is not None:
                connection.execute(sql.drop_items_from, {"key": session_id, "keep": self.keep})
        if items:
            connection.executemany(
                sql.add_item,
                (
                    {"session_id": session_id, "seq": first + offset, "type": kind, "item": text}
                    for offset, (kind, text) in enumerate(items)
                ),
            )
        if self.lease_token is not None:
            connection.execute(sql.give_back_lease, {"key": session_id, "token": self.lease_token})


def _check_limits(
    sql: _Statements, limits: CreateLimits, header: SessionHeader, connection: sqlite3.Connection
) -> None:
    now = {"now": limits.now}
    [(total,)] = connection.execute(sql.counts[(False, True)], now).fetchall()
    of_user = 0
    if header.user_id is not None:
        [(of_user,)] = connection.execute(
            sql.counts[(True, True)], {**now, "user_id": header.user_id}
        ).fetchall()
    limit_exceeded(limits, header, int(total), int(of_user))


def _refuse(
    sql: _Statements,
    header: SessionHeader,
    expected_revision: int,
    keep: int | None,
    connection: sqlite3.Connection,
) -> None:
    """Raise why an update matched no row."""
    stored = connection.execute(sql.stored, {"key": header.id}).fetchone()
    if stored is None:
        raise session_missing(header.id)
    revision, agent_id, item_count = stored
    if revision != expected_revision:
        raise stale_revision(header.id, int(revision), expected_revision)
    check_same_agent(header, str(agent_id))
    check_keep(header.id, keep, int(item_count))
    raise AssertionError("an update matched no row, yet the row matches")  # pragma: no cover


def _delete_session(sql: _Statements, session_id: str, connection: sqlite3.Connection) -> int:
    # The foreign keys cascade; this also covers connections of a caller's engine that were
    # opened before the store switched foreign keys on.
    deleted = connection.execute(sql.delete_session, {"key": session_id}).rowcount
    connection.execute(sql.delete_items, {"key": session_id})
    connection.execute(sql.clear_checkpoints, {"key": session_id})
    return deleted


def _save_checkpoint(
    sql: _Statements, values: dict[str, Any], connection: sqlite3.Connection
) -> None:
    try:
        connection.execute(sql.save_checkpoint, values)
    except sqlite3.IntegrityError as error:
        if "FOREIGN KEY" not in str(error):
            raise
        raise session_missing(values["session_id"]) from error
