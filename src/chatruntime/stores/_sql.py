"""``SqlStore``: sessions and agents in SQLite or PostgreSQL, through SQLAlchemy 2 async Core.

The same code serves SQLite (``aiosqlite``) and PostgreSQL (``asyncpg``). The tables and their
migrations are in ``_sql_schema``. A turn is one transaction: a conditional ``UPDATE`` of the
session's row (``WHERE revision = expected``) and an ``INSERT`` of the turn's item rows after the
last one, so a turn costs the same however long the conversation is.

Leases are rows of ``{prefix}session_leases`` (session id, random token, expiry). A process
takes one with an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at < now``, renews it in
the background while its turn runs, and deletes it by token. Expiry is computed and compared
with the database server's clock (``db_now_ms``), never a worker's own, so workers on hosts
with skewed clocks still agree on who holds a session.

SQLite specifics: foreign keys are switched on, the journal is put in WAL mode (readers do
not wait for the writer), and write transactions start with ``BEGIN IMMEDIATE`` so that
concurrent writers queue on SQLite's busy timeout instead of failing on a lock upgrade. An
in-memory database (``sqlite+aiosqlite://``) lives in one connection that the store shares
between its calls one at a time.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext
from functools import partial
from typing import Any, Final

import anyio
import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import event
from sqlalchemy import exc as sa_errors
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ..models import (
    AgentSpec,
    ChatRuntimeError,
    ChatSession,
    ConflictError,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    SessionContext,
    SessionHeader,
    StorageError,
)
from ._lease import TokenLease
from ._protocol import DEFAULT_LEASE_TIMEOUT, DEFAULT_LEASE_TTL, CorruptRecord, LoadReport
from ._records import describe_invalid, parse_agent
from ._sql_schema import (
    DEFAULT_TABLE_PREFIX,
    SqlTables,
    UndecodableJson,
    db_now_ms,
    define_tables,
    dump_json,
    migrate,
)

__all__ = ["SqlStore"]

logger = logging.getLogger("chatruntime.stores.sql")

_SUPPORTED_DRIVERS: Final = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_URL_EXAMPLES: Final = (
    "sqlite+aiosqlite:///path/to/file.db, sqlite+aiosqlite:// (in memory) or "
    "postgresql+asyncpg://user:password@host:5432/database"
)
_SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
"""How long a SQLite statement waits for another process's write transaction to end."""
_INITIALIZE_LOCK_TIMEOUT_MS: Final = 60_000
"""How long PostgreSQL ``initialize()`` waits for another process that is migrating."""
_BEGIN_OPTION: Final = "chatruntime_sqlite_begin"
_RELEASE_TIMEOUT: Final = 5.0
_HEADER_FIELDS: Final = frozenset(SessionHeader.model_fields)
_CONTEXT_FIELDS: Final = frozenset(SessionContext.model_fields)
_ITEM_ADAPTER: TypeAdapter[HistoryItem] = TypeAdapter(HistoryItem)


