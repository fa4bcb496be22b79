"""Queries of ``SqlStore`` for a session's life beyond turns: counting, expiry, rewinds,
checkpoints and stale leases. Both dialects build their statements from these (SQLite
compiles them to text once; PostgreSQL runs them as they are).

Bound parameters: ``:key`` a session id, ``:user_id``, ``:now`` a time in epoch ms,
``:keep`` a count of items, ``:checkpoint_id``. Limits (``LIMIT :limit``) are left to the
caller, as the listings do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

from ._sql_schema import SqlTables, db_now_ms

__all__ = [
    "CheckpointStatements",
    "count_select",
    "drop_items_from",
    "drop_stale_leases",
    "expired_select",
    "is_live_clause",
]


def is_live_clause(sessions: sa.Table) -> sa.ColumnElement[bool]:
    """Sessions not expired at ``:now``: no expiry, or one later than ``:now``."""
    return sa.or_(sessions.c.expires_at.is_(None), sessions.c.expires_at > sa.bindparam("now"))


def count_select(sessions: sa.Table, *, user: bool, live: bool) -> sa.Select[Any]:
    """How many sessions there are, of ``:user_id`` if ``user``, not expired at ``:now`` if
    ``live``. A user's are counted along the user's listing index."""
    query = sa.select(sa.func.count()).select_from(sessions)
    if user:
        query = query.where(sessions.c.user_id == sa.bindparam("user_id"))
    if live:
        query = query.where(is_live_clause(sessions))
    return query


def expired_select(sessions: sa.Table) -> sa.Select[Any]:
    """Ids of the sessions expired at ``:now``, earliest first: a range scan of the expiry
    index ``(expires_at, id)`` from its start (a NULL expiry is outside the range)."""
    return (
        sa.select(sessions.c.id)
        .where(sessions.c.expires_at <= sa.bindparam("now"))
        .order_by(sessions.c.expires_at, sessions.c.id)
    )


def drop_items_from(tables: SqlTables) -> sa.Delete:
    """Delete the items of session ``:key`` from position ``:keep`` on (a rewind)."""
    items = tables.history_items
    return sa.delete(items).where(
        items.c.session_id == sa.bindparam("key"), items.c.seq >= sa.bindparam("keep")
    )


def drop_stale_leases(tables: SqlTables) -> sa.Delete:
    """Delete the lease rows that ended before ``:now``. Only rows ended by the database
    server's clock too, which decides who holds a lease: a caller whose clock runs ahead of
    the server's never drops a lease its holder still has."""
    leases = tables.session_leases
    return sa.delete(leases).where(
        leases.c.expires_at < sa.bindparam("now"), leases.c.expires_at < db_now_ms()
    )


class CheckpointStatements:
    """The statements on a store's ``checkpoints`` table."""

    def __init__(
        self,
        tables: SqlTables,
        insert: Callable[[sa.Table], SqliteInsert | PostgresInsert],
    ) -> None:
        checkpoints = tables.checkpoints
        key: sa.BindParameter[str] = sa.bindparam("key")
        one = sa.and_(
            checkpoints.c.session_id == key,
            checkpoints.c.id == sa.bindparam("checkpoint_id"),
        )
        upsert = insert(checkpoints)
        self.save = upsert.on_conflict_do_update(
            index_elements=[checkpoints.c.session_id, checkpoints.c.id],
            set_={"created_at": upsert.excluded.created_at, "body": upsert.excluded.body},
        )
        self.get = sa.select(checkpoints.c.body).where(one)
        # Newest first along the index (session_id, created_at, id), walked backwards.
        self.list = (
            sa.select(checkpoints.c.id, checkpoints.c.body)
            .where(checkpoints.c.session_id == key)
            .order_by(checkpoints.c.created_at.desc(), checkpoints.c.id.desc())
        )
        self.delete = sa.delete(checkpoints).where(one)
        self.clear = sa.delete(checkpoints).where(checkpoints.c.session_id == key)
