"""What ``SqlStore`` does beyond the contract: its rows, its migrations, its errors, its leases.

Each test runs on SQLite (a file in ``tmp_path``) and on PostgreSQL (a fresh schema on the
shared test server) unless it is about one of them.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.stapled import MultiListener
from sqlalchemy.ext.asyncio import create_async_engine

from chatruntime.models import (
    BusyError,
    ChatSession,
    Checkpoint,
    ConflictError,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    MessageItem,
    ReasoningItem,
    SessionContext,
    SessionHeader,
    StorageError,
    StoreVersionError,
    TurnKey,
    new_id,
)
from chatruntime.stores import (
    CorruptRecord,
    CreateLimits,
    SqlStore,
    _sql,
    _sql_postgres,
    _sql_schema,
    load_all,
)
from support.factories import T0, agent_spec, bumped, header, turn_items
from support.services import wrong_password_url
from support.stores import postgres_schema, postgres_search_path

pytestmark = pytest.mark.anyio

PREFIX = "chatruntime_"


@dataclass
class Database:
    """An empty database (SQLite file or PostgreSQL schema) that stores can be opened on."""

    kind: str
    url: str
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def store(self, **options: Any) -> SqlStore:
        return SqlStore(self.url, engine_kwargs=self.engine_kwargs or None, **options)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        async with postgres_schema(url) as schema:
            yield Database("postgres", url, postgres_search_path(schema))


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlStore]:
    opened = database.store()
    await opened.initialize()
    try:
        yield opened
    finally:
        await opened.close()


async def rows(store: SqlStore, statement: str, **params: Any) -> list[dict[str, Any]]:
    """Run raw SQL on the store's own database; ``{p}`` stands for the table prefix."""
    assert store.engine is not None
    async with store.engine.begin() as conn:
        result = await conn.execute(sa.text(statement.format(p=store.table_prefix)), params)
        return [dict(row._mapping) for row in result] if result.returns_rows else []