class SqlStore:
    """Keeps sessions and agents in SQLite or PostgreSQL, for one or many worker processes.

    Give it a database URL, or an ``AsyncEngine`` you configured yourself. ``initialize()``
    connects, creates the tables or upgrades them to this version's schema, and refuses a
    database written by a newer chatruntime. The store disposes only an engine it created.

    Leases are rows whose expiry the database server's clock sets and checks, so workers on
    several hosts need not agree on the time. Statements have no time limit of their own;
    give PostgreSQL one with ``engine_kwargs={"connect_args": {"command_timeout": 30}}``.

    Example:
        >>> store = SqlStore("postgresql+asyncpg://app:secret@db.internal:5432/chat")
        >>> await store.initialize()

    Args:
        url: ``sqlite+aiosqlite:///relative.db``, ``sqlite+aiosqlite:////absolute/path.db``,
            ``sqlite+aiosqlite://`` (in memory, gone when the store closes) or
            ``postgresql+asyncpg://user:password@host:port/database``.
        engine: An existing ``AsyncEngine`` (aiosqlite or asyncpg) to use instead of a URL.
            For SQLite the store adds its connection listeners (foreign keys, WAL, explicit
            ``BEGIN``), so give it an engine that has not opened connections yet.
        table_prefix: Starts the name of every table and index, to keep several stores apart
            in one database or schema.
        connect_timeout: Seconds to wait for a PostgreSQL connection, including its login.
        engine_kwargs: Passed on to ``create_async_engine`` (pool size, ``connect_args``...);
            what you set there wins over the store's defaults.

    Raises:
        InvalidInputError: Not exactly one of ``url`` and ``engine``, ``engine_kwargs`` with an
            engine, a table prefix unfit for SQL names, or a timeout that is not positive.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: AsyncEngine | None = None,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        connect_timeout: float = 5.0,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if (url is None) == (engine is None):
            raise InvalidInputError(
                "SqlStore needs exactly one of url and engine, got "
                f"{'both' if url is not None else 'neither'}",
                field="url",
            )
        if engine is not None and engine_kwargs:
            raise InvalidInputError(
                "engine_kwargs configure an engine the store creates; "
                "configure the engine you pass in yourself",
                field="engine_kwargs",
            )
        if url is not None and not isinstance(url, (str, URL)):
            raise InvalidInputError(f"url must be a string, got {type(url).__name__}", field="url")
        if isinstance(connect_timeout, bool) or not (
            isinstance(connect_timeout, (int, float)) and connect_timeout > 0
        ):
            raise InvalidInputError(
                f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}",
                field="connect_timeout",
            )
        self._url = url
        self._tables: SqlTables = define_tables(table_prefix)
        self._prefix = table_prefix
        self._connect_timeout = float(connect_timeout)
        self._engine_kwargs = dict(engine_kwargs or {})
        self._engine: AsyncEngine | None = engine
        self._owns_engine = engine is None
        self._where = _describe(engine.url) if engine is not None else _describe_unparsed(url)
        self._password = _password(engine.url if engine is not None else url)
        self._ready = False
        self._dialect = ""
        # Engines (one pool) for the three kinds of transaction; see `_adopt`.
        self._write_engine: AsyncEngine | None = None
        self._snapshot_engine: AsyncEngine | None = None
        self._lookup_engine: AsyncEngine | None = None
        self._dbapi_error: type[Exception] | None = None
        # One lock for every call when all share a single connection (in-memory SQLite);
        # one for writes on SQLite files, whose single writer would otherwise be contended
        # for by this process's own connections through the busy timeout.
        self._every_call_lock: anyio.Lock | None = None
        self._write_lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"SqlStore({self._where!r}, table_prefix={self._prefix!r})"

    @property
    def engine(self) -> AsyncEngine | None:
        """The SQLAlchemy engine, once ``initialize()`` has made or adopted one."""
        return self._engine

    @property
    def table_prefix(self) -> str:
        """The prefix of every table and index name of this store."""
        return self._prefix

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect, then create the tables or upgrade them to the current schema; idempotent.

        Concurrent calls from several processes are safe: PostgreSQL serializes them with a
        transaction-level advisory lock, SQLite with ``BEGIN IMMEDIATE``.

        Raises:
            InvalidInputError: The URL is malformed or names an unsupported database or driver.
            StorageError: The database cannot be reached in time, refused the credentials, or
                failed while creating or upgrading the tables.
            StoreVersionError: The database was created by a newer chatruntime.
        """
        engine = self._engine
        if engine is None:
            engine = self._engine = await self._create_engine()
        self._adopt(engine)
        with self._mapped_errors("connecting", connecting=True):
            async with engine.connect():
                pass
        async with self._transaction(
            "creating or upgrading the tables", write=True, initializing=True
        ) as conn:
            if self._dialect == "postgresql":
                await conn.exec_driver_sql(
                    f"SET LOCAL lock_timeout = {_INITIALIZE_LOCK_TIMEOUT_MS}"
                )
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key())))
            found, current = await conn.run_sync(
                migrate, self._tables, self._prefix, where=self._where
            )
        if found != current:
            logger.info(
                "%s: schema version %d created or upgraded from %d", self._where, current, found
            )
        self._ready = True

    async def close(self) -> None:
        """Dispose of the engine if the store created it; an engine passed in stays open."""
        self._ready = False
        if self._engine is not None and self._owns_engine:
            engine, self._engine = self._engine, None
            with self._mapped_errors("closing"):
                await engine.dispose()

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        agents = self._tables.agents
        statement = self._insert(agents).values(
            id=spec.id, spec=spec.to_wire(), created_at=spec.created_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[agents.c.id],
            set_={"spec": statement.excluded.spec, "created_at": statement.excluded.created_at},
        )
        async with self._transaction(f"saving agent {spec.id}", write=True) as conn:
            await conn.execute(statement)

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        agents = self._tables.agents
        async with self._transaction(f"reading agent {agent_id}") as conn:
            raw = (
                await conn.execute(sa.select(agents.c.spec).where(agents.c.id == agent_id))
            ).scalar_one_or_none()
        return None if raw is None else self._parse_agent(agent_id, raw)

    async def list_agents(self) -> list[AgentSpec]:
        agents = self._tables.agents
        async with self._transaction("listing agents") as conn:
            rows = (
                await conn.execute(
                    sa.select(agents.c.id, agents.c.spec).order_by(agents.c.created_at, agents.c.id)
                )
            ).all()
        return [self._parse_agent(agent_id, raw) for agent_id, raw in rows]

    async def delete_agent(self, agent_id: str) -> bool:
        agents = self._tables.agents
        async with self._transaction(f"deleting agent {agent_id}", write=True) as conn:
            deleted = await conn.execute(sa.delete(agents).where(agents.c.id == agent_id))
        return deleted.rowcount == 1

    # -- sessions -------------------------------------------------------------------------

    async def load_sessions(self) -> LoadReport:
        """Every stored session, most recently active first, plus the ones not readable."""
        sessions, items = self._tables.sessions, self._tables.history_items
        async with self._transaction("loading sessions", snapshot=True) as conn:
            header_rows = (
                await conn.execute(
                    sa.select(sessions).order_by(sessions.c.last_activity.desc(), sessions.c.id)
                )
            ).all()
            item_rows = (
                await conn.execute(
                    sa.select(items.c.session_id, items.c.seq, items.c.item).order_by(
                        items.c.session_id, items.c.seq
                    )
                )
            ).all()
        histories: dict[str, list[tuple[int, Any]]] = {}
        for session_id, seq, raw in item_rows:
            histories.setdefault(session_id, []).append((seq, raw))
        report = LoadReport()
        for row in header_rows:
            session_id = row._mapping["id"]
            outcome = self._parse_session(row._mapping, histories.get(session_id, []))
            if isinstance(outcome, CorruptRecord):
                report.corrupt.append(outcome)
            else:
                report.sessions.append(outcome)
        return report

    async def get_session(self, session_id: str) -> ChatSession | None:
        sessions, items = self._tables.sessions, self._tables.history_items
        async with self._transaction(f"reading session {session_id}", snapshot=True) as conn:
            row = (
                await conn.execute(sa.select(sessions).where(sessions.c.id == session_id))
            ).one_or_none()
            if row is None:
                return None
            item_rows = (
                await conn.execute(
                    sa.select(items.c.seq, items.c.item)
                    .where(items.c.session_id == session_id)
                    .order_by(items.c.seq)
                )
            ).all()
        outcome = self._parse_session(row._mapping, [(seq, raw) for seq, raw in item_rows])
        if isinstance(outcome, CorruptRecord):
            raise outcome.error()
        return outcome

    async def get_revision(self, session_id: str) -> int | None:
        sessions = self._tables.sessions
        async with self._transaction(f"reading session {session_id}") as conn:
            revision = (
                await conn.execute(
                    sa.select(sessions.c.revision).where(sessions.c.id == session_id)
                )
            ).scalar_one_or_none()
        return None if revision is None else int(revision)

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
    ) -> None:
        """Update the session's row and insert the new items' rows in one transaction.

        See ``SessionStore.write_session``. The conditional ``UPDATE`` locks the session's
        row until the commit, so concurrent writers of one session take turns and each
        numbers its items after the last committed one.
        """
        sessions, items = self._tables.sessions, self._tables.history_items
        session_id = header.id
        values = _session_row(header)
        changes = {name: value for name, value in values.items() if name != "id"}
        async with self._transaction(f"writing session {session_id}", write=True) as conn:
            if expected_revision is None:
                created = await conn.execute(
                    self._insert(sessions)
                    .values(values)
                    .on_conflict_do_nothing(index_elements=[sessions.c.id])
                    .returning(sessions.c.id)
                )
                if created.scalar_one_or_none() is None:
                    raise ConflictError(
                        f"session {session_id} already exists", session_id=session_id
                    )
                next_seq = 0
            else:
                updated = await conn.execute(
                    sa.update(sessions)
                    .where(
                        sessions.c.id == session_id,
                        sessions.c.revision == expected_revision,
                    )
                    .values(changes)
                )
                if updated.rowcount != 1:
                    stored = (
                        await conn.execute(
                            sa.select(sessions.c.revision).where(sessions.c.id == session_id)
                        )
                    ).scalar_one_or_none()
                    raise _stale(session_id, stored, expected_revision)
                next_seq = (
                    await conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(items.c.seq) + 1, 0)).where(
                            items.c.session_id == session_id
                        )
                    )
                ).scalar_one()
            if new_items:
                await conn.execute(
                    sa.insert(items),
                    [
                        {
                            "session_id": session_id,
                            "seq": next_seq + offset,
                            "type": item.type,
                            "item": item.to_wire(),
                        }
                        for offset, item in enumerate(new_items)
                    ],
                )

    async def delete_session(self, session_id: str) -> bool:
        sessions, items = self._tables.sessions, self._tables.history_items
        async with self._transaction(f"deleting session {session_id}", write=True) as conn:
            # The session row first: deleting it waits for a writer that holds it.
            deleted = await conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))
            # The foreign key cascades; this also covers SQLite connections of a caller's
            # engine that were opened before the store switched foreign keys on.
            await conn.execute(sa.delete(items).where(items.c.session_id == session_id))
        return deleted.rowcount == 1

    # -- leases ---------------------------------------------------------------------------

    def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AbstractAsyncContextManager[None]:
        """Hold the session exclusively across processes; see ``SessionStore.lease``.

        Waits for another holder by polling with growing, jittered pauses. The lease row is
        renewed every ``ttl / 3`` seconds while the body runs. If it is lost anyway (the
        process stalled past ``ttl``), a warning is logged and the body goes on: revisions
        still refuse a write built on stale data.
        """
        return TokenLease(
            session_id=session_id,
            name=f"the lease of session {session_id}",
            take=partial(self._take_lease, session_id),
            renew=partial(self._renew_lease, session_id),
            give_back=partial(self._give_back_lease, session_id),
            logger=logger,
            renew_errors=(Exception,),
            give_back_errors=(StorageError, RuntimeError),
            give_back_timeout=_RELEASE_TIMEOUT,
        ).hold(ttl=ttl, timeout=timeout)

    async def _take_lease(self, session_id: str, token: str, ttl_ms: int) -> bool:
        leases = self._tables.session_leases
        statement = self._insert(leases).values(
            session_id=session_id, token=token, expires_at=db_now_ms() + ttl_ms
        )
        statement = statement.on_conflict_do_update(
            index_elements=[leases.c.session_id],
            set_={"token": statement.excluded.token, "expires_at": statement.excluded.expires_at},
            where=leases.c.expires_at < db_now_ms(),
        ).returning(leases.c.token)
        async with self._transaction(f"taking the lease of {session_id}", write=True) as conn:
            holder = (await conn.execute(statement)).scalar_one_or_none()
        return holder == token

    async def _renew_lease(self, session_id: str, token: str, ttl_ms: int) -> bool:
        leases = self._tables.session_leases
        renew = (
            sa.update(leases)
            .where(leases.c.session_id == session_id, leases.c.token == token)
            .values(expires_at=db_now_ms() + ttl_ms)
        )
        async with self._transaction("renewing a lease", write=True) as conn:
            return (await conn.execute(renew)).rowcount == 1

    async def _give_back_lease(self, session_id: str, token: str) -> None:
        leases = self._tables.session_leases
        async with self._transaction("releasing a lease", write=True) as conn:
            await conn.execute(
                sa.delete(leases).where(leases.c.session_id == session_id, leases.c.token == token)
            )

    # -- engine and transactions ----------------------------------------------------------

    async def _create_engine(self) -> AsyncEngine:
        url = self._parsed_url()
        kwargs: dict[str, Any] = {"json_serializer": dump_json, **self._engine_kwargs}
        connect_args = dict(kwargs.get("connect_args") or {})
        backend = url.get_backend_name()
        if backend == "postgresql":
            connect_args.setdefault("timeout", self._connect_timeout)
            # A pooled connection the server dropped (restart, failover) is replaced
            # instead of failing the next call.
            kwargs.setdefault("pool_pre_ping", True)
        elif _is_memory(url):
            kwargs.setdefault("poolclass", StaticPool)
        elif url.database and not url.query.get("uri"):
            # sqlite3 creates the file but not its folder.
            with self._mapped_errors("creating its folder", connecting=True):
                await anyio.Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = connect_args
        try:
            # In a worker thread: the SQLite dialect resolves the file's absolute path.
            return await anyio.to_thread.run_sync(partial(create_async_engine, url, **kwargs))
        except (sa_errors.ArgumentError, TypeError, ValueError) as error:
            raise InvalidInputError(
                f"cannot configure {self._where}: {self._scrub(str(error))}",
                field="engine_kwargs",
            ) from error

    def _parsed_url(self) -> URL:
        assert self._url is not None
        try:
            url = make_url(self._url)
            port = url.port  # parsed lazily by some versions; a bad one raises here
        except (sa_errors.ArgumentError, ValueError) as error:
            raise InvalidInputError(
                f"malformed database URL: {self._scrub(str(error))}; expected {_URL_EXAMPLES}",
                field="url",
            ) from error
        backend, driver = url.get_backend_name(), url.get_driver_name()
        if _SUPPORTED_DRIVERS.get(backend) != driver:
            hint = (
                f"; use {backend}+{_SUPPORTED_DRIVERS[backend]}://"
                if backend in _SUPPORTED_DRIVERS
                else ""
            )
            raise InvalidInputError(
                f"SqlStore does not support {backend}+{driver}:// URLs{hint}; "
                f"expected {_URL_EXAMPLES}",
                field="url",
            )
        if port is not None and not 0 < port < 65536:
            raise InvalidInputError(
                f"malformed database URL: port {port} is out of range; expected {_URL_EXAMPLES}",
                field="url",
            )
        self._where = _describe(url)
        return url

    def _adopt(self, engine: AsyncEngine) -> None:
        dialect = engine.dialect
        if _SUPPORTED_DRIVERS.get(dialect.name) != dialect.driver:
            raise InvalidInputError(
                f"SqlStore does not support {dialect.name}+{dialect.driver} engines; "
                f"use one for {_URL_EXAMPLES}",
                field="engine",
            )
        self._dialect = dialect.name
        self._where = _describe(engine.url)
        if dialect.name == "sqlite":
            sync_engine = engine.sync_engine
            if not event.contains(sync_engine, "connect", _on_sqlite_connect):
                event.listen(sync_engine, "connect", _on_sqlite_connect)
            if not event.contains(sync_engine, "begin", _on_sqlite_begin):
                event.listen(sync_engine, "begin", _on_sqlite_begin)
            self._write_engine = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            self._snapshot_engine = self._lookup_engine = engine
            if self._every_call_lock is None and self._write_lock is None:
                if isinstance(engine.sync_engine.pool, StaticPool):
                    self._every_call_lock = anyio.Lock()
                else:
                    self._write_lock = anyio.Lock()
        else:
            self._write_engine = engine
            # One snapshot for the header and the items read after it.
            self._snapshot_engine = engine.execution_options(isolation_level="REPEATABLE READ")
            # A single SELECT needs no BEGIN and COMMIT round trips around it.
            self._lookup_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        dbapi_error = getattr(dialect.loaded_dbapi, "Error", None)
        if isinstance(dbapi_error, type) and issubclass(dbapi_error, Exception):
            self._dbapi_error = dbapi_error

    @asynccontextmanager
    async def _transaction(
        self,
        doing: str,
        *,
        write: bool = False,
        snapshot: bool = False,
        initializing: bool = False,
    ) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction: a write, a multi-statement read, or one lookup."""
        if write:
            engine = self._write_engine
        else:
            engine = self._snapshot_engine if snapshot else self._lookup_engine
        if engine is None or not (self._ready or initializing):
            raise RuntimeError(
                "SqlStore is not initialized: await store.initialize() before using it "
                "(and again after close())"
            )
        lock = self._every_call_lock or (self._write_lock if write else None)
        serialized: AbstractAsyncContextManager[Any] = lock if lock is not None else nullcontext()
        with self._mapped_errors(doing):
            async with serialized, engine.begin() as conn:
                yield conn

    def _insert(self, table: sa.Table) -> Any:
        # ON CONFLICT lives in the dialects' own insert constructs; both spell it the same.
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _lock_key(self) -> int:
        digest = hashlib.sha256(f"chatruntime.initialize:{self._prefix}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @contextmanager
    def _mapped_errors(self, doing: str, *, connecting: bool = False) -> Iterator[None]:
        try:
            yield
        except ChatRuntimeError:
            raise
        except Exception as error:
            # Driver errors raised outside SQLAlchemy's wrapping (in connection listeners)
            # are the driver's own classes.
            mapped: tuple[type[Exception], ...] = (sa_errors.SQLAlchemyError, OSError)
            if self._dbapi_error is not None:
                mapped += (self._dbapi_error,)
            if not isinstance(error, mapped):
                raise
            reason = self._scrub(_reason(error, self._connect_timeout if connecting else None))
            if _is_auth_failure(error):
                reason += "; check the user name and password"
            message = (
                f"cannot connect to {self._where}: {reason}"
                if connecting
                else f"{self._where} failed while {doing}: {reason}"
            )
            raise StorageError(message, where=self._where) from error

    def _scrub(self, text: str) -> str:
        # Whole occurrences only: a password "pass" must not turn "password" into "***word".
        if not self._password:
            return text
        pattern = rf"(?<![A-Za-z0-9]){re.escape(self._password)}(?![A-Za-z0-9])"
        return re.sub(pattern, "***", text)

    # -- rows -----------------------------------------------------------------------------

    def _parse_agent(self, agent_id: str, raw: Any) -> AgentSpec:
        location = f"{self._tables.agents.name} id={agent_id}"
        if isinstance(raw, UndecodableJson):
            reason = f"spec is not valid JSON: {raw.error}"
            raise CorruptDataError(
                f"agent {agent_id} cannot be read: {reason}",
                agent_id=agent_id,
                location=location,
                reason=reason,
            )
        return parse_agent(agent_id, raw, location)

    def _parse_session(
        self, row: RowMapping, items: list[tuple[int, Any]]
    ) -> ChatSession | CorruptRecord:
        session_id = str(row["id"])
        header_location = f"{self._tables.sessions.name} id={session_id}"
        undecodable = [
            f"{column} is not valid JSON: {row[column].error}"
            for column in ("metadata", "state")
            if isinstance(row[column], UndecodableJson)
        ]
        if undecodable:
            return CorruptRecord(session_id, header_location, "; ".join(undecodable))
        fields = {name: row[name] for name in _HEADER_FIELDS - {"context"}}
        fields["context"] = {name: row[name] for name in _CONTEXT_FIELDS}
        try:
            header = SessionHeader.model_validate(fields)
        except ValidationError as error:
            return CorruptRecord(
                session_id, header_location, f"invalid session: {describe_invalid(error)}"
            )
        history: list[HistoryItem] = []
        for seq, raw in items:
            item_location = f"{self._tables.history_items.name} session_id={session_id} seq={seq}"
            if isinstance(raw, UndecodableJson):
                return CorruptRecord(
                    session_id, item_location, f"item is not valid JSON: {raw.error}"
                )
            try:
                history.append(_ITEM_ADAPTER.validate_python(raw))
            except ValidationError as error:
                return CorruptRecord(
                    session_id, item_location, f"invalid history item: {describe_invalid(error)}"
                )
        return ChatSession.from_parts(header, history)


# -- SQLite connection set-up ---------------------------------------------------------------


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # pysqlite would begin transactions itself, lazily and never IMMEDIATE; switch that off
    # and let `_on_sqlite_begin` say BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        # Readers then never wait for the writer; an in-memory database keeps "memory".
        cursor.execute("PRAGMA journal_mode = WAL")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: sa.Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


# -- helpers --------------------------------------------------------------------------------


def _session_row(header: SessionHeader) -> dict[str, Any]:
    values = header.model_dump(mode="json", include=set(_HEADER_FIELDS))
    values.update(values.pop("context"))
    return values


def _stale(session_id: str, stored: int | None, expected: int) -> ConflictError:
    if stored is None:
        return ConflictError(f"session {session_id} no longer exists", session_id=session_id)
    return ConflictError(
        f"session {session_id} is at revision {stored}, not {expected}: reload it and try again",
        session_id=session_id,
        stored_revision=int(stored),
        expected_revision=expected,
    )


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _describe(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "in-memory SQLite database" if _is_memory(url) else f"SQLite database {url.database}"
    try:
        port = str(url.port or 5432)
    except ValueError:
        port = "?"
    where = f"PostgreSQL at {url.host or 'localhost'}:{port}, database {url.database!r}"
    return f"{where} as user {url.username!r}" if url.username else where


def _describe_unparsed(url: str | URL | None) -> str:
    if isinstance(url, URL):
        return _describe(url)
    try:
        return _describe(make_url(url or ""))
    except (sa_errors.ArgumentError, ValueError):
        return "SQL database (malformed URL)"


def _password(url: str | URL | None) -> str:
    try:
        parsed = url if isinstance(url, URL) else make_url(url or "")
    except (sa_errors.ArgumentError, ValueError):
        return ""
    return str(parsed.password or "")


def _reason(error: BaseException, connect_timeout: float | None) -> str:
    if isinstance(error, sa_errors.DBAPIError) and error.orig is not None:
        # The driver's own words, without SQLAlchemy's copy of the statement and parameters.
        return str(error.orig) or type(error.orig).__name__
    if isinstance(error, TimeoutError):
        if connect_timeout is None:
            return "timed out waiting for the database"
        return f"no answer within {connect_timeout:g}s"
    return str(error) or type(error).__name__


def _is_auth_failure(error: BaseException) -> bool:
    # SQLSTATE class 28: invalid authorization specification (wrong user or password).
    orig = getattr(error, "orig", None)
    return str(getattr(orig, "sqlstate", "") or "").startswith("28")
