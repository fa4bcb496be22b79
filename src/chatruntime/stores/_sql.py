"""``SqlStore``: sessions and agents in SQLite or PostgreSQL, through SQLAlchemy 2 async Core.

One front for two backends that differ where the databases do: ``_sql_sqlite`` (one round
trip to a connection's thread per call, writes committed in batches, leases as file locks)
and ``_sql_postgres`` (a pool of connections that waits, leases as rows). The tables and
their migrations are in ``_sql_schema``; rows become models in ``_sql_rows``; when a SQLite
file is opened read-only, and how, is decided in ``_sql_readonly``. A turn is one
transaction: a conditional ``UPDATE`` of the session's row (``WHERE revision = expected``)
that also returns where the turn's items go, and an ``INSERT`` of those item rows, so a turn
costs the same however long the conversation is.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, Final

import anyio
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_errors
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from ..models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    HistoryItem,
    InvalidInputError,
    SessionHeader,
    SessionPage,
    SessionStatus,
    StorageError,
)
from ..models._page import LIST_LIMIT_DEFAULT
from ._errors import check_revision_step, check_write_options
from ._lease import run_to_end
from ._paging import check_listing
from ._protocol import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    CorruptRecord,
    CreateLimits,
    Lease,
)
from ._sql_errors import ErrorMapper, describe, describe_unparsed, is_memory, url_text
from ._sql_leases import FILE_LOCKS_AVAILABLE, check_lease_arguments
from ._sql_postgres import PostgresBackend
from ._sql_readonly import (
    OPTION_REASON,
    ReadOnlyPlan,
    check_option,
    database_path,
    read_only_url,
    refusal,
    url_reason,
)
from ._sql_readonly import plan as plan_read_only
from ._sql_schema import (
    DEFAULT_TABLE_PREFIX,
    SqlTables,
    check_version,
    define_tables,
    dump_json,
    migrate,
)
from ._sql_sqlite import SqliteBackend
from ._sql_sqlite_lanes import configure_connection, configure_read_only
from ._url import redact_url

__all__ = ["SqlStore"]

logger = logging.getLogger("chatruntime.stores.sql")

_SUPPORTED_DRIVERS: Final = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
_URL_EXAMPLES: Final = (
    "sqlite+aiosqlite:///path/to/file.db, sqlite+aiosqlite:// (in memory) or "
    "postgresql+asyncpg://user:password@host:5432/database"
)
_INITIALIZE_LOCK_TIMEOUT_MS: Final = 60_000
"""How long PostgreSQL ``initialize()`` waits for another process that is migrating."""
_BEGIN_OPTION: Final = "chatruntime_sqlite_begin"

POSTGRES_POOL_SIZE: Final = 10
POSTGRES_MAX_OVERFLOW: Final = 20
POSTGRES_POOL_TIMEOUT: Final = 60.0
SQLITE_READERS: Final = 4
DEFAULT_COMMIT_TIMEOUT: Final = 5.0
"""Seconds a PostgreSQL session write may take, from its ``BEGIN`` to its ``COMMIT``'s answer."""
_SQLITE_SPARE_CONNECTIONS: Final = 10
"""Connections the engine may open beyond those the store holds (``initialize()``, yours)."""
_POOL_SETTINGS: Final = ("pool_size", "max_overflow", "pool_timeout")