def as_json(value: Any) -> Any:
    """A JSON column as read by raw SQL: text on SQLite, already decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


async def table_names(store: SqlStore) -> set[str]:
    assert store.engine is not None
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


TURN_KEY = {"key": "req-1 ✓", "itemId": "item-1", "itemCount": 4, "createdAt": T0}
"""A turn key in its wire form, as the ``turn_keys`` column stores it."""


def checkpoint_of(h: SessionHeader, **overrides: Any) -> Checkpoint:
    values: dict[str, Any] = {
        "id": new_id(),
        "session_id": h.id,
        "created_at": T0,
        "header": h,
        "item_count": 0,
        "shared_count": 0,
    }
    values.update(overrides)
    return Checkpoint(**values)


# -- rows on disk ---------------------------------------------------------------------------


async def test_a_created_session_is_one_row_plus_one_row_per_item(store: SqlStore) -> None:
    h = header(
        user_id="user-1",
        metadata={"topic": "weather"},
        context=SessionContext(total_messages=2, total_tokens=30, last_activity=1_000),
    )
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)

    [session] = await rows(store, "SELECT * FROM {p}sessions")
    json_columns = ("metadata", "state", "turn_keys")
    assert {k: v for k, v in session.items() if k not in json_columns} == {
        "id": h.id,
        "agent_id": h.agent_id,
        "user_id": "user-1",
        "name": "First chat",
        "status": "active",
        "created_at": h.created_at,
        "updated_at": h.updated_at,
        "last_activity": 1_000,
        "revision": 0,
        "schema_version": 1,
        "total_tokens": 30,
        "total_messages": 2,
        "total_function_calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "requests": 0,
        "total_turns": 0,
        "total_handoffs": 0,
        "last_agent_id": None,
        "expires_at": None,
        "item_count": 4,
    }
    assert as_json(session["metadata"]) == {"topic": "weather"}
    assert as_json(session["state"]) == {}
    assert as_json(session["turn_keys"]) == []
    stored = await rows(store, "SELECT * FROM {p}history_items ORDER BY seq")
    assert [(r["session_id"], r["seq"], r["type"]) for r in stored] == [
        (h.id, 0, "message"),
        (h.id, 1, "function_call"),
        (h.id, 2, "function_call_result"),
        (h.id, 3, "message"),
    ]
    assert [as_json(r["item"]) for r in stored] == [item.to_wire() for item in items]


async def test_a_turn_inserts_rows_after_the_last_and_never_rewrites_earlier_ones(
    store: SqlStore,
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    # Change a stored row behind the store's back: a store that rewrote the history on
    # each turn would put the original text back.
    edited = MessageItem.model_validate(as_json((await first_item(store, h.id))["item"]))
    edited.content = "edited in place"
    await rows(
        store,
        "UPDATE {p}history_items SET item = :item WHERE session_id = :id AND seq = 0",
        item=json.dumps(edited.to_wire()),
        id=h.id,
    )
    h1 = bumped(h, context=SessionContext(total_messages=4, last_activity=h.updated_at + 9))
    second = turn_items(2)
    await store.write_session(h1, second, expected_revision=0)

    stored = await rows(store, "SELECT seq, item FROM {p}history_items ORDER BY seq")
    assert [r["seq"] for r in stored] == list(range(8))
    assert as_json(stored[0]["item"])["content"] == "edited in place"
    assert [as_json(r["item"]) for r in stored[4:]] == [item.to_wire() for item in second]
    [session] = await rows(
        store, "SELECT revision, total_messages, last_activity, item_count FROM {p}sessions"
    )
    assert session == {
        "revision": 1,
        "total_messages": 4,
        "last_activity": h.updated_at + 9,
        "item_count": 8,
    }


async def first_item(store: SqlStore, session_id: str) -> dict[str, Any]:
    [row] = await rows(
        store,
        "SELECT item FROM {p}history_items WHERE session_id = :id AND seq = 0",
        id=session_id,
    )
    return row


async def test_a_write_that_fails_halfway_leaves_nothing_behind(
    database: Database, store: SqlStore
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    before = await store.get_session(h.id)
    if database.kind == "sqlite":
        await rows(
            store,
            "CREATE TRIGGER refuse_reasoning BEFORE INSERT ON {p}history_items "
            "WHEN NEW.type = 'reasoning' BEGIN SELECT RAISE(ABORT, 'reasoning refused'); END",
        )
    else:
        await rows(
            store,
            "ALTER TABLE {p}history_items "
            "ADD CONSTRAINT refuse_reasoning CHECK (type <> 'reasoning')",
        )
    turn = [*turn_items(2), ReasoningItem(summary=[])]

    with pytest.raises(StorageError) as caught:
        await store.write_session(bumped(h, name="Half done"), turn, expected_revision=0)

    assert f"while writing session {h.id}" in caught.value.message
    assert "question 2" not in caught.value.message  # no statement parameters in messages
    assert await store.get_session(h.id) == before
    assert await rows(store, "SELECT count(*) AS n FROM {p}history_items") == [{"n": 4}]


async def test_concurrent_writers_of_one_revision_get_one_success_and_one_conflict(
    database: Database, store: SqlStore
) -> None:
    other = database.store()
    await other.initialize()
    h = header()
    turns = {n: turn_items(n) for n in (1, 2, 3)}
    await store.write_session(h, turns[1], expected_revision=None)
    won: list[int] = []
    lost: list[ConflictError] = []

    async def write(writer: SqlStore, n: int) -> None:
        try:
            await writer.write_session(bumped(h, name=f"writer {n}"), turns[n], expected_revision=0)
            won.append(n)
        except ConflictError as error:
            lost.append(error)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(write, store, 2)
            tg.start_soon(write, other, 3)
    finally:
        await other.close()

    assert len(won) == 1
    assert [e.details for e in lost] == [
        {"session_id": h.id, "stored_revision": 1, "expected_revision": 0}
    ]
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert loaded.name == f"writer {won[0]}"
    assert loaded.history == turns[1] + turns[won[0]]


async def test_deleting_a_session_deletes_its_item_rows(store: SqlStore) -> None:
    kept, gone = header(), header()
    await store.write_session(kept, turn_items(1), expected_revision=None)
    await store.write_session(gone, turn_items(2), expected_revision=None)
    await store.delete_session(gone.id)
    assert await rows(store, "SELECT DISTINCT session_id FROM {p}history_items") == [
        {"session_id": kept.id}
    ]


async def test_the_foreign_key_cascades_a_session_row_deleted_by_hand(store: SqlStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await rows(store, "DELETE FROM {p}sessions WHERE id = :id", id=h.id)
    assert await rows(store, "SELECT count(*) AS n FROM {p}history_items") == [{"n": 0}]


async def test_agents_are_rows_with_their_spec_as_json(store: SqlStore) -> None:
    spec = agent_spec(created_at=5)
    await store.save_agent(spec)
    [row] = await rows(store, "SELECT * FROM {p}agents")
    assert row["id"] == spec.id
    assert row["created_at"] == 5
    assert as_json(row["spec"]) == spec.to_wire()


# -- schema and migrations ------------------------------------------------------------------


SESSION_INDEXES = {
    (f"{PREFIX}sessions_recent", ("last_activity", "id")),
    (f"{PREFIX}sessions_agent_recent", ("agent_id", "last_activity", "id")),
    (f"{PREFIX}sessions_user_recent", ("user_id", "last_activity", "id")),
    (f"{PREFIX}sessions_status_recent", ("status", "last_activity", "id")),
    (f"{PREFIX}sessions_expiry", ("expires_at", "id")),
}
CURRENT_VERSION = "3"
TABLES = {
    f"{PREFIX}meta",
    f"{PREFIX}agents",
    f"{PREFIX}sessions",
    f"{PREFIX}history_items",
    f"{PREFIX}session_leases",
    f"{PREFIX}checkpoints",
}


CHECKPOINT_INDEXES = {(f"{PREFIX}checkpoints_recent", ("session_id", "created_at", "id"))}


async def indexes_of(store: SqlStore, table: str) -> set[tuple[str, tuple[str, ...]]]:
    assert store.engine is not None
    async with store.engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes(table))
    return {(i["name"], tuple(i["column_names"])) for i in indexes}


async def session_indexes(store: SqlStore) -> set[tuple[str, tuple[str, ...]]]:
    return await indexes_of(store, f"{PREFIX}sessions")


async def checkpoint_indexes(store: SqlStore) -> set[tuple[str, tuple[str, ...]]]:
    return await indexes_of(store, f"{PREFIX}checkpoints")


async def test_initialize_creates_the_tables_and_indexes_and_records_version_3(
    store: SqlStore,
) -> None:
    await store.initialize()  # again: nothing changes
    assert await table_names(store) == TABLES
    assert await rows(store, "SELECT * FROM {p}meta") == [
        {"key": "schema_version", "value": CURRENT_VERSION}
    ]
    assert await session_indexes(store) == SESSION_INDEXES
    assert await checkpoint_indexes(store) == CHECKPOINT_INDEXES


async def write_old_database(
    database: Database, version: int, sessions: list[tuple[SessionHeader, list[HistoryItem]]]
) -> None:
    """A database as schema ``version`` (1: chatruntime 0.1, 2: 0.2) left it, holding
    ``sessions``."""
    engine = create_async_engine(database.url, **database.engine_kwargs)
    old = {1: _sql_schema._v1_tables, 2: _sql_schema._v2_tables}[version](PREFIX)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(old.metadata.create_all)
            await conn.execute(sa.insert(old.meta).values(key="schema_version", value=str(version)))
            for h, items in sessions:
                row = h.model_dump(mode="json", exclude={"context", "turn_keys"})
                row.update(h.context.model_dump(mode="json"))
                if version >= 2:
                    row["item_count"] = len(items)
                await conn.execute(sa.insert(old.sessions).values(row))
                for seq, item in enumerate(items):
                    await conn.execute(
                        sa.insert(old.history_items).values(
                            session_id=h.id, seq=seq, type=item.type, item=item.to_wire()
                        )
                    )
    finally:
        await engine.dispose()


async def test_a_version_1_database_is_upgraded_in_place_and_reads_as_before(
    database: Database,
) -> None:
    talked = header(context=SessionContext(last_activity=T0 + 1))
    quiet = header(user_id="u", context=SessionContext(last_activity=T0 + 2))
    said = turn_items(1) + turn_items(2)
    await write_old_database(database, 1, [(talked, said), (quiet, [])])
    store = database.store()
    await store.initialize()
    try:
        assert await rows(store, "SELECT value FROM {p}meta") == [{"value": CURRENT_VERSION}]
        # Backfilled from the item rows: the next item of each session goes after its last.
        assert await rows(store, "SELECT id, item_count FROM {p}sessions ORDER BY item_count") == [
            {"id": quiet.id, "item_count": 0},
            {"id": talked.id, "item_count": 8},
        ]
        assert await session_indexes(store) == SESSION_INDEXES
        assert await store.get_session(talked.id) == ChatSession.from_parts(talked, said)
        assert (await store.list_sessions()).sessions == [quiet, talked]
        assert [s.id for s in (await store.list_sessions(user_id="u")).sessions] == [quiet.id]

        third = turn_items(3)
        await store.write_session(bumped(talked), third, expected_revision=0)
        stored = await rows(
            store,
            "SELECT seq FROM {p}history_items WHERE session_id = :id ORDER BY seq",
            id=talked.id,
        )
        assert [r["seq"] for r in stored] == list(range(12))
        tail = await store.get_session(talked.id, last=4)
        assert tail is not None
        assert tail.history == third
    finally:
        await store.close()


async def test_a_version_2_database_is_upgraded_in_place_with_expiry_index_and_checkpoints(
    database: Database,
) -> None:
    expiring = header(
        user_id="u",
        expires_at=T0 + 5,
        state={"agent": {"memory": ["likes sun"]}},
        context=SessionContext(last_activity=T0 + 1),
    )
    lasting = header(context=SessionContext(last_activity=T0 + 2))
    said = turn_items(1)
    await write_old_database(database, 2, [(expiring, said), (lasting, [])])
    store = database.store()
    await store.initialize()
    try:
        assert await rows(store, "SELECT value FROM {p}meta") == [{"value": CURRENT_VERSION}]
        assert await table_names(store) == TABLES
        assert await session_indexes(store) == SESSION_INDEXES
        assert await checkpoint_indexes(store) == CHECKPOINT_INDEXES
        # Existing sessions have no idempotency keys; everything else reads as before.
        migrated = await rows(store, "SELECT turn_keys FROM {p}sessions")
        assert [as_json(row["turn_keys"]) for row in migrated] == [[], []]
        assert await store.get_session(expiring.id) == ChatSession.from_parts(expiring, said)
        assert (await store.list_sessions()).sessions == [lasting, expiring]
        assert await store.expired_sessions(T0 + 5) == [expiring.id]
        assert await store.count_sessions(live_at=T0 + 5) == 1

        keyed = bumped(expiring, turn_keys=[TurnKey.model_validate(TURN_KEY)])
        second = turn_items(2)
        await store.write_session(keyed, second, expected_revision=0)
        assert await store.get_session(expiring.id) == ChatSession.from_parts(keyed, said + second)
        saved = checkpoint_of(keyed, item_count=8, shared_count=8)
        await store.save_checkpoint(saved)
        assert await store.list_checkpoints(expiring.id) == [saved]
    finally:
        await store.close()


async def test_a_table_prefix_keeps_two_stores_apart_in_one_database(
    database: Database, store: SqlStore
) -> None:
    other = database.store(table_prefix="app_")
    await other.initialize()
    try:
        await other.write_session(header(), [], expected_revision=None)
        assert {name for name in await table_names(store) if name.startswith("app_")} == {
            "app_meta",
            "app_agents",
            "app_sessions",
            "app_history_items",
            "app_session_leases",
            "app_checkpoints",
        }
        assert (await load_all(store)).sessions == []
        assert len((await load_all(other)).sessions) == 1
    finally:
        await other.close()


async def test_an_older_database_is_upgraded_by_the_missing_migrations_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = database.store()
    await old.initialize()
    h, items = header(), turn_items(1)
    await old.write_session(h, items, expected_revision=None)
    await old.close()
    ran: list[str] = []

    def add_marker_table(connection: sa.Connection, prefix: str) -> None:
        ran.append(prefix)
        connection.exec_driver_sql(f"CREATE TABLE {prefix}marker (id INTEGER PRIMARY KEY)")

    monkeypatch.setattr(_sql_schema, "MIGRATIONS", (*_sql_schema.MIGRATIONS, add_marker_table))
    new = database.store()
    try:
        await new.initialize()
        await new.initialize()
        assert ran == [PREFIX]
        assert await rows(new, "SELECT value FROM {p}meta") == [{"value": "4"}]
        assert await rows(new, "SELECT count(*) AS n FROM {p}marker") == [{"n": 0}]
        assert await new.get_session(h.id) == ChatSession.from_parts(h, items)
    finally:
        await new.close()


async def test_a_failed_migration_leaves_the_database_at_its_old_version(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = database.store()
    await old.initialize()
    await old.close()

    def broken(connection: sa.Connection, prefix: str) -> None:
        connection.exec_driver_sql(f"CREATE TABLE {prefix}half_done (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("SELECT * FROM no_such_table")

    monkeypatch.setattr(_sql_schema, "MIGRATIONS", (*_sql_schema.MIGRATIONS, broken))
    new = database.store()
    try:
        with pytest.raises(StorageError) as caught:
            await new.initialize()
        assert "failed while creating or upgrading the tables" in caught.value.message
        assert "no_such_table" in caught.value.message
        monkeypatch.undo()
        await new.initialize()
        assert await rows(new, "SELECT value FROM {p}meta") == [{"value": CURRENT_VERSION}]
        assert f"{PREFIX}half_done" not in await table_names(new)
    finally:
        await new.close()


async def test_a_database_of_a_newer_version_is_refused(
    store: SqlStore, database: Database
) -> None:
    await rows(store, "UPDATE {p}meta SET value = '4' WHERE key = 'schema_version'")
    newer = database.store()
    try:
        with pytest.raises(StoreVersionError) as caught:
            await newer.initialize()
    finally:
        await newer.close()
    assert caught.value.message.startswith(
        "database schema version 4 is newer than this chatruntime supports (3): "
        "upgrade chatruntime ("
    )
    assert caught.value.details == {"found": 4, "supported": 3, "location": f"{PREFIX}meta"}


async def test_a_version_that_is_not_a_number_is_corrupt(
    store: SqlStore, database: Database
) -> None:
    await rows(store, "UPDATE {p}meta SET value = 'two' WHERE key = 'schema_version'")
    damaged = database.store()
    try:
        with pytest.raises(CorruptDataError, match="holds 'two' as schema_version"):
            await damaged.initialize()
    finally:
        await damaged.close()


async def test_concurrent_initialize_of_a_new_database_creates_it_once(
    database: Database,
) -> None:
    stores = [database.store() for _ in range(4)]
    try:
        async with anyio.create_task_group() as tg:
            for each in stores:
                tg.start_soon(each.initialize)
        assert await rows(stores[0], "SELECT * FROM {p}meta") == [
            {"key": "schema_version", "value": CURRENT_VERSION}
        ]
    finally:
        for each in stores:
            await each.close()


# -- schema version 3: idempotency keys, expiry, rewinds, limits, checkpoints ---------------


async def test_turn_keys_are_a_json_column_in_their_wire_form(store: SqlStore) -> None:
    h = header(turn_keys=[TurnKey.model_validate(TURN_KEY)], expires_at=T0 + 9, state={"a": 1})
    await store.write_session(h, [], expected_revision=None)
    [row] = await rows(store, "SELECT turn_keys, expires_at, state FROM {p}sessions")
    assert (as_json(row["turn_keys"]), row["expires_at"], as_json(row["state"])) == (
        [TURN_KEY],
        T0 + 9,
        {"a": 1},
    )
    stored = await store.get_session(h.id)
    assert stored is not None
    assert stored.header() == h


async def test_expired_sessions_are_read_along_the_expiry_index(store: SqlStore) -> None:
    assert store.engine is not None
    query = (
        f"SELECT id FROM {PREFIX}sessions WHERE expires_at <= 5 ORDER BY expires_at, id LIMIT 10"
    )
    async with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")).all()
            steps = [str(step[-1]) for step in plan]
            assert steps == [
                f"SEARCH {PREFIX}sessions USING COVERING INDEX {PREFIX}sessions_expiry "
                "(expires_at<?)"
            ]
        else:
            # A small table is scanned whatever its indexes; forbid that to see the path.
            await conn.exec_driver_sql("SET enable_seqscan = off")
            await conn.exec_driver_sql("SET enable_bitmapscan = off")
            plan = (await conn.exec_driver_sql(f"EXPLAIN {query}")).scalars().all()
            assert any(f"{PREFIX}sessions_expiry" in line for line in plan), plan
            assert not any("Sort" in line for line in plan), plan


async def test_keep_deletes_the_item_rows_after_it_and_numbers_new_ones_from_there(
    store: SqlStore,
) -> None:
    h = header()
    first, third = turn_items(1), turn_items(3)
    await store.write_session(h, first + turn_items(2), expected_revision=None)
    await store.write_session(bumped(h), third, expected_revision=0, keep=2)
    stored = await rows(
        store,
        "SELECT seq, item FROM {p}history_items WHERE session_id = :id ORDER BY seq",
        id=h.id,
    )
    assert [r["seq"] for r in stored] == list(range(6))
    assert [as_json(r["item"]) for r in stored] == [item.to_wire() for item in first[:2] + third]
    assert await rows(store, "SELECT item_count FROM {p}sessions") == [{"item_count": 6}]


async def test_a_checkpoint_is_one_row_with_its_record_as_json(store: SqlStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    saved = checkpoint_of(h, label="before", created_at=T0 + 7, item_count=4, shared_count=4)
    await store.save_checkpoint(saved)
    [row] = await rows(store, "SELECT * FROM {p}checkpoints")
    assert {**row, "body": as_json(row["body"])} == {
        "session_id": h.id,
        "id": saved.id,
        "created_at": T0 + 7,
        "body": saved.to_wire(),
    }


async def test_deleting_a_session_deletes_its_checkpoint_rows(store: SqlStore) -> None:
    h, other = header(), header()
    for each in (h, other):
        await store.write_session(each, [], expected_revision=None)
        await store.save_checkpoint(checkpoint_of(each))
    assert await store.delete_session(h.id) is True
    assert await rows(store, "SELECT session_id FROM {p}checkpoints") == [{"session_id": other.id}]


async def test_a_checkpoint_of_a_session_not_stored_is_a_conflict(store: SqlStore) -> None:
    missing = header()
    with pytest.raises(ConflictError) as caught:
        await store.save_checkpoint(checkpoint_of(missing))
    assert caught.value.message == f"session {missing.id} no longer exists"
    assert await rows(store, "SELECT * FROM {p}checkpoints") == []


async def test_a_damaged_checkpoint_row_is_corrupt_data(store: SqlStore) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    saved = checkpoint_of(h)
    await store.save_checkpoint(saved)
    await rows(store, "UPDATE {p}checkpoints SET body = :body", body=json.dumps({"id": saved.id}))
    with pytest.raises(CorruptDataError) as caught:
        await store.get_checkpoint(h.id, saved.id)
    assert caught.value.details["location"] == (
        f"{PREFIX}checkpoints session_id={h.id} id={saved.id}"
    )
    assert caught.value.details["reason"].startswith("invalid checkpoint: ")
    with pytest.raises(CorruptDataError):
        await store.list_checkpoints(h.id)


async def test_a_limited_postgres_creation_waits_for_the_creation_lock(
    postgres_store: SqlStore,
) -> None:
    """What keeps racing creations of every process from counting the same room twice."""
    assert postgres_store.engine is not None
    key = _sql_postgres.advisory_key(f"chatruntime.create:{PREFIX}sessions")
    h = header()
    async with postgres_store.engine.connect() as holder:
        async with holder.begin():
            await holder.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    partial(
                        postgres_store.write_session,
                        h,
                        [],
                        expected_revision=None,
                        limits=CreateLimits(now=T0, max_sessions=1),
                    )
                )
                await anyio.sleep(0.5)
                assert await postgres_store.get_revision(h.id) is None
                await holder.commit()
    assert await postgres_store.get_revision(h.id) == 0


# -- damaged rows ---------------------------------------------------------------------------


async def test_an_invalid_item_row_is_reported_and_left_as_it_is(store: SqlStore) -> None:
    good, bad = header(name="Good"), header(name="Bad")
    await store.write_session(good, turn_items(1), expected_revision=None)
    await store.write_session(bad, turn_items(2), expected_revision=None)
    damaged = json.dumps({"type": "telepathy", "id": "x", "timestamp": 1})
    await rows(
        store,
        "UPDATE {p}history_items SET item = :item WHERE session_id = :id AND seq = 2",
        item=damaged,
        id=bad.id,
    )

    report = await load_all(store)

    assert [s.id for s in report.sessions] == [good.id]
    [record] = report.corrupt
    assert (record.session_id, record.location) == (
        bad.id,
        f"{PREFIX}history_items session_id={bad.id} seq=2",
    )
    assert record.reason.startswith("invalid history item: ")
    assert "telepathy" in record.reason
    with pytest.raises(CorruptDataError) as caught:
        await store.get_session(bad.id)
    assert caught.value.details == {
        "session_id": bad.id,
        "location": record.location,
        "reason": record.reason,
    }
    assert await store.get_revision(bad.id) == 0
    still = await rows(
        store, "SELECT item FROM {p}history_items WHERE session_id = :id AND seq = 2", id=bad.id
    )
    assert [as_json(r["item"]) for r in still] == [json.loads(damaged)]


async def test_an_invalid_session_row_is_reported(store: SqlStore) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    await rows(store, "UPDATE {p}sessions SET status = 'archived' WHERE id = :id", id=h.id)

    report = await load_all(store)

    assert report.sessions == []
    assert [(r.session_id, r.location) for r in report.corrupt] == [
        (h.id, f"{PREFIX}sessions id={h.id}")
    ]
    assert report.corrupt[0].reason.startswith("invalid session: status: ")


async def test_item_text_that_is_not_json_is_reported(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    await store.initialize()
    try:
        h = header()
        await store.write_session(h, turn_items(1), expected_revision=None)
        await rows(store, "UPDATE {p}history_items SET item = '{{oops' WHERE seq = 1")
        assert (await load_all(store)).corrupt == [
            CorruptRecord(
                h.id,
                f"{PREFIX}history_items session_id={h.id} seq=1",
                "item is not valid JSON: Expecting property name enclosed in double quotes: "
                "line 1 column 2 (char 1)",
            )
        ]
    finally:
        await store.close()


async def test_an_invalid_agent_row_is_corrupt_data(store: SqlStore) -> None:
    spec = agent_spec()
    await store.save_agent(spec)
    await rows(store, "UPDATE {p}agents SET spec = :spec", spec=json.dumps({"id": spec.id}))
    with pytest.raises(CorruptDataError) as caught:
        await store.get_agent(spec.id)
    assert caught.value.details["location"] == f"{PREFIX}agents id={spec.id}"
    assert caught.value.details["reason"] == "invalid agent: name: Field required"


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "malformed database URL 'not a url': "),
        (
            "postgresql+asyncpg://user:s3cret-pw@host:notaport/db",
            "malformed database URL 'postgresql+asyncpg://user:***@host:notaport/db': ",
        ),
        (
            "postgresql+asyncpg://user:s3cret-pw@host:99999/db",
            "malformed database URL 'postgresql+asyncpg://user:***@host:99999/db': "
            "port 99999 is out of range",
        ),
        ("mysql+aiomysql://user:s3cret-pw@host/db", "does not support mysql+aiomysql:// URLs"),
        ("sqlite:///chat.db", "use sqlite+aiosqlite://"),
        ("postgresql://user:s3cret-pw@host/db", "use postgresql+asyncpg://"),
    ],
)
def test_a_bad_url_is_invalid_input_at_construction_without_the_password(
    url: str, expected: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SqlStore(url)
    assert expected in caught.value.message
    assert "sqlite+aiosqlite:///path/to/file.db" in caught.value.message  # shows what works
    assert "s3cret-pw" not in caught.value.message
    assert caught.value.details == {"field": "url"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_server_is_a_prompt_storage_error() -> None:
    port = closed_port()
    store = SqlStore(f"postgresql+asyncpg://app:s3cret-pw@127.0.0.1:{port}/chat")
    try:
        with anyio.fail_after(3), pytest.raises(StorageError) as caught:
            await store.initialize()
    finally:
        await store.close()
    assert caught.value.message.startswith(
        f"cannot connect to PostgreSQL at 127.0.0.1:{port}, database 'chat' as user 'app': "
    )
    assert "s3cret-pw" not in caught.value.message


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""

    async def say_nothing(stream: SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    listener: MultiListener[SocketStream]
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, say_nothing)
            yield port
            tg.cancel_scope.cancel()


async def test_a_server_that_never_answers_times_out_after_connect_timeout(
    silent_server: int,
) -> None:
    store = SqlStore(
        f"postgresql+asyncpg://app:s3cret-pw@127.0.0.1:{silent_server}/chat",
        connect_timeout=0.5,
    )
    started = anyio.current_time()
    try:
        with anyio.fail_after(5), pytest.raises(StorageError) as caught:
            await store.initialize()
    finally:
        await store.close()
    assert anyio.current_time() - started < 3
    assert caught.value.message == (
        f"cannot connect to PostgreSQL at 127.0.0.1:{silent_server}, database 'chat' "
        "as user 'app': no answer within 0.5s"
    )


async def test_wrong_credentials_are_a_storage_error_naming_the_server(
    postgres_url: str,
) -> None:
    url = wrong_password_url(postgres_url, "not-the-pw")
    store = SqlStore(url)
    try:
        with anyio.fail_after(10), pytest.raises(StorageError) as caught:
            await store.initialize()
    finally:
        await store.close()
    parsed = sa.make_url(postgres_url)
    assert caught.value.message == (
        f"cannot connect to PostgreSQL at {parsed.host}:{parsed.port}, database "
        f"{parsed.database!r} as user {parsed.username!r}: password authentication failed "
        f'for user "{parsed.username}"; check the user name and password'
    )


async def test_a_statement_time_limit_from_engine_kwargs_ends_a_blocked_write(
    postgres_url: str,
) -> None:
    async with postgres_schema(postgres_url) as schema:
        kwargs = postgres_search_path(schema)
        kwargs["connect_args"]["command_timeout"] = 0.5
        store = SqlStore(postgres_url, engine_kwargs=kwargs)
        await store.initialize()
        try:
            h = header()
            await store.write_session(h, [], expected_revision=None)
            assert store.engine is not None
            async with store.engine.connect() as blocker, blocker.begin():
                await blocker.execute(
                    sa.text(f"SELECT * FROM {PREFIX}sessions WHERE id = :id FOR UPDATE"),
                    {"id": h.id},
                )
                with anyio.fail_after(5), pytest.raises(StorageError) as caught:
                    await store.write_session(bumped(h), turn_items(1), expected_revision=0)
        finally:
            await store.close()
    assert caught.value.message.endswith(
        f"failed while writing session {h.id}: timed out waiting for the database"
    )


async def test_a_file_that_is_not_a_sqlite_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database " * 100)
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    try:
        with pytest.raises(StorageError) as caught:
            await store.initialize()
    finally:
        await store.close()
    assert caught.value.message == (
        f"cannot connect to SQLite database {path}: file is not a database"
    )


async def test_a_sqlite_file_in_a_new_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "chat.db"
    store = SqlStore(f"sqlite+aiosqlite:///{path}")
    await store.initialize()
    await store.close()
    assert path.is_file()


# -- construction and lifecycle -------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "SqlStore needs exactly one of url and engine, got neither"),
        (
            {"url": "sqlite+aiosqlite://", "table_prefix": "drop table;"},
            "table_prefix must be up to 30 letters, digits or underscores, not starting with "
            "a digit (such as 'chatruntime_'), got 'drop table;'",
        ),
        (
            {"url": "sqlite+aiosqlite://", "table_prefix": "1st_"},
            "table_prefix must be up to 30 letters, digits or underscores, not starting with "
            "a digit (such as 'chatruntime_'), got '1st_'",
        ),
        (
            {"url": "sqlite+aiosqlite://", "connect_timeout": 0},
            "connect_timeout must be a positive number of seconds, got 0",
        ),
        (
            {"url": "sqlite+aiosqlite://", "commit_timeout": -1},
            "commit_timeout must be a positive number of seconds, got -1",
        ),
    ],
)
def test_bad_constructor_arguments_are_value_errors(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SqlStore(**arguments)


def test_a_url_that_is_not_text_stays_invalid_input() -> None:
    with pytest.raises(InvalidInputError) as caught:
        SqlStore(b"sqlite+aiosqlite://")  # type: ignore[arg-type]
    assert caught.value.message == "url must be a string, got bytes"
    assert caught.value.details == {"field": "url"}


async def test_a_store_refuses_calls_before_initialize_and_after_close() -> None:
    store = SqlStore("sqlite+aiosqlite://")
    message = (
        r"^SqlStore is not initialized: await store\.initialize\(\) before using it "
        r"\(and again after close\(\)\)$"
    )
    with pytest.raises(RuntimeError, match=message):
        await store.get_session(new_id())
    await store.initialize()
    assert await store.get_session(new_id()) is None
    await store.close()
    with pytest.raises(RuntimeError, match=message):
        await store.list_agents()


async def test_an_in_memory_database_serves_concurrent_calls(tmp_path: Path) -> None:
    store = SqlStore("sqlite+aiosqlite://")
    await store.initialize()
    try:
        headers = [header(name=f"Chat {n}") for n in range(20)]

        async def create_and_read(h: Any) -> None:
            await store.write_session(h, turn_items(1), expected_revision=None)
            assert await store.get_revision(h.id) == 0

        async with anyio.create_task_group() as tg:
            for h in headers:
                tg.start_soon(create_and_read, h)
        loaded = await load_all(store)
        assert sorted(s.name for s in loaded.sessions) == sorted(h.name for h in headers)
    finally:
        await store.close()


async def test_an_in_memory_database_starts_empty_after_close(tmp_path: Path) -> None:
    store = SqlStore("sqlite+aiosqlite://")
    await store.initialize()
    await store.write_session(header(), [], expected_revision=None)
    await store.close()
    await store.initialize()
    try:
        assert (await load_all(store)).sessions == []
    finally:
        await store.close()


async def test_an_engine_passed_in_is_used_and_left_open(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'own.db'}")
    store = SqlStore(engine=engine)
    await store.initialize()
    h = header()
    await store.write_session(h, [], expected_revision=None)
    await store.close()
    try:
        async with engine.connect() as conn:
            ids = (await conn.execute(sa.text(f"SELECT id FROM {PREFIX}sessions"))).scalars()
            assert list(ids) == [h.id]
    finally:
        await engine.dispose()


@pytest.fixture
def without_sqlalchemy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import chatruntime.stores

    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # makes `import sqlalchemy` fail
    monkeypatch.delitem(sys.modules, "chatruntime.stores._sql", raising=False)
    monkeypatch.delattr(chatruntime.stores, "SqlStore", raising=False)
    yield


@pytest.mark.usefixtures("without_sqlalchemy")
def test_without_sqlalchemy_the_import_error_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"SqlStore needs .* install chatruntime\[sql\]"):
        from chatruntime.stores import SqlStore  # noqa: F401


# -- leases as file locks (SQLite) ----------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    await opened.initialize()
    try:
        yield opened
    finally:
        await opened.close()


def sizes(*paths: Path) -> list[int]:
    return [path.stat().st_size if path.exists() else -1 for path in paths]


async def test_a_sqlite_lease_locks_a_file_beside_the_database_and_writes_nothing(
    tmp_path: Path, sqlite_store: SqlStore
) -> None:
    h = header()
    await sqlite_store.write_session(h, turn_items(1), expected_revision=None)
    database = [tmp_path / "chat.db", tmp_path / "chat.db-wal"]
    before = sizes(*database)
    for _ in range(20):
        async with sqlite_store.lease(h.id, timeout=1) as lease:
            assert (lease.session_id, lease.token, lease.released) == (h.id, "", False)
    assert sizes(*database) == before
    assert (tmp_path / "chat.db-leases").stat().st_size == 0
    assert await rows(sqlite_store, "SELECT * FROM {p}session_leases") == []


async def test_two_sqlite_stores_in_one_process_exclude_each_other(
    tmp_path: Path, sqlite_store: SqlStore
) -> None:
    other = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    await other.initialize()
    session_id = new_id()
    try:
        async with sqlite_store.lease(session_id, timeout=1):
            with anyio.fail_after(5), pytest.raises(BusyError):
                async with other.lease(session_id, timeout=0.2):
                    pytest.fail("the lease was granted while another store held it")
        with anyio.fail_after(5):
            async with other.lease(session_id, timeout=0):
                pass
    finally:
        await other.close()


async def test_leases_of_two_table_prefixes_in_one_sqlite_database_are_independent(
    tmp_path: Path, sqlite_store: SqlStore
) -> None:
    other = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", table_prefix="app_")
    await other.initialize()
    session_id = new_id()
    try:
        with anyio.fail_after(5):
            async with (
                sqlite_store.lease(session_id, timeout=0),
                other.lease(session_id, timeout=0),
            ):
                pass
    finally:
        await other.close()


async def test_an_in_memory_database_leases_without_a_lock_file(tmp_path: Path) -> None:
    store = SqlStore("sqlite+aiosqlite://")
    await store.initialize()
    session_id = new_id()
    refused: list[BusyError] = []

    async def contender() -> None:
        try:
            async with store.lease(session_id, timeout=0.1):
                pytest.fail("the lease was granted while another caller held it")
        except BusyError as error:
            refused.append(error)

    try:
        async with store.lease(session_id, timeout=1), anyio.create_task_group() as tg:
            tg.start_soon(contender)
    finally:
        await store.close()
    assert [e.details for e in refused] == [{"session_id": session_id, "timeout": 0.1}]
    assert [path async for path in anyio.Path(tmp_path).iterdir()] == []


# -- leases as rows (PostgreSQL; SQLite where file locks are missing) ----------------------


@pytest.fixture(params=["postgres", "sqlite-rows"])
async def row_leases(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Database]:
    """A database whose stores keep leases as rows (SQLite as on a platform without
    open-file-description locks)."""
    if request.param == "sqlite-rows":
        monkeypatch.setattr(_sql, "FILE_LOCKS_AVAILABLE", False)
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        async with postgres_schema(url) as schema:
            yield Database("postgres", url, postgres_search_path(schema))


@pytest.fixture
async def row_store(row_leases: Database) -> AsyncIterator[SqlStore]:
    opened = row_leases.store()
    await opened.initialize()
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_expired_lease_of_a_dead_holder_is_taken_over(row_store: SqlStore) -> None:
    session_id = new_id()
    await rows(
        row_store,
        "INSERT INTO {p}session_leases VALUES (:id, 'dead-holder', :expired)",
        id=session_id,
        expired=now_ms() - 1_000,
    )
    with anyio.fail_after(5):
        async with row_store.lease(session_id, ttl=30, timeout=0):
            [row] = await rows(row_store, "SELECT * FROM {p}session_leases")
            assert row["token"] != "dead-holder"
            assert row["expires_at"] > now_ms() + 25_000
    assert await rows(row_store, "SELECT * FROM {p}session_leases") == []


async def test_a_live_lease_of_another_holder_is_busy(row_store: SqlStore) -> None:
    session_id = new_id()
    await rows(
        row_store,
        "INSERT INTO {p}session_leases VALUES (:id, 'other-holder', :later)",
        id=session_id,
        later=now_ms() + 60_000,
    )
    with anyio.fail_after(5), pytest.raises(BusyError) as caught:
        async with row_store.lease(session_id, timeout=0.2):
            pytest.fail("the lease was granted while another holder had it")
    assert caught.value.details == {"session_id": session_id, "timeout": 0.2}
    assert [r["token"] for r in await rows(row_store, "SELECT * FROM {p}session_leases")] == [
        "other-holder"
    ]


async def test_a_held_lease_is_renewed_past_its_ttl(
    row_leases: Database, row_store: SqlStore
) -> None:
    session_id = new_id()
    other = row_leases.store()
    await other.initialize()
    try:
        async with row_store.lease(session_id, ttl=0.3, timeout=1):
            [first] = await rows(row_store, "SELECT expires_at FROM {p}session_leases")
            await anyio.sleep(0.6)
            [later] = await rows(row_store, "SELECT expires_at FROM {p}session_leases")
            assert later["expires_at"] > first["expires_at"]
            with pytest.raises(BusyError):
                async with other.lease(session_id, timeout=0):
                    pass
    finally:
        await other.close()


async def test_release_deletes_only_the_holders_own_lease_row(row_store: SqlStore) -> None:
    session_id = new_id()
    async with row_store.lease(session_id, timeout=1):
        # As if the lease had expired and another process had taken it meanwhile.
        await rows(row_store, "UPDATE {p}session_leases SET token = 'successor'")
    assert [r["token"] for r in await rows(row_store, "SELECT * FROM {p}session_leases")] == [
        "successor"
    ]


async def test_a_cancelled_body_releases_the_lease(row_store: SqlStore) -> None:
    session_id = new_id()
    with anyio.move_on_after(0.2):
        async with row_store.lease(session_id, timeout=1):
            await anyio.sleep_forever()
    assert await rows(row_store, "SELECT * FROM {p}session_leases") == []


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[SqlStore]:
    async with postgres_schema(postgres_url) as schema:
        opened = SqlStore(postgres_url, engine_kwargs=postgres_search_path(schema))
        await opened.initialize()
        try:
            yield opened
        finally:
            await opened.close()


async def test_taking_a_postgres_lease_reads_the_revision_in_the_same_statement(
    postgres_store: SqlStore,
) -> None:
    h = header()
    await postgres_store.write_session(h, [], expected_revision=None)
    await postgres_store.write_session(bumped(h), turn_items(1), expected_revision=0)
    async with postgres_store.lease(h.id, timeout=1) as lease:
        assert (lease.revision_known, lease.revision) == (True, 1)
        [row] = await rows(postgres_store, "SELECT session_id, token FROM {p}session_leases")
        assert row == {"session_id": h.id, "token": lease.token}
    async with postgres_store.lease(new_id(), timeout=1) as missing:
        assert (missing.revision_known, missing.revision) == (True, None)


async def test_a_postgres_lease_granted_as_the_holders_write_commits_reads_its_revision(
    postgres_store: SqlStore,
) -> None:
    h = header()
    await postgres_store.write_session(h, [], expected_revision=None)
    await rows(
        postgres_store,
        "INSERT INTO {p}session_leases VALUES (:id, 'holder', :later)",
        id=h.id,
        later=now_ms() + 60_000,
    )
    granted: list[tuple[bool, int | None]] = []

    async def follow() -> None:
        async with postgres_store.lease(h.id, timeout=10) as lease:
            granted.append((lease.revision_known, lease.revision))

    assert postgres_store.engine is not None
    async with postgres_store.engine.connect() as holder:
        # The holder's turn commits revision 1 and gives the lease back in one transaction;
        # the follower's statement waits for it on the lease row.
        await holder.execute(
            sa.text(f"UPDATE {PREFIX}sessions SET revision = 1 WHERE id = :id"), {"id": h.id}
        )
        await holder.execute(sa.text(f"DELETE FROM {PREFIX}session_leases WHERE token = 'holder'"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.sleep(0.3)
            assert granted == []
            await holder.commit()
    assert granted == [(True, 1)]


async def test_a_write_under_a_lease_row_gives_it_back_in_its_transaction(
    row_store: SqlStore,
) -> None:
    h = header()
    await row_store.write_session(h, [], expected_revision=None)
    async with row_store.lease(h.id, timeout=1) as lease:
        await row_store.write_session(bumped(h), turn_items(1), expected_revision=0, lease=lease)
        assert lease.released
        assert await rows(row_store, "SELECT * FROM {p}session_leases") == []
        # Another holder takes the session at once; leaving the block must not free it.
        await rows(
            row_store,
            "INSERT INTO {p}session_leases VALUES (:id, 'successor', :later)",
            id=h.id,
            later=now_ms() + 60_000,
        )
    assert [r["token"] for r in await rows(row_store, "SELECT * FROM {p}session_leases")] == [
        "successor"
    ]


async def test_a_refused_write_keeps_the_lease_row_until_the_block_ends(
    row_store: SqlStore,
) -> None:
    h = header()
    await row_store.write_session(h, [], expected_revision=None)
    async with row_store.lease(h.id, timeout=1) as lease:
        with pytest.raises(ConflictError):
            await row_store.write_session(
                bumped(bumped(h)), turn_items(1), expected_revision=1, lease=lease
            )
        assert not lease.released
        assert [r["token"] for r in await rows(row_store, "SELECT * FROM {p}session_leases")] == [
            lease.token
        ]
    assert await rows(row_store, "SELECT * FROM {p}session_leases") == []


HOLDER_SCRIPT = """
import json, sys
import anyio
from chatruntime.stores import SqlStore

