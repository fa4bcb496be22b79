"""Session listings of ``SqlStore``: the query, served by an index, and the page it makes.

Every listing reads at most ``limit + 1`` rows along one of the ``(…, last_activity, id)``
indexes, walked backwards: its cost depends on the page, not on how many sessions exist.
The cursor continues below the last row by keyset, in the order and the cursor format of
``stores._paging``, so cursors are the same as every other store's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ..models import SessionHeader, SessionPage
from ._paging import encode_cursor
from ._protocol import CorruptRecord
from ._sql_rows import HEADER_COLUMNS, RowReader

logger = logging.getLogger("chatruntime.stores.sql")


def listing_select(
    sessions: sa.Table,
    *,
    agent: bool,
    user: bool,
    status: bool,
    after: bool,
    sqlite: bool,
) -> sa.Select[Any]:
    """The header columns of the sessions a listing shows, newest activity first, without
    its ``LIMIT``.

    Takes the bound parameters ``:agent_id``, ``:user_id``, ``:status`` for the filters it
    has, and ``:at``, ``:after_id`` (the cursor's position) when ``after``.
    """
    query = sa.select(*(sessions.c[name] for name in HEADER_COLUMNS))
    if agent:
        query = query.where(sessions.c.agent_id == sa.bindparam("agent_id"))
    if user:
        query = query.where(sessions.c.user_id == sa.bindparam("user_id"))
    if status:
        column: sa.ColumnElement[Any] = sessions.c.status
        if sqlite and (agent or user):
            # SQLite's planner, without statistics, may pick the status index, and "active"
            # matches most sessions; a unary + keeps it on the agent's or user's index.
            column = sa.literal_column(f"+{sessions.name}.status")
        query = query.where(column == sa.bindparam("status"))
    if after:
        # The first condition bounds the index range; the second settles equal times.
        at: sa.BindParameter[int] = sa.bindparam("at")
        query = query.where(
            sessions.c.last_activity <= at,
            sa.or_(sessions.c.last_activity < at, sessions.c.id < sa.bindparam("after_id")),
        )
    return query.order_by(sessions.c.last_activity.desc(), sessions.c.id.desc())


def page_of_rows(rows: Sequence[Mapping[str, Any]], limit: int, reader: RowReader) -> SessionPage:
    """The page of a listing that read up to ``limit + 1`` rows.

    A row that is not a valid header is left out of the page (and logged): the listing goes
    on, and reading that session reports what is wrong with it.
    """
    headers: list[SessionHeader] = []
    for row in rows[:limit]:
        header = reader.header(row)
        if isinstance(header, CorruptRecord):
            logger.warning("listing leaves out session %s: %s", header.session_id, header.reason)
            continue
        headers.append(header)
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor((last["last_activity"], str(last["id"])))
    return SessionPage(sessions=headers, next_cursor=next_cursor)
