"""The tables of ``SqlStore`` and the migrations that create and upgrade them.

Every table name starts with the store's prefix (``chatruntime_`` by default)::

    {p}meta            key, value                       the schema version ("schema_version")
    {p}agents          id, spec (JSON), created_at      one row per agent
    {p}sessions        id, agent_id, user_id, ...       one row per session header; statistics
                                                        in columns, metadata and state as JSON,
                                                        item_count: how many items it holds
    {p}history_items   session_id, seq, type, item      one row per history item, in seq order
    {p}session_leases  session_id, token, expires_at    who holds a session, and until when
                                                        (PostgreSQL; SQLite uses a file lock)
    {p}checkpoints     session_id, id, created_at, body one row per checkpoint, its record as
                                                        JSON; deleted with its session

A turn updates its session's row and inserts its items' rows; no history is ever rewritten.
Listings are served by indexes on ``(last_activity, id)``, alone and behind each filter
(``agent_id``, ``user_id``, ``status``), walked backwards for newest first; the last items of a
session by the primary key ``(session_id, seq)``, also walked backwards.

Migrations: ``MIGRATIONS[n - 1]`` takes a database from schema version ``n - 1`` to ``n``
(version 1 creates the tables). A released migration never changes; a new schema version
appends a migration that alters what the earlier ones built. ``initialize()`` runs the missing
ones in order, in one transaction, under a lock that keeps concurrent processes out.

- Version 1: the tables, with one-column indexes on agent_id, user_id and last_activity.
- Version 2: ``sessions.item_count`` (backfilled from the item rows), so a turn learns where
  its items go from the same ``UPDATE`` that checks the revision; the one-column indexes
  replaced by the four listing indexes above.
- Version 3: ``sessions.turn_keys`` (the idempotency keys of recent turns, JSON, ``[]`` for
  existing rows); an index on ``(expires_at, id)``, so expired sessions are found by a range
  scan, earliest first; the ``checkpoints`` table, whose primary key ``(session_id, id)``
  finds one and whose index ``(session_id, created_at, id)`` lists them newest first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from ..models import CorruptDataError, StorageError, StoreVersionError

DEFAULT_TABLE_PREFIX: Final = "chatruntime_"
_PREFIX_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,29}|")
_SCHEMA_VERSION_KEY: Final = "schema_version"

Migration = Callable[[Connection, str], None]
"""Upgrades the database by one schema version: ``(connection, table_prefix)``."""


def check_table_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is usable in table and index names, else raise.

    Raises:
        ValueError: It is not a string of at most 30 letters, digits and underscores that
            does not start with a digit.
    """
    if not isinstance(prefix, str) or not _PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(
            f"table_prefix must be up to 30 letters, digits or underscores, not starting with "
            f"a digit (such as 'chatruntime_'), got {prefix!r}"
        )
    return prefix


# -- column types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UndecodableJson:
    """What a JSON column read back as when its text is not JSON (SQLite only)."""

    error: str