async def main() -> None:
    url, engine_kwargs, session_id = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    store = SqlStore(url, engine_kwargs=engine_kwargs or None)
    await store.initialize()
    async with store.lease(session_id, ttl=1.0, timeout=10):
        print("held", flush=True)
        await anyio.sleep(120)

anyio.run(main)
"""


async def test_a_lease_held_by_another_process_is_busy_until_that_process_dies(
    database: Database, store: SqlStore
) -> None:
    session_id = new_id()
    holder = await anyio.open_process(
        [
            sys.executable,
            "-c",
            HOLDER_SCRIPT,
            database.url,
            json.dumps(database.engine_kwargs),
            session_id,
        ]
    )
    try:
        assert holder.stdout is not None
        output = b""
        with anyio.fail_after(30):
            while b"held\n" not in output:
                output += await holder.stdout.receive()
        # Longer than the holder's ttl: only its renewals keep the lease from us.
        with anyio.fail_after(10), pytest.raises(BusyError):
            async with store.lease(session_id, timeout=1.5):
                pass
        holder.kill()  # SIGKILL: no release, no more renewals
        await holder.wait()
        started = anyio.current_time()
        with anyio.fail_after(10):
            async with store.lease(session_id, timeout=5):
                waited = anyio.current_time() - started
        assert waited < 1.5
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.aclose()
