"""``SqlStore`` on PostgreSQL: SQLAlchemy Core over asyncpg, a pool of connections that waits.

Each call borrows a connection from the engine's pool for its statements only; when all are
in use, a call waits for one up to the pool timeout (then ``StorageError`` says which setting
to raise). A single statement runs in autocommit (no ``BEGIN``/``COMMIT`` round trips); a
read of several statements runs in one ``REPEATABLE READ`` snapshot; a write is one
``READ COMMITTED`` transaction whose conditional ``UPDATE`` locks the session's row, so
concurrent writers of one session take turns and the second finds the revision moved on.

A session write has ``commit_timeout`` seconds from its ``BEGIN`` to the answer to its
``COMMIT`` (see ``_sql_postgres_commit``); a creation with limits first takes a
transaction-scoped advisory lock, so racing creations of every process count one at a time.

Leases are rows (see ``_sql_leases``). Taking one is one statement that also reads the
session's revision; the write that ends the turn deletes it in its own transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy import exc as sa_errors
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
from ._lease import Granted, TokenLeases
from ._paging import Position
from ._protocol import CorruptRecord, CreateLimits, Lease
from ._sql_errors import ErrorMapper
from ._sql_leases import RowLeaseOps, row_leases
from ._sql_lifecycle import (
    CheckpointStatements,
    count_select,
    drop_items_from,
    drop_stale_leases,
    expired_select,
)
from ._sql_listing import listing_select, page_of_rows
from ._sql_postgres_commit import bounded_write
from ._sql_rows import HEADER_COLUMNS, RowReader, checkpoint_values, header_values
from ._sql_schema import SqlTables, db_now_ms

__all__ = ["PostgresBackend"]

_SCAN_SESSIONS: Final = 100
"""Sessions a scan reads per transaction at most..."""
_SCAN_ITEMS: Final = 10_000
"""...and items, unless one session alone has more."""

_FOREIGN_KEY_VIOLATION: Final = "23503"

_Kind = Literal["snapshot", "single"]


@dataclass
class PostgresBackend:
    """The session and agent calls of ``SqlStore`` on PostgreSQL (see the module docstring).

    Args:
        tables: The store's tables.
        errors: Maps failures to ``StorageError``.
        engine: The store's engine.
        commit_timeout: Seconds a session write may take from its ``BEGIN`` to the end of
            its ``COMMIT`` (see ``_sql_postgres_commit``).
    """

    tables: SqlTables
    errors: ErrorMapper
    engine: AsyncEngine
    commit_timeout: float = 5.0
    _rows: RowReader = field(init=False)
    _engines: dict[_Kind, AsyncEngine] = field(init=False)
    _leases: TokenLeases = field(init=False)
    _checkpoints: CheckpointStatements = field(init=False)
    _creation_lock: int = field(init=False)

    def __post_init__(self) -> None:
        self._rows = RowReader(self.tables)
        self._checkpoints = CheckpointStatements(self.tables, postgresql.insert)
        self._creation_lock = advisory_key(f"chatruntime.create:{self.tables.sessions.name}")
        # One for the store's life: it remembers lease rows the server did not take back.
        self._leases = row_leases(
            RowLeaseOps(
                take=self._take_lease,
                renew=self._renew_lease,
                give_back=self._give_back_lease,
                failures=(StorageError, RuntimeError),
            )
        )
        self._engines = {
            # One snapshot for the header and the items read after it.
            "snapshot": self.engine.execution_options(isolation_level="REPEATABLE READ"),
            # A single statement needs no BEGIN and COMMIT round trips around it.
            "single": self.engine.execution_options(isolation_level="AUTOCOMMIT"),
        }

    async def close(self) -> None:
        """Make a last attempt to give back lease rows the server did not take back (what
        is left ends by its ttl); connections need nothing: calls borrow them only while
        they run."""
        await self._leases.close()

    # -- agents -----------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        agents = self.tables.agents
        statement = postgresql.insert(agents).values(
            id=spec.id, spec=spec.to_wire(), created_at=spec.created_at
        )
        statement = statement.on_conflict_do_update(
            index_elements=[agents.c.id],
            set_={"spec": statement.excluded.spec, "created_at": statement.excluded.created_at},
        )
        async with self._transaction(f"saving agent {spec.id}", "single") as conn:
            await conn.execute(statement)

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        agents = self.tables.agents
        async with self._transaction(f"reading agent {agent_id}", "single") as conn:
            raw = (
                await conn.execute(sa.select(agents.c.spec).where(agents.c.id == agent_id))
            ).scalar_one_or_none()
        return None if raw is None else self._rows.agent(agent_id, raw)

    async def list_agents(self) -> list[AgentSpec]:
        agents = self.tables.agents
        query = sa.select(agents.c.id, agents.c.spec).order_by(agents.c.created_at, agents.c.id)
        async with self._transaction("listing agents", "single") as conn:
            rows = (await conn.execute(query)).all()
        return [self._rows.agent(agent_id, raw) for agent_id, raw in rows]

    async def delete_agent(self, agent_id: str) -> bool:
        agents = self.tables.agents
        async with self._transaction(f"deleting agent {agent_id}", "single") as conn:
            deleted = await conn.execute(sa.delete(agents).where(agents.c.id == agent_id))
        return deleted.rowcount == 1

    # -- sessions ---------------------------------------------------------------------------

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        sessions, items = self.tables.sessions, self.tables.history_items
        after = ""
        while True:
            async with self._transaction("scanning sessions", "snapshot") as conn:
                listed = (
                    await conn.execute(
                        sa.select(sessions.c.id, sessions.c.item_count)
                        .where(sessions.c.id > after)
                        .order_by(sessions.c.id)
                        .limit(_SCAN_SESSIONS)
                    )
                ).all()
                chosen = _within_budget(listed)
                if not chosen:
                    return
                headers = (
                    await conn.execute(
                        self._header_query()
                        .where(sessions.c.id.in_(chosen))
                        .order_by(sessions.c.id)
                    )
                ).all()
                item_rows = (
                    await conn.execute(
                        sa.select(items.c.session_id, items.c.seq, _item_text(items))
                        .where(items.c.session_id.in_(chosen))
                        .order_by(items.c.session_id, items.c.seq)
                    )
                ).all()
            histories: dict[str, list[tuple[int, str]]] = {}
            for session_id, seq, text in item_rows:
                histories.setdefault(session_id, []).append((seq, text))
            for row in headers:
                mapping = row._mapping
                yield self._rows.session(mapping, histories.get(mapping["id"], []))
            after = chosen[-1]

    async def count_sessions(self, *, user_id: str | None, live_at: int | None) -> int:
        query = count_select(
            self.tables.sessions, user=user_id is not None, live=live_at is not None
        )
        params = {"user_id": user_id, "now": live_at}
        async with self._transaction("counting sessions", "single") as conn:
            return int((await conn.execute(query, params)).scalar_one())

    async def expired_sessions(self, now: int, *, limit: int) -> list[str]:
        query = expired_select(self.tables.sessions).limit(sa.bindparam("limit"))
        async with self._transaction("finding expired sessions", "single") as conn:
            rows = (await conn.execute(query, {"now": now, "limit": limit})).scalars().all()
        return [str(session_id) for session_id in rows]

    async def list_sessions(
        self,
        *,
        agent_id: str | None,
        user_id: str | None,
        status: SessionStatus | None,
        after: Position | None,
        limit: int,
    ) -> SessionPage:
        query = listing_select(
            self.tables.sessions,
            agent=agent_id is not None,
            user=user_id is not None,
            status=status is not None,
            after=after is not None,
            sqlite=False,
        ).limit(sa.bindparam("limit"))
        params: dict[str, Any] = {"limit": limit + 1}
        if agent_id is not None:
            params["agent_id"] = agent_id
        if user_id is not None:
            params["user_id"] = user_id
        if status is not None:
            params["status"] = status
        if after is not None:
            params["at"], params["after_id"] = after
        async with self._transaction("listing sessions", "single") as conn:
            rows = (await conn.execute(query, params)).mappings().all()
        return page_of_rows(rows, limit, self._rows)

    async def get_session(self, session_id: str, *, last: int | None) -> ChatSession | None:
        sessions, items = self.tables.sessions, self.tables.history_items
        async with self._transaction(f"reading session {session_id}", "snapshot") as conn:
            row = (
                await conn.execute(self._header_query().where(sessions.c.id == session_id))
            ).one_or_none()
            if row is None:
                return None
            history: Sequence[Any] = []
            if last is None or last > 0:
                query = sa.select(items.c.seq, _item_text(items)).where(
                    items.c.session_id == session_id
                )
                if last is None:
                    query = query.order_by(items.c.seq)
                else:
                    query = query.order_by(items.c.seq.desc()).limit(last)
                history = (await conn.execute(query)).all()
        pairs = [(seq, text) for seq, text in history]
        if last is not None:
            pairs.reverse()
        outcome = self._rows.session(row._mapping, pairs)
        if isinstance(outcome, CorruptRecord):
            raise outcome.error()
        return outcome

    async def get_revision(self, session_id: str) -> int | None:
        sessions = self.tables.sessions
        query = sa.select(sessions.c.revision).where(sessions.c.id == session_id)
        async with self._transaction(f"reading session {session_id}", "single") as conn:
            revision = (await conn.execute(query)).scalar_one_or_none()
        return None if revision is None else int(revision)

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
        sessions, items = self.tables.sessions, self.tables.history_items
        session_id = header.id
        values = header_values(header)
        added = len(new_items)
        releasing = (
            lease is not None
            and lease.session_id == session_id
            and bool(lease.token)
            and not lease.released
        )

        async def write(conn: AsyncConnection) -> None:
            if releasing:
                # The lease row before the session's row, in the order the statement taking
                # a lease locks them: the other order deadlocks with a follower's take.
                assert lease is not None
                leases = self.tables.session_leases
                await conn.execute(
                    sa.delete(leases).where(
                        leases.c.session_id == session_id, leases.c.token == lease.token
                    )
                )
            if expected_revision is None:
                if limits is not None:
                    await self._check_limits(conn, limits, header)
                created = await conn.execute(
                    postgresql.insert(sessions)
                    .values({**values, "item_count": added})
                    .on_conflict_do_nothing(index_elements=[sessions.c.id])
                    .returning(sessions.c.id)
                )
                if created.scalar_one_or_none() is None:
                    raise session_exists(session_id)
                first = 0
            else:
                changes = {name: value for name, value in values.items() if name != "id"}
                update = sa.update(sessions).where(
                    sessions.c.id == session_id,
                    sessions.c.revision == expected_revision,
                    sessions.c.agent_id == header.agent_id,
                )
                if keep is None:
                    update = update.values({**changes, "item_count": sessions.c.item_count + added})
                else:
                    # A rewind: the first `keep` items stay, if there are that many.
                    update = update.where(sessions.c.item_count >= keep).values(
                        {**changes, "item_count": keep + added}
                    )
                updated = await conn.execute(update.returning(sessions.c.item_count))
                count = updated.scalar_one_or_none()
                if count is None:
                    await self._refuse(conn, header, expected_revision, keep)
                first = int(count) - added
                if keep is not None:
                    await conn.execute(
                        drop_items_from(self.tables), {"key": session_id, "keep": keep}
                    )
            if new_items:
                await conn.execute(
                    sa.insert(items),
                    [
                        {
                            "session_id": session_id,
                            "seq": first + offset,
                            "type": item.type,
                            "item": item.to_wire(),
                        }
                        for offset, item in enumerate(new_items)
                    ],
                )

        await bounded_write(
            self.engine, self.errors, f"writing session {session_id}", self.commit_timeout, write
        )
        if releasing:
            assert lease is not None
            lease.released = True

    async def delete_session(self, session_id: str) -> bool:
        sessions = self.tables.sessions
        async with self._transaction(f"deleting session {session_id}", "single") as conn:
            # The foreign keys cascade to the item and checkpoint rows.
            deleted = await conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))
        return deleted.rowcount == 1

    # -- checkpoints ------------------------------------------------------------------------

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        doing = f"saving checkpoint {checkpoint.id} of session {checkpoint.session_id}"
        async with self._transaction(doing, "single") as conn:
            try:
                await conn.execute(self._checkpoints.save, checkpoint_values(checkpoint))
            except sa_errors.IntegrityError as error:
                if getattr(error.orig, "sqlstate", None) != _FOREIGN_KEY_VIOLATION:
                    raise
                raise session_missing(checkpoint.session_id) from error

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        params = {"key": session_id, "checkpoint_id": checkpoint_id}
        doing = f"reading checkpoint {checkpoint_id} of session {session_id}"
        async with self._transaction(doing, "single") as conn:
            body = (await conn.execute(self._checkpoints.get, params)).scalar_one_or_none()
        return None if body is None else self._rows.checkpoint(session_id, checkpoint_id, body)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        doing = f"listing the checkpoints of session {session_id}"
        async with self._transaction(doing, "single") as conn:
            rows = (await conn.execute(self._checkpoints.list, {"key": session_id})).all()
        return [self._rows.checkpoint(session_id, str(found), body) for found, body in rows]

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        params = {"key": session_id, "checkpoint_id": checkpoint_id}
        doing = f"deleting checkpoint {checkpoint_id} of session {session_id}"
        async with self._transaction(doing, "single") as conn:
            return (await conn.execute(self._checkpoints.delete, params)).rowcount == 1

    async def clear_checkpoints(self, session_id: str) -> int:
        doing = f"deleting the checkpoints of session {session_id}"
        async with self._transaction(doing, "single") as conn:
            return int((await conn.execute(self._checkpoints.clear, {"key": session_id})).rowcount)

    # -- leases -----------------------------------------------------------------------------

    def lease(
        self, session_id: str, *, ttl: float, timeout: float
    ) -> AbstractAsyncContextManager[Lease]:
        return self._leases.hold(session_id, ttl=ttl, timeout=timeout)

    async def drop_stale_leases(self, now: int) -> int:
        async with self._transaction("dropping stale leases", "single") as conn:
            return (await conn.execute(drop_stale_leases(self.tables), {"now": now})).rowcount

    async def _take_lease(self, session_id: str, token: str, ttl_ms: int) -> Granted:
        leases, sessions = self.tables.session_leases, self.tables.sessions
        take = postgresql.insert(leases).values(
            session_id=session_id, token=token, expires_at=db_now_ms() + ttl_ms
        )
        taken = (
            take.on_conflict_do_update(
                index_elements=[leases.c.session_id],
                set_={"token": take.excluded.token, "expires_at": take.excluded.expires_at},
                where=leases.c.expires_at < db_now_ms(),
            )
            .returning(leases.c.token)
            .cte("taken")
        )
        # One statement takes the lease and reads the revision the turn will build on. FOR
        # SHARE: the previous holder's write may commit while this statement waits for its
        # lease row; locking reads the revision that write committed, not the one of this
        # statement's snapshot (which a plain read would return, and the turn then conflict).
        revision = (
            sa.select(sessions.c.revision)
            .where(sessions.c.id == session_id)
            .with_for_update(read=True)
            .scalar_subquery()
        )
        statement = sa.select(sa.select(taken.c.token).scalar_subquery(), revision)
        async with self._transaction(f"taking the lease of {session_id}", "single") as conn:
            holder, revision = (await conn.execute(statement)).one()
        return Granted(
            granted=holder == token,
            revision_known=True,
            revision=None if revision is None else int(revision),
        )

    async def _renew_lease(self, session_id: str, token: str, ttl_ms: int) -> bool:
        leases = self.tables.session_leases
        renew = (
            sa.update(leases)
            .where(leases.c.session_id == session_id, leases.c.token == token)
            .values(expires_at=db_now_ms() + ttl_ms)
        )
        async with self._transaction("renewing a lease", "single") as conn:
            return (await conn.execute(renew)).rowcount == 1

    async def _give_back_lease(self, session_id: str, token: str) -> None:
        leases = self.tables.session_leases
        async with self._transaction("releasing a lease", "single") as conn:
            await conn.execute(
                sa.delete(leases).where(leases.c.session_id == session_id, leases.c.token == token)
            )

    # -- helpers ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, doing: str, kind: _Kind) -> AsyncIterator[AsyncConnection]:
        with self.errors.mapped(doing):
            async with self._engines[kind].begin() as conn:
                yield conn

    def _header_query(self) -> sa.Select[Any]:
        sessions = self.tables.sessions
        return sa.select(*(sessions.c[name] for name in HEADER_COLUMNS))

    async def _check_limits(
        self, conn: AsyncConnection, limits: CreateLimits, header: SessionHeader
    ) -> None:
        """Count the live sessions under the store's creation lock, held to the end of the
        transaction: a racing creation in any process counts after this one commits."""
        sessions = self.tables.sessions
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self._creation_lock)))
        exists = sa.select(sessions.c.id).where(sessions.c.id == header.id)
        if (await conn.execute(exists)).first() is not None:
            raise session_exists(header.id)
        now = {"now": limits.now}
        total = (await conn.execute(count_select(sessions, user=False, live=True), now)).scalar()
        of_user = 0
        if header.user_id is not None:
            of_user = (
                await conn.execute(
                    count_select(sessions, user=True, live=True),
                    {**now, "user_id": header.user_id},
                )
            ).scalar()
        limit_exceeded(limits, header, int(total or 0), int(of_user or 0))

    async def _refuse(
        self,
        conn: AsyncConnection,
        header: SessionHeader,
        expected_revision: int,
        keep: int | None,
    ) -> None:
        """Raise why an update matched no row."""
        sessions = self.tables.sessions
        stored: RowMapping | None = (
            (
                await conn.execute(
                    sa.select(
                        sessions.c.revision, sessions.c.agent_id, sessions.c.item_count
                    ).where(sessions.c.id == header.id)
                )
            )
            .mappings()
            .one_or_none()
        )
        if stored is None:
            raise session_missing(header.id)
        if stored["revision"] != expected_revision:
            raise stale_revision(header.id, int(stored["revision"]), expected_revision)
        check_same_agent(header, str(stored["agent_id"]))
        check_keep(header.id, keep, int(stored["item_count"]))
        raise AssertionError("an update matched no row, yet the row matches")  # pragma: no cover


def advisory_key(name: str) -> int:
    """The 64-bit key of a PostgreSQL advisory lock named ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _item_text(items: sa.Table) -> sa.ColumnElement[str]:
    # The JSON text as stored: pydantic parses and validates it in one step.
    return sa.cast(items.c.item, sa.Text).label("item")


def _within_budget(listed: Sequence[Any]) -> list[str]:
    chosen: list[str] = []
    budget = _SCAN_ITEMS
    for session_id, item_count in listed:
        if chosen and item_count > budget:
            break
        budget -= item_count
        chosen.append(session_id)
    return chosen
