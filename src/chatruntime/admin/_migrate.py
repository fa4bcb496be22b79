"""``migrate``: bring a store's schema up to date, or print the SQL that would, for a database
administrator to run.

Every store upgrades itself in ``initialize()`` (SQL stores run their migrations in one
transaction under a lock; the file store builds its index; the Redis store rewrites keys of
an older layout), so migrating is initializing, once, before the applications start. For SQL
stores the statements can be printed instead: the migrations ``SqlStore`` would run are
replayed on a connection that records the SQL rather than running it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final, cast

import anyio
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.mock import MockConnection
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.elements import ClauseElement

from ..stores import SessionStore

SQL_DIALECTS: Final = ("postgresql", "sqlite")
"""The databases whose DDL ``migration_sql`` writes."""

# The key of the schema version row in the {prefix}meta table, as SqlStore writes it.
_VERSION_KEY: Final = "schema_version"


async def migrate_store(store: SessionStore) -> None:
    """Upgrade ``store`` to what this chatruntime needs: its ``initialize()``, which is
    idempotent (an up-to-date store is left as it is).

    Raises:
        StoreVersionError: The store was written by a newer chatruntime.
        StorageError: The store cannot be reached or upgraded; nothing was changed.
    """
    await store.initialize()


def latest_schema_version() -> int:
    """The SQL schema version this chatruntime writes."""
    from ..stores._sql_schema import MIGRATIONS

    return len(MIGRATIONS)


async def sql_schema_version(
    url: str,
    *,
    table_prefix: str | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
) -> int:
    """The schema version a SQL database holds (0: none of chatruntime's tables), read
    without changing anything; a SQLite file that does not exist is not created.

    Args:
        url: The database's URL, as ``open_store`` takes it.
        table_prefix: The store's table prefix (default: SqlStore's).
        engine_kwargs: Passed on to ``create_async_engine`` (``connect_args``...).

    Raises:
        StorageError, CorruptDataError: As the store would raise them.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from ..stores._sql_schema import DEFAULT_TABLE_PREFIX, define_tables, stored_version

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            return 0
        if not await anyio.Path(database).exists():
            return 0
    tables = define_tables(table_prefix if table_prefix is not None else DEFAULT_TABLE_PREFIX)
    # Built in a thread: building one resolves paths on disk (a SQLite file's).
    engine = await anyio.to_thread.run_sync(
        partial(create_async_engine, url, poolclass=NullPool, **dict(engine_kwargs or {}))
    )
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(lambda sync: stored_version(sync, tables))
    finally:
        await engine.dispose()


def migration_sql(
    dialect: str, *, table_prefix: str | None = None, from_version: int = 0
) -> list[str]:
    """The SQL statements that take a database from ``from_version`` to the latest schema:
    the migrations ``SqlStore.initialize()`` runs, recorded instead of run, then the update
    of the version row. Empty when ``from_version`` is the latest.

    Example:
        >>> print(";\\n".join(migration_sql("postgresql", from_version=0)) + ";")

    Args:
        dialect: ``postgresql`` or ``sqlite``.
        table_prefix: The store's table prefix (default: SqlStore's).
        from_version: The schema version the database holds (0: an empty database).

    Raises:
        ValueError: An unknown dialect, a bad prefix, or a version this chatruntime does not
            know.
    """
    from ..stores._sql_schema import (
        DEFAULT_TABLE_PREFIX,
        MIGRATIONS,
        check_table_prefix,
        define_tables,
    )

    prefix = check_table_prefix(table_prefix if table_prefix is not None else DEFAULT_TABLE_PREFIX)
    if not 0 <= from_version <= len(MIGRATIONS):
        raise ValueError(
            f"schema version {from_version} is not one this chatruntime knows "
            f"(0 to {len(MIGRATIONS)})"
        )
    recorder = _Recorder(_dialect(dialect))
    for step in MIGRATIONS[from_version:]:
        step(cast(Connection, recorder), prefix)
    if from_version < len(MIGRATIONS):
        meta = define_tables(prefix).meta
        if from_version == 0:
            recorder.execute(meta.insert().values(key=_VERSION_KEY, value=str(len(MIGRATIONS))))
        else:
            recorder.execute(
                meta.update().where(meta.c.key == _VERSION_KEY).values(value=str(len(MIGRATIONS)))
            )
    return recorder.statements


def sql_script(statements: list[str], *, from_version: int, to_version: int) -> str:
    """``statements`` as one script a database administrator runs in one transaction."""
    if not statements:
        return f"-- the schema is up to date (version {to_version}): nothing to run\n"
    body = "".join(f"{statement};\n\n" for statement in statements)
    return (
        f"-- chatruntime schema version {from_version} -> {to_version}\n"
        "-- Run in one transaction, while no chatruntime process uses the database.\n"
        f"BEGIN;\n\n{body}COMMIT;\n"
    )


def _dialect(name: str) -> Dialect:
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()  # type: ignore[no-untyped-call]
    if name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.dialect()
    raise ValueError(f"no DDL for {name!r}: one of {', '.join(SQL_DIALECTS)}")


class _Recorder(MockConnection):
    """A connection that records the SQL of what it is asked to run, and runs nothing."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect, self._record)
        self.statements: list[str] = []

    def _record(self, statement: Executable, parameters: Any = None) -> None:
        if not isinstance(statement, ClauseElement | ExecutableDDLElement):
            raise TypeError(f"cannot record {type(statement).__name__} as SQL")
        if isinstance(statement, ExecutableDDLElement):
            compiled = statement.compile(dialect=self.dialect)
        else:
            compiled = statement.compile(
                dialect=self.dialect, compile_kwargs={"literal_binds": True}
            )
        self.statements.append(str(compiled).strip())

    def exec_driver_sql(self, statement: str, *args: Any, **kwargs: Any) -> None:
        self.statements.append(statement.strip())


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for an in-memory database or another backend)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)