class SqlStore:
    """Keeps sessions and agents in SQLite or PostgreSQL, for one or many worker processes.

    Give it a database URL, or an ``AsyncEngine`` you configured yourself. ``initialize()``
    connects, creates the tables or upgrades them to this version's schema (an older
    database is upgraded in place), and refuses a database written by a newer chatruntime.
    The store disposes only an engine it created.

    **SQLite** (one machine, any number of processes): the store holds one writer connection
    and ``pool_size`` reader connections (default 4) for as long as it is open, and runs each
    call as one round trip to a connection's thread. Readers never wait for the writer (WAL
    journal). Writes never fail for being many: they queue in the process and commit in
    batches, one fsync per batch (``synchronous=FULL``: a write that returned survives a
    power cut, as with the Agents SDK's ``SQLiteSession``); another process's writes are
    waited for up to 15 s. A session's lease is a lock on one byte of
    ``<database>-leases`` (Linux; lease rows elsewhere): free to take and give back, and
    gone the moment its holder's process dies.

    **PostgreSQL** (one or many hosts): each call borrows a pooled connection only while its
    statements run. The pool keeps ``pool_size`` connections (default 10), opens up to
    ``max_overflow`` more under load (default 20), and a call that finds all of them busy
    waits up to ``pool_timeout`` seconds (default 60) before failing with ``StorageError``.
    With several worker processes, keep ``processes × (pool_size + max_overflow)`` below the
    server's ``max_connections``. Leases are rows whose expiry the database server's clock
    sets and checks; taking one also reads the session's revision, and the write that ends
    a turn gives it back.

    A session write on PostgreSQL (what ends a turn) has ``commit_timeout`` seconds (default
    5) from its ``BEGIN`` to the answer to its ``COMMIT``: a server that stops answering
    holds no caller for longer. Timed out or cut off before the ``COMMIT`` was sent, the
    write fails with ``StorageError`` and nothing is stored; after, with
    ``OutcomeUnknownError`` (``OUTCOME_UNKNOWN``): it may or may not be stored, so retry only
    with the turn's idempotency key. Other statements have no time limit of their own; give
    them one with ``engine_kwargs={"connect_args": {"command_timeout": 30}}``.

    **Read-only SQLite.** ``read_only=True``, a URI URL that opens the file read-only
    (``sqlite+aiosqlite:///file:/srv/chat.db?mode=ro&uri=true``), or, with the default
    ``read_only=None``, a database file (or the ``-wal``, ``-shm`` or ``-leases`` file a writer
    needs beside it) that this process cannot write or create, for want of permission or on a
    read-only file system: the store then opens the database read-only. It migrates nothing
    (a database of another schema version fails ``initialize()`` with ``StorageError``, or
    ``StoreVersionError`` if newer), creates no lock file, and reads, lists, counts and scans
    as usual; every change, and a session's lease, raises ``StorageError`` saying the store
    is read-only and why (:attr:`read_only`). Where SQLite itself refuses to write a file
    these checks let through, ``initialize()`` opens it again read-only. SQLite may still
    create the ``-wal`` and ``-shm`` files beside the database if the folder allows it, as
    any reader of a WAL database does. In a folder that cannot be written and holds no
    ``-wal``/``-shm`` pair, SQLite can read the file only as ``immutable``: it must then not
    change while the store is open (say, written through another mount of the same files).

    The pool settings can also be given in the URL's query, as in
    ``postgresql+asyncpg://app@db/chat?pool_size=20&max_overflow=10&pool_timeout=10``;
    arguments win over the URL.

    Example:
        >>> store = SqlStore("postgresql+asyncpg://app:secret@db.internal:5432/chat")
        >>> await store.initialize()

    Args:
        url: ``sqlite+aiosqlite:///relative.db``, ``sqlite+aiosqlite:////absolute/path.db``,
            ``sqlite+aiosqlite://`` (in memory, gone when the store closes) or
            ``postgresql+asyncpg://user:password@host:port/database``.
        engine: An existing ``AsyncEngine`` (aiosqlite or asyncpg) to use instead of a URL.
            For SQLite the store adds its connection listeners (foreign keys, WAL, explicit
            ``BEGIN``) and checks out five connections for as long as it is open, so give it
            an engine that has not opened connections yet and whose pool allows that.
        table_prefix: Starts the name of every table and index, to keep several stores apart
            in one database or schema.
        connect_timeout: Seconds to wait for a PostgreSQL connection, including its login.
        pool_size: PostgreSQL: connections the pool keeps open. SQLite: reader connections.
        max_overflow: PostgreSQL only: connections opened beyond ``pool_size`` under load.
        pool_timeout: PostgreSQL only: seconds a call waits for a free connection.
        engine_kwargs: Passed on to ``create_async_engine`` (``connect_args``...); what you
            set there wins over everything else.
        commit_timeout: PostgreSQL only: seconds a session write may take from its
            ``BEGIN`` to the answer to its ``COMMIT`` (see above).
        read_only: SQLite database files only. ``True``: open read-only; ``False``: open for
            writing, and fail where the database cannot be written; ``None`` (the default):
            read-only only where it cannot be written (see above). With an ``engine`` of
            your own, the store cannot change how the engine connects: ``None`` is then
            read-only only if the engine's URL opens the file read-only (``mode=ro``, see
            above); give such an engine for ``read_only=True``.

    Raises:
        ValueError: Not exactly one of ``url`` and ``engine``, ``engine_kwargs`` or pool
            settings with an engine, a table prefix unfit for SQL names, a timeout or pool
            setting out of range, a PostgreSQL-only pool setting for SQLite, or a
            ``read_only`` that cannot apply: set for PostgreSQL, ``True`` for a database in
            memory, ``False`` with a URL that opens the file read-only.
        InvalidInputError: ``url`` is not a string or ``URL``, is malformed, names an
            unsupported database or driver, or has a pool setting out of range in its
            query. Raised here, never later at ``initialize()``; the message shows the URL
            with its password replaced by ``***``.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: AsyncEngine | None = None,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        connect_timeout: float = 5.0,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        pool_timeout: float | None = None,
        engine_kwargs: Mapping[str, Any] | None = None,
        commit_timeout: float = DEFAULT_COMMIT_TIMEOUT,
        read_only: bool | None = None,
    ) -> None:
        if read_only is not None and not isinstance(read_only, bool):
            raise ValueError(f"read_only must be True, False or None, got {read_only!r}")
        if (url is None) == (engine is None):
            raise ValueError(
                "SqlStore needs exactly one of url and engine, got "
                f"{'both' if url is not None else 'neither'}"
            )
        pool = _pool_settings(
            {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout},
            in_url=False,
        )
        if engine is not None and (engine_kwargs or pool):
            given = "engine_kwargs" if engine_kwargs else next(iter(pool))
            raise ValueError(
                f"{given} configures an engine the store creates; "
                "configure the engine you pass in yourself"
            )
        if url is not None and not isinstance(url, (str, URL)):
            raise InvalidInputError(f"url must be a string, got {type(url).__name__}", field="url")
        if isinstance(connect_timeout, bool) or not (
            isinstance(connect_timeout, (int, float)) and connect_timeout > 0
        ):
            raise ValueError(
                f"connect_timeout must be a positive number of seconds, got {connect_timeout!r}"
            )
        if isinstance(commit_timeout, bool) or not (
            isinstance(commit_timeout, (int, float)) and 0 < commit_timeout < float("inf")
        ):
            raise ValueError(
                f"commit_timeout must be a positive number of seconds, got {commit_timeout!r}"
            )
        self._commit_timeout = float(commit_timeout)
        self._url = url
        self._tables: SqlTables = define_tables(table_prefix)
        self._prefix = table_prefix
        self._pool = pool
        self._engine_kwargs = dict(engine_kwargs or {})
        self._engine: AsyncEngine | None = engine
        self._owns_engine = engine is None
        self._errors = ErrorMapper(
            where=describe(engine.url) if engine is not None else describe_unparsed(url),
            url=url_text(engine.url if engine is not None else url),
            connect_timeout=float(connect_timeout),
        )
        self._backend: SqliteBackend | PostgresBackend | None = None
        self._opening = anyio.Lock()
        self._read_only = read_only
        self._read_only_reason: str | None = None
        """Why the engine of the moment opens the database read-only (``None``: it does not)."""
        self._forced_read_only: str | None = None
        """SQLite's refusal to write, which made ``initialize()`` open the database again
        read-only (see ``_open``)."""
        # One rule for every store: a URL that cannot work fails here, not at initialize().
        self._parsed: tuple[URL, dict[str, float]] | None = None
        if url is not None:
            self._parsed = self._parsed_url()
            self._pool = self._parsed[1]
            check_option(self._read_only, self._parsed[0])

    def __repr__(self) -> str:
        return f"SqlStore({self._errors.where!r}, table_prefix={self._prefix!r})"

    @property
    def engine(self) -> AsyncEngine | None:
        """The SQLAlchemy engine, once ``initialize()`` has made or adopted one."""
        return self._engine

    @property
    def table_prefix(self) -> str:
        """The prefix of every table and index name of this store."""
        return self._prefix

    @property
    def read_only(self) -> str | None:
        """Why the store is open read-only (see the class docs), or ``None`` if it is not
        (or not open yet)."""
        backend = self._backend
        return backend.read_only if isinstance(backend, SqliteBackend) else None

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect, then create the tables or upgrade them to the current schema; idempotent.

        Concurrent calls from several processes are safe: PostgreSQL serializes them with a
        transaction-level advisory lock, SQLite with ``BEGIN IMMEDIATE``. A SQLite store open
        read-only (see the class docs) only checks the schema version.

        Raises:
            InvalidInputError: ``engine_kwargs`` that SQLAlchemy refuses for the URL, when
                they came from the URL's query.
            ValueError: Constructor arguments that only the engine shows to be wrong:
                ``engine_kwargs`` SQLAlchemy refuses, an engine of an unsupported database
                or driver, ``read_only`` set for an engine it cannot apply to.
            StorageError: The database cannot be reached in time, refused the credentials, or
                failed while creating or upgrading the tables; open read-only: there is no
                database file, or its schema needs creating or upgrading.
            StoreVersionError: The database was created by a newer chatruntime.
        """
        async with self._opening:
            if self._backend is None:
                self._forced_read_only = None
                try:
                    await self._open()
                except StorageError as error:
                    reason = await self._refused_to_write(error)
                    if reason is None:
                        raise
                    await self._reopen_read_only(reason)

    async def _reopen_read_only(self, reason: str) -> None:
        """Open the database again, read-only, after SQLite refused to write it."""
        logger.info("%s cannot be written (%s): opening it read-only", self._errors.where, reason)
        engine, self._engine = self._engine, None
        if engine is not None:
            with self._errors.mapped("closing"):
                await engine.dispose()
        self._forced_read_only = f"SQLite cannot write it: {reason}"
        await self._open()

    async def _open(self) -> None:
        engine = self._engine
        if engine is None:
            engine = self._engine = await self._create_engine()
        elif not self._owns_engine:
            self._read_only_reason = OPTION_REASON if self._read_only else url_reason(engine.url)
        dialect = self._adopt(engine)
        errors = self._errors
        with errors.mapped("connecting", connecting=True):
            async with engine.connect():
                pass
        if self._read_only_reason is not None:
            # Nothing to migrate: the schema must be this version's already.
            with errors.mapped("reading its schema version"):
                async with engine.connect() as conn:
                    await conn.run_sync(
                        check_version, self._tables, self._prefix, where=errors.where
                    )
        else:
            with errors.mapped("creating or upgrading the tables"):
                async with self._migration_transaction(engine, dialect) as conn:
                    found, current = await conn.run_sync(
                        migrate, self._tables, self._prefix, where=errors.where
                    )
            if found != current:
                logger.info(
                    "%s: schema version %d created or upgraded from %d",
                    errors.where,
                    current,
                    found,
                )
        if dialect == "sqlite":
            single = isinstance(engine.sync_engine.pool, StaticPool)
            backend = SqliteBackend(
                self._tables,
                errors,
                readers=int(self._pool.get("pool_size", SQLITE_READERS)),
                prefix=self._prefix,
                file_leases=FILE_LOCKS_AVAILABLE,
                read_only=self._read_only_reason,
            )
            try:
                await backend.open(engine, memory=single)
            except BaseException:
                await backend.close()
                raise
            self._backend = backend
        else:
            self._backend = PostgresBackend(
                self._tables, errors, engine, commit_timeout=self._commit_timeout
            )

    async def close(self) -> None:
        """Give back the store's connections and dispose of the engine if the store created
        it; an engine passed in stays open. A closed store may be initialized again.

        Runs to its end even if the caller is cancelled meanwhile (the cancellation then
        reaches the caller afterwards): cut short, it would leave connections open and
        tasks of the database driver running when the event loop ends.
        """
        backend, self._backend = self._backend, None
        engine = None
        if self._owns_engine:
            engine, self._engine = self._engine, None
        await run_to_end(partial(self._close, backend, engine))

    async def _close(
        self, backend: SqliteBackend | PostgresBackend | None, engine: AsyncEngine | None
    ) -> None:
        try:
            if backend is not None:
                await backend.close()
        finally:
            if engine is not None:
                with self._errors.mapped("closing"):
                    await engine.dispose()

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        await self._ready().save_agent(spec)

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        return await self._ready().get_agent(agent_id)

    async def list_agents(self) -> list[AgentSpec]:
        return await self._ready().list_agents()

    async def delete_agent(self, agent_id: str) -> bool:
        return await self._ready().delete_agent(agent_id)

    # -- sessions -------------------------------------------------------------------------

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        """Every session, in batches of at most 100 sessions or 10,000 items per read."""
        async for found in self._ready().scan_sessions():
            yield found

    async def count_sessions(
        self, *, user_id: str | None = None, live_at: int | None = None
    ) -> int:
        """How many sessions there are; see ``SessionStore.count_sessions``. A user's are
        counted along the user's index; every other count reads the whole table."""
        return await self._ready().count_sessions(user_id=user_id, live_at=live_at)

    async def expired_sessions(self, now: int, *, limit: int = 1000) -> list[str]:
        """Ids of sessions expired at ``now``, earliest first, from the expiry index; see
        ``SessionStore.expired_sessions``."""
        return await self._ready().expired_sessions(now, limit=limit)

    async def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of session headers from an index; see ``SessionStore.list_sessions``."""
        backend = self._ready()
        after = check_listing(
            agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
        )
        return await backend.list_sessions(
            agent_id=agent_id, user_id=user_id, status=status, after=after, limit=limit
        )

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        """One session; with ``last``, only its last items, read by ``ORDER BY seq DESC
        LIMIT last``; see ``SessionStore.get_session``."""
        return await self._ready().get_session(session_id, last=last)

    async def get_revision(self, session_id: str) -> int | None:
        return await self._ready().get_revision(session_id)

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
        lease: Lease | None = None,
        keep: int | None = None,
        limits: CreateLimits | None = None,
    ) -> None:
        """Update the session's row and insert the new items' rows in one transaction.

        See ``SessionStore.write_session``. On PostgreSQL a ``lease`` taken from this store
        is given back in the same transaction. ``keep`` deletes the item rows from ``keep``
        on in that transaction. ``limits`` counts the live sessions in the transaction that
        inserts: SQLite's write lock, taken as the transaction begins, and on PostgreSQL a
        transaction-scoped advisory lock keep racing creations of any process from counting
        the same room twice.

        Raises:
            OutcomeUnknownError: PostgreSQL stopped answering (or the connection broke)
                after the commit was sent: the write may or may not be stored.
        """
        backend = self._ready()
        check_write_options(header, expected_revision, keep, limits)
        check_revision_step(header, expected_revision)
        await backend.write_session(
            header,
            new_items,
            expected_revision=expected_revision,
            lease=lease,
            keep=keep,
            limits=limits,
        )

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session's row; its item and checkpoint rows go with it (cascade)."""
        return await self._ready().delete_session(session_id)

    # -- checkpoints ----------------------------------------------------------------------

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert or replace a checkpoint's row; see ``SessionStore.save_checkpoint``.

        Raises:
            ConflictError: Its session is not stored.
        """
        await self._ready().save_checkpoint(checkpoint)

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        return await self._ready().get_checkpoint(session_id, checkpoint_id)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """A session's checkpoints, newest first, along the ``(session_id, created_at, id)``
        index; see ``SessionStore.list_checkpoints``."""
        return await self._ready().list_checkpoints(session_id)

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        return await self._ready().delete_checkpoint(session_id, checkpoint_id)

    async def clear_checkpoints(self, session_id: str) -> int:
        return await self._ready().clear_checkpoints(session_id)

    # -- leases ---------------------------------------------------------------------------

    def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold the session exclusively across processes; see ``SessionStore.lease``.

        SQLite: a file lock that needs no ``ttl`` (it ends with its holder's process).
        PostgreSQL: a row renewed every ``ttl / 3`` seconds while the body runs; if it is
        lost anyway (the process stalled past ``ttl``), a warning is logged and the body goes
        on: revisions still refuse a write built on stale data.
        """
        check_lease_arguments(ttl, timeout)
        return self._ready().lease(session_id, ttl=ttl, timeout=timeout)

    async def drop_stale_leases(self, now: int) -> int:
        """Delete the lease rows that ended before ``now`` (epoch ms), left by holders that
        died or lost the server; how many. An operator's call (``chatruntime admin gc``):
        a lease row whose holder died is taken over anyway once it ends, so this only tidies
        the table.

        A row still live by the database server's clock, which decides who holds a lease,
        is never dropped, even if ``now`` is later. PostgreSQL keeps lease rows; SQLite only
        on platforms without open-file-description locks (elsewhere its leases are file
        locks, which end with their holder's process, and the table stays empty).

        Raises:
            StorageError: The database cannot be reached or refused the statement.
        """
        return await self._ready().drop_stale_leases(now)

    # -- engine ---------------------------------------------------------------------------

    def _ready(self) -> SqliteBackend | PostgresBackend:
        if self._backend is None:
            raise RuntimeError(
                "SqlStore is not initialized: await store.initialize() before using it "
                "(and again after close())"
            )
        return self._backend

    async def _create_engine(self) -> AsyncEngine:
        assert self._parsed is not None, "a store without an engine has a URL"
        url, pool = self._parsed
        kwargs: dict[str, Any] = {"json_serializer": dump_json}
        sizing: dict[str, Any] = {}
        connect_args: dict[str, Any] = {}
        backend = url.get_backend_name()
        if backend == "postgresql":
            connect_args["timeout"] = self._errors.connect_timeout
            sizing["pool_size"] = pool.get("pool_size", POSTGRES_POOL_SIZE)
            sizing["max_overflow"] = pool.get("max_overflow", POSTGRES_MAX_OVERFLOW)
            sizing["pool_timeout"] = pool.get("pool_timeout", POSTGRES_POOL_TIMEOUT)
            # A pooled connection the server dropped (restart, failover) is replaced
            # instead of failing the next call.
            kwargs["pool_pre_ping"] = True
        elif is_memory(url):
            kwargs["poolclass"] = StaticPool
        else:
            # The store holds a writer and its readers; the rest serve initialize() and you.
            sizing["pool_size"] = int(pool.get("pool_size", SQLITE_READERS)) + 1
            sizing["max_overflow"] = _SQLITE_SPARE_CONNECTIONS
            url = await self._sqlite_file_url(url)
        if "poolclass" not in self._engine_kwargs:
            # A pool class of your own (NullPool...) may take no sizes.
            kwargs.update(sizing)
        kwargs.update(self._engine_kwargs)
        kwargs["connect_args"] = {**connect_args, **(self._engine_kwargs.get("connect_args") or {})}
        self._errors.pool = ", ".join(
            f"{name}={kwargs[name]}" for name in _POOL_SETTINGS if name in kwargs
        )
        try:
            # In a worker thread: the SQLite dialect resolves the file's absolute path.
            return await anyio.to_thread.run_sync(partial(create_async_engine, url, **kwargs))
        except (sa_errors.ArgumentError, TypeError, ValueError) as error:
            message = f"cannot configure {self._errors.where}: {self._errors.scrub(str(error))}"
            if self._engine_kwargs:
                # Most likely the engine_kwargs the code passed: a programming mistake.
                raise ValueError(message) from error
            raise InvalidInputError(message, field="engine_kwargs") from error

    async def _sqlite_file_url(self, url: URL) -> URL:
        """The URL to open a SQLite file with: read-only (see ``_sql_readonly``) or not."""
        self._read_only_reason = None
        # (In a worker thread: a relative path is resolved against the working directory.)
        path = await anyio.to_thread.run_sync(database_path, url)
        assert path is not None, "an in-memory database has a StaticPool"
        if self._forced_read_only is not None:
            where = self._errors.where
            plan = await anyio.to_thread.run_sync(plan_read_only, path, True, None, where)
            assert plan is not None
            plan = ReadOnlyPlan(self._forced_read_only, plan.immutable)
        else:
            with self._errors.mapped("checking whether it can be written", connecting=True):
                plan = await anyio.to_thread.run_sync(
                    plan_read_only, path, self._read_only, url_reason(url), self._errors.where
                )
        if plan is not None:
            self._read_only_reason = plan.reason
            return read_only_url(url, path, plan)
        if url.database and not url.query.get("uri"):
            # sqlite3 creates the file but not its folder.
            with self._errors.mapped("creating its folder", connecting=True):
                await anyio.Path(path).parent.mkdir(parents=True, exist_ok=True)
        return url

    async def _refused_to_write(self, error: StorageError) -> str | None:
        """SQLite's refusal to write a database file that exists, which then opens read-only
        (``read_only=None`` only, and with an engine of the store's own); else ``None``."""
        if (
            self._read_only is not None
            or self._read_only_reason is not None
            or not self._owns_engine
            or self._parsed is None
        ):
            return None
        reason = refusal(error)
        path = await anyio.to_thread.run_sync(database_path, self._parsed[0])
        if reason is None or path is None or not await anyio.Path(path).is_file():
            return None
        return reason

    def _parsed_url(self) -> tuple[URL, dict[str, float]]:
        """The URL without the pool settings in its query, and the pool settings (the
        constructor's over the URL's)."""
        assert self._url is not None
        shown = redact_url(url_text(self._url))
        try:
            url = make_url(self._url)
            port = url.port  # parsed lazily by some versions; a bad one raises here
        except (sa_errors.ArgumentError, ValueError) as error:
            raise InvalidInputError(
                f"malformed database URL {shown!r}: {self._errors.scrub(str(error))}; "
                f"expected {_URL_EXAMPLES}",
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
                f"malformed database URL {shown!r}: port {port} is out of range; "
                f"expected {_URL_EXAMPLES}",
                field="url",
            )
        from_url = {name: url.query[name] for name in _POOL_SETTINGS if name in url.query}
        pool = {**_pool_settings(from_url, in_url=True), **self._pool}
        if backend == "sqlite":
            for name in ("max_overflow", "pool_timeout"):
                if name not in pool:
                    continue
                message = (
                    f"{name} applies to PostgreSQL only: on SQLite every call queues "
                    "for its connection instead of waiting for a free one"
                )
                if name in self._pool:
                    raise ValueError(message)
                raise InvalidInputError(message, field=name)
        self._errors.where = describe(url)
        return url.difference_update_query(_POOL_SETTINGS), pool

    def _adopt(self, engine: AsyncEngine) -> str:
        dialect = engine.dialect
        if _SUPPORTED_DRIVERS.get(dialect.name) != dialect.driver:
            raise ValueError(
                f"SqlStore does not support {dialect.name}+{dialect.driver} engines; "
                f"use one for {_URL_EXAMPLES}"
            )
        if not self._owns_engine:
            # (An engine of the store's own may open a read-only URI: the URL names it.)
            self._errors.where = describe(engine.url)
            check_option(self._read_only, engine.url)
            if self._read_only and isinstance(engine.sync_engine.pool, StaticPool):
                raise ValueError("read_only=True needs a SQLite database file, not one in memory")
        if dialect.name == "sqlite":
            sync_engine = engine.sync_engine
            configure = (
                _on_sqlite_connect if self._read_only_reason is None else _on_read_only_connect
            )
            if not event.contains(sync_engine, "connect", configure):
                event.listen(sync_engine, "connect", configure)
            if not event.contains(sync_engine, "begin", _on_sqlite_begin):
                event.listen(sync_engine, "begin", _on_sqlite_begin)
        dbapi_error = getattr(dialect.loaded_dbapi, "Error", None)
        if (
            isinstance(dbapi_error, type)
            and issubclass(dbapi_error, Exception)
            and dbapi_error not in self._errors.driver_errors
        ):
            self._errors.driver_errors = (*self._errors.driver_errors, dbapi_error)
        return str(dialect.name)

    def _migration_transaction(
        self, engine: AsyncEngine, dialect: str
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        if dialect == "sqlite":
            return engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}).begin()
        return _locked_postgres_transaction(engine, self._lock_key())

    def _lock_key(self) -> int:
        digest = hashlib.sha256(f"chatruntime.initialize:{self._prefix}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def _locked_postgres_transaction(
    engine: AsyncEngine, key: int
) -> AsyncIterator[AsyncConnection]:
    """A transaction that first takes the migration's advisory lock (held until its end)."""
    async with engine.begin() as conn:
        await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_INITIALIZE_LOCK_TIMEOUT_MS}")
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        yield conn