def dump_json(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (UTF-8 is half the size of ``\\u`` escapes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def load_json(text: str) -> Any:
    """The value of JSON ``text``, or :class:`UndecodableJson` saying why it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as error:
        return UndecodableJson(str(error))


class JsonDocument(TypeDecorator[Any]):
    """A JSON document: PostgreSQL ``json``, SQLite ``TEXT``.

    ``json`` rather than ``jsonb`` because it keeps a document as written and accepts every
    string the model may produce (``jsonb`` refuses ``\\u0000``). On SQLite the text is parsed
    here, and text that is not JSON comes back as :class:`UndecodableJson` so one damaged row
    is reported on its own instead of failing the whole query.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSON())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value  # the json type's own bind processing serialises it
        return dump_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql" or not isinstance(value, str):
            return value
        return load_json(value)


class db_now_ms(FunctionElement[int]):
    """The database server's clock in epoch milliseconds.

    Lease expiry is computed and compared by the database, so processes on hosts whose clocks
    disagree still agree on who holds a lease.
    """

    type = sa.BigInteger()
    inherit_cache = True
    name = "db_now_ms"


@compiles(db_now_ms, "postgresql")
def _postgresql_now_ms(element: db_now_ms, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
    return "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)"


@compiles(db_now_ms, "sqlite")
def _sqlite_now_ms(element: db_now_ms, compiler: SQLCompiler, **kw: Any) -> str:
    # 2440587.5 is the Julian day of the Unix epoch; julianday('now') has millisecond precision.
    return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"


# -- tables ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionTables:
    """The tables every schema version has, as that version defined them."""

    metadata: sa.MetaData
    meta: sa.Table
    agents: sa.Table
    sessions: sa.Table
    history_items: sa.Table
    session_leases: sa.Table


@dataclass(frozen=True)
class SqlTables(VersionTables):
    """The tables of one store (one table prefix) at the current schema version."""

    checkpoints: sa.Table


def _v1_tables(prefix: str) -> VersionTables:
    # Frozen: this is what migration 1 creates. A later schema version defines its tables
    # anew in `define_tables` and leaves these as they are.
    metadata = sa.MetaData()
    meta = sa.Table(
        f"{prefix}meta",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    agents = sa.Table(
        f"{prefix}agents",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("spec", JsonDocument, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    sessions = sa.Table(
        f"{prefix}sessions",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(256)),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_activity", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("total_tokens", sa.BigInteger, nullable=False),
        sa.Column("total_messages", sa.BigInteger, nullable=False),
        sa.Column("total_function_calls", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("total_turns", sa.BigInteger, nullable=False),
        sa.Column("total_handoffs", sa.BigInteger, nullable=False),
        sa.Column("last_agent_id", sa.String(256)),
        sa.Column("metadata", JsonDocument, nullable=False),
        sa.Column("state", JsonDocument, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        # Index names are per schema in PostgreSQL, so they carry the prefix too.
        sa.Index(f"{prefix}sessions_agent_id", "agent_id"),
        sa.Index(f"{prefix}sessions_user_id", "user_id"),
        sa.Index(f"{prefix}sessions_last_activity", "last_activity"),
    )
    history_items = sa.Table(
        f"{prefix}history_items",
        metadata,
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey(sessions.c.id, ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("item", JsonDocument, nullable=False),
    )
    # No foreign key to sessions: a lease may be taken before its session is created.
    session_leases = sa.Table(
        f"{prefix}session_leases",
        metadata,
        sa.Column("session_id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    return VersionTables(metadata, meta, agents, sessions, history_items, session_leases)


def _v2_tables(prefix: str) -> VersionTables:
    # Version 1 plus sessions.item_count and the listing indexes (see the module docstring).
    metadata = sa.MetaData()
    meta = sa.Table(
        f"{prefix}meta",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    agents = sa.Table(
        f"{prefix}agents",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("spec", JsonDocument, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    sessions = sa.Table(
        f"{prefix}sessions",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(256)),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_activity", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("total_tokens", sa.BigInteger, nullable=False),
        sa.Column("total_messages", sa.BigInteger, nullable=False),
        sa.Column("total_function_calls", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("total_turns", sa.BigInteger, nullable=False),
        sa.Column("total_handoffs", sa.BigInteger, nullable=False),
        sa.Column("last_agent_id", sa.String(256)),
        sa.Column("metadata", JsonDocument, nullable=False),
        sa.Column("state", JsonDocument, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        # The seq the session's next item gets: a turn learns it from the UPDATE of its row.
        sa.Column("item_count", sa.BigInteger, nullable=False, server_default="0"),
        # Each serves `ORDER BY last_activity DESC, id DESC` under its filter, read backwards.
        sa.Index(f"{prefix}sessions_recent", "last_activity", "id"),
        sa.Index(f"{prefix}sessions_agent_recent", "agent_id", "last_activity", "id"),
        sa.Index(f"{prefix}sessions_user_recent", "user_id", "last_activity", "id"),
        sa.Index(f"{prefix}sessions_status_recent", "status", "last_activity", "id"),
    )
    history_items = sa.Table(
        f"{prefix}history_items",
        metadata,
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey(sessions.c.id, ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("item", JsonDocument, nullable=False),
    )
    session_leases = sa.Table(
        f"{prefix}session_leases",
        metadata,
        sa.Column("session_id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    return VersionTables(metadata, meta, agents, sessions, history_items, session_leases)


def _v3_tables(prefix: str) -> SqlTables:
    # Version 2 plus sessions.turn_keys, the expiry index and checkpoints.
    metadata = sa.MetaData()
    meta = sa.Table(
        f"{prefix}meta",
        metadata,
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    agents = sa.Table(
        f"{prefix}agents",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("spec", JsonDocument, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    sessions = sa.Table(
        f"{prefix}sessions",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(256)),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_activity", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("total_tokens", sa.BigInteger, nullable=False),
        sa.Column("total_messages", sa.BigInteger, nullable=False),
        sa.Column("total_function_calls", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("total_turns", sa.BigInteger, nullable=False),
        sa.Column("total_handoffs", sa.BigInteger, nullable=False),
        sa.Column("last_agent_id", sa.String(256)),
        sa.Column("metadata", JsonDocument, nullable=False),
        sa.Column("state", JsonDocument, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("item_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("turn_keys", JsonDocument, nullable=False, server_default="[]"),
        sa.Index(f"{prefix}sessions_recent", "last_activity", "id"),
        sa.Index(f"{prefix}sessions_agent_recent", "agent_id", "last_activity", "id"),
        sa.Index(f"{prefix}sessions_user_recent", "user_id", "last_activity", "id"),
        sa.Index(f"{prefix}sessions_status_recent", "status", "last_activity", "id"),
        # `expires_at <= now ORDER BY expires_at, id`: a range at the start of the index
        # (sessions that never expire hold NULL, outside every range).
        sa.Index(f"{prefix}sessions_expiry", "expires_at", "id"),
    )
    history_items = sa.Table(
        f"{prefix}history_items",
        metadata,
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey(sessions.c.id, ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("item", JsonDocument, nullable=False),
    )
    session_leases = sa.Table(
        f"{prefix}session_leases",
        metadata,
        sa.Column("session_id", sa.String(36), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    checkpoints = sa.Table(
        f"{prefix}checkpoints",
        metadata,
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey(sessions.c.id, ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("body", JsonDocument, nullable=False),
        # Serves `WHERE session_id = ? ORDER BY created_at DESC, id DESC`, read backwards.
        sa.Index(f"{prefix}checkpoints_recent", "session_id", "created_at", "id"),
    )
    return SqlTables(metadata, meta, agents, sessions, history_items, session_leases, checkpoints)


def define_tables(prefix: str) -> SqlTables:
    """The tables of the current schema version, named with ``prefix``."""
    return _v3_tables(check_table_prefix(prefix))


# -- migrations -----------------------------------------------------------------------------


def _create_v1(connection: Connection, prefix: str) -> None:
    # No checkfirst: tables of ours without a version row are not something to adopt silently.
    _v1_tables(prefix).metadata.create_all(connection, checkfirst=False)


def _upgrade_to_v2(connection: Connection, prefix: str) -> None:
    old, new = _v1_tables(prefix), _v2_tables(prefix)
    sessions, items = new.sessions, new.history_items
    table = connection.dialect.identifier_preparer.format_table(sessions)
    connection.exec_driver_sql(
        f"ALTER TABLE {table} ADD COLUMN item_count BIGINT NOT NULL DEFAULT 0"
    )
    # Items are numbered from 0 and only ever appended, so the next number is the highest + 1.
    next_seq = (
        sa.select(sa.func.max(items.c.seq) + 1)
        .where(items.c.session_id == sessions.c.id)
        .scalar_subquery()
    )
    connection.execute(sa.update(sessions).values(item_count=sa.func.coalesce(next_seq, 0)))
    for index in old.sessions.indexes:
        index.drop(connection)
    for index in new.sessions.indexes:
        index.create(connection)


def _upgrade_to_v3(connection: Connection, prefix: str) -> None:
    new = _v3_tables(prefix)
    sessions = new.sessions
    table = connection.dialect.identifier_preparer.format_table(sessions)
    kind = "JSON" if connection.dialect.name == "postgresql" else "TEXT"
    # Existing sessions have no idempotency keys yet.
    connection.exec_driver_sql(
        f"ALTER TABLE {table} ADD COLUMN turn_keys {kind} NOT NULL DEFAULT '[]'"
    )
    [expiry] = [index for index in sessions.indexes if index.name == f"{prefix}sessions_expiry"]
    expiry.create(connection)
    new.checkpoints.create(connection)


MIGRATIONS: Sequence[Migration] = (_create_v1, _upgrade_to_v2, _upgrade_to_v3)
"""``MIGRATIONS[n - 1]`` upgrades schema version ``n - 1`` to ``n``."""


def stored_version(connection: Connection, tables: VersionTables) -> int:
    """The schema version recorded in the database; 0 when it has no tables of ours.

    Raises:
        CorruptDataError: The version table exists but holds no usable version.
    """
    if not sa.inspect(connection).has_table(tables.meta.name):
        return 0
    found = connection.execute(
        sa.select(tables.meta.c.value).where(tables.meta.c.key == _SCHEMA_VERSION_KEY)
    ).scalar_one_or_none()
    if found is None or not found.isdigit():
        raise CorruptDataError(
            f"table {tables.meta.name} holds {found!r} as {_SCHEMA_VERSION_KEY}, "
            "not a schema version number",
            location=f"{tables.meta.name} key={_SCHEMA_VERSION_KEY}",
        )
    return int(found)


def migrate(
    connection: Connection,
    tables: SqlTables,
    prefix: str,
    *,
    where: str,
) -> tuple[int, int]:
    """Bring the database to the newest schema version; return the versions before and after.

    Runs inside the caller's transaction, so a failed migration leaves nothing behind.

    Raises:
        StoreVersionError: The database was created by a newer chatruntime.
    """
    steps = MIGRATIONS
    current = len(steps)
    found = stored_version(connection, tables)
    if found > current:
        raise _too_new(found, current, tables, where)
    for step in steps[found:]:
        step(connection, prefix)
    if found == 0:
        connection.execute(
            sa.insert(tables.meta).values(key=_SCHEMA_VERSION_KEY, value=str(current))
        )
    elif found < current:
        connection.execute(
            sa.update(tables.meta)
            .where(tables.meta.c.key == _SCHEMA_VERSION_KEY)
            .values(value=str(current))
        )
    return found, current


def check_version(connection: Connection, tables: SqlTables, prefix: str, *, where: str) -> int:
    """The schema version of a database that a read-only store cannot migrate: it must be
    exactly this version's.

    Raises:
        StoreVersionError: The database was created by a newer chatruntime.
        StorageError: It holds no tables of ours, or an older schema that needs upgrading.
        CorruptDataError: The version table holds no usable version.
    """
    current = len(MIGRATIONS)
    found = stored_version(connection, tables)
    if found > current:
        raise _too_new(found, current, tables, where)
    if found == 0:
        raise StorageError(
            f"{where} holds no chatruntime tables (prefix {prefix!r}), and a store open "
            "read-only cannot create them",
            where=where,
        )
    if found < current:
        raise StorageError(
            f"{where} has schema version {found}, which this chatruntime upgrades to "
            f"{current} when it opens the database, but a store open read-only cannot: open "
            "it once where it can be written, or read it with the chatruntime that wrote it",
            where=where,
            found=found,
            supported=current,
        )
    return found


def _too_new(found: int, current: int, tables: VersionTables, where: str) -> StoreVersionError:
    return StoreVersionError(
        f"database schema version {found} is newer than this chatruntime supports "
        f"({current}): upgrade chatruntime ({where}, table {tables.meta.name})",
        found=found,
        supported=current,
        location=tables.meta.name,
    )