def _pool_settings(given: Mapping[str, Any], *, in_url: bool) -> dict[str, float]:
    """The pool settings set in ``given`` (arguments, or text from the URL's query), checked
    and converted.

    Raises:
        InvalidInputError: ``in_url``, and ``pool_size`` is not a whole number of at least 1,
            ``max_overflow`` one of at least 0, or ``pool_timeout`` a positive number of
            seconds: the URL is malformed.
        ValueError: The same for arguments: a programming mistake.
    """
    settings: dict[str, float] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name == "pool_timeout":
            seconds = _number(value, float)
            if seconds is not None and seconds > 0:
                settings[name] = seconds
                continue
            wanted = "a positive number of seconds"
        else:
            count = _number(value, int)
            least = 1 if name == "pool_size" else 0
            if count is not None and count >= least:
                settings[name] = count
                continue
            wanted = f"a whole number of at least {least}"
        if in_url:
            raise InvalidInputError(
                f"{name} in the URL must be {wanted}, got {value!r}", field=name
            )
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return settings


def _number(value: object, kind: type[int] | type[float]) -> float | None:
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, kind if kind is int else (int, float)):
        return None
    return kind(value)


# -- SQLite connection set-up ---------------------------------------------------------------


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    configure_connection(dbapi_connection)


def _on_read_only_connect(dbapi_connection: Any, connection_record: Any) -> None:
    configure_read_only(dbapi_connection)


def _on_sqlite_begin(connection: sa.Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")
