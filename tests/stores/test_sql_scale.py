"""``SqlStore`` at scale: indexed listings, tail reads, one commit per turn, pools that wait.

The figures themselves (milliseconds, turns per second) are the benchmarks' business; these
tests pin down the mechanisms behind them: which index a query walks, how many commits a
turn makes, that many concurrent sessions queue instead of failing, and what the pool
settings do.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from chatruntime.models import (
    ChatSession,
    CorruptDataError,
    InvalidInputError,
    ReasoningItem,
    SessionContext,
    SessionHeader,
    StorageError,
)
from chatruntime.stores import SqlStore
from support.factories import T0, bumped, header, turn_items
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


@dataclass
class Traced:
    """A SQLite store whose connections report every statement they run."""

    store: SqlStore
    engine: AsyncEngine
    path: Path
    statements: list[str]

    def run(self, prefix: str) -> list[str]:
        """The statements run since the last ``clear()`` that start with ``prefix``."""
        return [s for s in self.statements if s.upper().startswith(prefix.upper())]

    def plan(self, statement: str) -> list[str]:
        """How SQLite runs ``statement`` (``EXPLAIN QUERY PLAN``), one line per step."""
        with sqlite3.connect(self.path) as connection:
            return [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}")]


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    path = tmp_path / "chat.db"
    statements: list[str] = []

    async def connect() -> aiosqlite.Connection:
        connection = await aiosqlite.connect(path)
        await connection.set_trace_callback(statements.append)
        return connection

    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", async_creator=connect)
    store = SqlStore(engine=engine)
    await store.initialize()
    try:
        yield Traced(store, engine, path, statements)
    finally:
        await store.close()
        await engine.dispose()


# -- one commit per turn (SQLite) -----------------------------------------------------------


async def test_a_sqlite_turn_is_one_commit_and_its_lease_touches_no_table(
    traced: Traced,
) -> None:
    store, h = traced.store, header()
    await store.write_session(h, [], expected_revision=None)
    traced.statements.clear()

    async with store.lease(h.id) as lease:
        revision = await store.get_revision(h.id)
        assert revision is not None
        await store.write_session(bumped(h), turn_items(1), expected_revision=revision, lease=lease)

    assert traced.run("BEGIN") == ["BEGIN IMMEDIATE"]
    assert traced.run("COMMIT") == ["COMMIT"]
    assert [s for s in traced.statements if "session_leases" in s] == []


async def test_concurrent_sqlite_writes_wait_for_the_writer_and_commit_together(
    traced: Traced,
) -> None:
    store = traced.store
    headers = [header(name=f"Chat {n}") for n in range(50)]
    for h in headers:
        await store.write_session(h, [], expected_revision=None)
    traced.statements.clear()

    async with anyio.create_task_group() as tg:
        for h in headers:
            tg.start_soon(
                lambda h: store.write_session(bumped(h), turn_items(1), expected_revision=0), h
            )

    assert traced.run("COMMIT") == ["COMMIT"]
    assert await rows(store, "SELECT count(*) AS n FROM {p}history_items") == [{"n": 200}]


async def test_a_failing_write_in_a_batch_takes_back_only_itself(traced: Traced) -> None:
    store = traced.store
    await rows(
        store,
        "CREATE TRIGGER refuse_reasoning BEFORE INSERT ON {p}history_items "
        "WHEN NEW.type = 'reasoning' BEGIN SELECT RAISE(ABORT, 'reasoning refused'); END",
    )
    headers = [header(name=f"Chat {n}") for n in range(10)]
    for h in headers:
        await store.write_session(h, [], expected_revision=None)
    failing = headers[4]
    outcomes: dict[str, str] = {}

    async def write(h: SessionHeader) -> None:
        items = [*turn_items(1), ReasoningItem(summary=[])] if h is failing else turn_items(1)
        try:
            await store.write_session(bumped(h, name="Written"), items, expected_revision=0)
            outcomes[h.id] = "written"
        except StorageError as error:
            outcomes[h.id] = error.message

    traced.statements.clear()
    async with anyio.create_task_group() as tg:
        for h in headers:
            tg.start_soon(write, h)

    assert traced.run("COMMIT") == ["COMMIT"]
    assert outcomes.pop(failing.id).endswith(
        f"failed while writing session {failing.id}: reasoning refused"
    )
    assert set(outcomes.values()) == {"written"}
    assert await store.get_session(failing.id) == ChatSession.from_parts(failing, [])
    assert await rows(store, "SELECT count(*) AS n FROM {p}sessions WHERE name = 'Written'") == [
        {"n": 9}
    ]


async def test_sqlite_reads_are_served_while_a_write_waits_for_the_database(
    traced: Traced,
) -> None:
    store, h = traced.store, header()
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    # Another process's open write transaction: this store's writer must wait for it.
    other = sqlite3.connect(traced.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    written: list[int] = []

    async def write() -> None:
        await store.write_session(bumped(h), turn_items(2), expected_revision=0)
        written.append(1)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await anyio.sleep(0.2)
            with anyio.fail_after(1):
                assert await store.get_revision(h.id) == 0
                assert await store.get_session(h.id) == ChatSession.from_parts(h, items)
                assert [s.id for s in (await store.list_sessions()).sessions] == [h.id]
            assert written == []
            other.rollback()
    finally:
        other.close()
    assert await store.get_revision(h.id) == 1


# -- listings and tail reads walk indexes (SQLite's plans) ----------------------------------

LISTINGS = [
    ({}, {"sessions_recent"}),
    ({"agent": True}, {"sessions_agent_recent"}),
    ({"user": True}, {"sessions_user_recent"}),
    ({"status": True}, {"sessions_status_recent"}),
    ({"agent": True, "status": True}, {"sessions_agent_recent"}),
    ({"user": True, "status": True}, {"sessions_user_recent"}),
    ({"agent": True, "user": True}, {"sessions_agent_recent", "sessions_user_recent"}),
]


@pytest.mark.parametrize("after", [False, True], ids=["first page", "next page"])
@pytest.mark.parametrize(("filters", "indexes"), LISTINGS, ids=lambda v: str(v))
async def test_every_sqlite_listing_walks_an_index_backwards_without_sorting(
    traced: Traced, filters: dict[str, bool], indexes: set[str], after: bool
) -> None:
    store, agent = traced.store, header().agent_id
    for n in range(5):
        h = header(agent_id=agent, user_id="u", context=SessionContext(last_activity=T0 + n))
        await store.write_session(h, [], expected_revision=None)
    arguments: dict[str, Any] = {
        "agent_id": agent if filters.get("agent") else None,
        "user_id": "u" if filters.get("user") else None,
        "status": "active" if filters.get("status") else None,
        "limit": 2,
    }
    if after:
        arguments["cursor"] = (await store.list_sessions(**arguments)).next_cursor
    traced.statements.clear()

    page = await store.list_sessions(**arguments)

    assert len(page.sessions) == 2
    [query] = traced.run("SELECT")
    plan = " | ".join(traced.plan(query))
    assert any(re.search(rf"INDEX {PREFIX}{index}\b", plan) for index in indexes), plan
    assert "TEMP B-TREE" not in plan, plan


async def test_a_sqlite_tail_read_walks_the_primary_key_backwards(traced: Traced) -> None:
    store, h = traced.store, header()
    await store.write_session(h, turn_items(1) + turn_items(2), expected_revision=None)
    traced.statements.clear()

    tail = await store.get_session(h.id, last=3)

    assert tail is not None
    assert len(tail.history) == 3
    [query] = [s for s in traced.run("SELECT") if "history_items" in s]
    assert query.endswith("ORDER BY chatruntime_history_items.seq DESC LIMIT 3")
    plan = " | ".join(traced.plan(query))
    assert "USING PRIMARY KEY" in plan or "sqlite_autoindex" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# -- listing and scanning -------------------------------------------------------------------


async def test_a_session_row_that_is_not_a_header_is_left_out_of_listings(
    store: SqlStore,
) -> None:
    good, bad = header(context=SessionContext(last_activity=T0 + 1)), header()
    for h in (good, bad):
        await store.write_session(h, [], expected_revision=None)
    await rows(store, "UPDATE {p}sessions SET name = '' WHERE id = :id", id=bad.id)

    page = await store.list_sessions()

    assert page.sessions == [good]
    assert await store.count_sessions() == 2
    with pytest.raises(CorruptDataError):
        await store.get_session(bad.id)


async def test_a_scan_reads_every_session_once_in_batches(store: SqlStore) -> None:
    made = {}
    for n in range(230):
        h = header(name=f"Chat {n}")
        items = turn_items(n) if n % 50 == 0 else []
        await store.write_session(h, items, expected_revision=None)
        made[h.id] = ChatSession.from_parts(h, items)

    scanned = [found async for found in store.scan_sessions()]

    assert [s.id for s in scanned] == sorted(made)
    assert {s.id: s for s in scanned if isinstance(s, ChatSession)} == made


# -- many sessions at once ------------------------------------------------------------------


async def test_a_thousand_concurrent_sessions_of_two_turns_each_all_succeed(
    store: SqlStore,
) -> None:
    """With default settings: no BUSY, no pool exhaustion, nothing lost."""
    headers = [header(name=f"Chat {n}") for n in range(1000)]
    failures: list[BaseException] = []

    async def converse(h: SessionHeader) -> None:
        try:
            await store.write_session(h, [], expected_revision=None)
            for n in range(2):
                async with store.lease(h.id, timeout=60) as lease:
                    if lease.revision_known:
                        revision = lease.revision
                    else:
                        revision = await store.get_revision(h.id)
                    assert revision == h.revision
                    h = bumped(h)
                    await store.write_session(
                        h, turn_items(n), expected_revision=revision, lease=lease
                    )
        except Exception as error:
            failures.append(error)

    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            for h in headers:
                tg.start_soon(converse, h)

    assert failures == []
    assert await rows(
        store, "SELECT revision, count(*) AS n FROM {p}sessions GROUP BY revision"
    ) == [{"revision": 2, "n": 1000}]
    assert await rows(store, "SELECT count(*) AS n FROM {p}history_items") == [{"n": 8000}]


async def test_turns_of_one_session_from_two_stores_take_turns_without_conflict(
    database: Database, store: SqlStore
) -> None:
    """Like two processes: each turn reads the revision the previous one committed."""
    other = database.store()
    await other.initialize()
    h = header()
    await store.write_session(h, [], expected_revision=None)
    failures: list[BaseException] = []

    async def converse(each: SqlStore) -> None:
        for n in range(5):
            try:
                async with each.lease(h.id, timeout=60) as lease:
                    if lease.revision_known:
                        revision = lease.revision
                    else:
                        revision = await each.get_revision(h.id)
                    assert revision is not None
                    turn = h.model_copy(update={"revision": revision + 1})
                    await each.write_session(
                        turn, turn_items(n), expected_revision=revision, lease=lease
                    )
            except Exception as error:
                failures.append(error)

    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for n in range(20):
                    tg.start_soon(converse, store if n % 2 else other)
    finally:
        await other.close()

    assert failures == []
    assert await store.get_revision(h.id) == 100
    assert await rows(store, "SELECT count(*) AS n FROM {p}history_items") == [{"n": 400}]


# -- pool settings --------------------------------------------------------------------------


async def test_pool_settings_in_a_postgres_url_size_the_pool(postgres_url: str) -> None:
    async with postgres_schema(postgres_url) as schema:
        store = SqlStore(
            f"{postgres_url}?pool_size=3&max_overflow=1&pool_timeout=7",
            engine_kwargs=postgres_search_path(schema),
        )
        await store.initialize()
        try:
            assert store.engine is not None
            assert (store.engine.pool.size(), store.engine.pool.timeout()) == (3, 7.0)  # type: ignore[attr-defined]
            assert "pool_size" not in str(store.engine.url)
        finally:
            await store.close()


async def test_pool_settings_given_as_arguments_win_over_the_url(postgres_url: str) -> None:
    async with postgres_schema(postgres_url) as schema:
        store = SqlStore(
            f"{postgres_url}?pool_size=3",
            pool_size=4,
            engine_kwargs=postgres_search_path(schema),
        )
        await store.initialize()
        try:
            assert store.engine is not None
            assert store.engine.pool.size() == 4  # type: ignore[attr-defined]
        finally:
            await store.close()


async def test_the_default_postgres_pool_keeps_10_and_opens_up_to_20_more(
    postgres_url: str,
) -> None:
    async with postgres_schema(postgres_url) as schema:
        store = SqlStore(postgres_url, engine_kwargs=postgres_search_path(schema))
        await store.initialize()
        try:
            assert store.engine is not None
            pool = store.engine.pool
            assert (pool.size(), pool._max_overflow, pool.timeout()) == (10, 20, 60.0)  # type: ignore[attr-defined]
        finally:
            await store.close()


async def test_a_call_that_finds_every_connection_busy_waits_then_says_which_setting_to_raise(
    postgres_url: str,
) -> None:
    async with postgres_schema(postgres_url) as schema:
        store = SqlStore(
            postgres_url,
            pool_size=1,
            max_overflow=1,
            pool_timeout=0.3,
            engine_kwargs=postgres_search_path(schema),
        )
        await store.initialize()
        session_id = header().id
        try:
            assert store.engine is not None
            async with store.engine.connect() as first, store.engine.connect() as second:
                await first.exec_driver_sql("SELECT 1")
                await second.exec_driver_sql("SELECT 1")
                started = anyio.current_time()
                with anyio.fail_after(5), pytest.raises(StorageError) as caught:
                    await store.get_revision(session_id)
                waited = anyio.current_time() - started
            assert await store.get_revision(session_id) is None
        finally:
            await store.close()
    assert 0.3 <= waited < 2
    assert caught.value.message.endswith(
        f"failed while reading session {session_id}: no database connection became free in "
        "time (pool_size=1, max_overflow=1, pool_timeout=0.3); allow more connections or a "
        "longer pool_timeout"
    )


async def test_pool_size_on_sqlite_is_the_number_of_reader_connections(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}?pool_size=2")
    await store.initialize()
    try:
        assert store.engine is not None
        pool = store.engine.pool
        # The writer and two readers, held by the store for as long as it is open.
        assert (pool.size(), pool.checkedout()) == (3, 3)  # type: ignore[attr-defined]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"pool_size": 0}, "pool_size must be a whole number of at least 1, got 0"),
        ({"pool_size": 2.5}, "pool_size must be a whole number of at least 1, got 2.5"),
        ({"pool_size": True}, "pool_size must be a whole number of at least 1, got True"),
        ({"max_overflow": -1}, "max_overflow must be a whole number of at least 0, got -1"),
        ({"pool_timeout": 0}, "pool_timeout must be a positive number of seconds, got 0"),
    ],
)
def test_a_pool_setting_argument_out_of_range_is_a_value_error_at_once(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SqlStore("postgresql+asyncpg://app@db/chat", **arguments)


def test_a_postgresql_only_pool_setting_argument_on_sqlite_is_a_value_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match=r"^pool_timeout applies to PostgreSQL only: "):
        SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", pool_timeout=5)


@pytest.mark.parametrize(
    ("url", "field_name", "message"),
    [
        (
            "postgresql+asyncpg://app:s3cret-pw@127.0.0.1:1/chat?pool_size=lots",
            "pool_size",
            "pool_size in the URL must be a whole number of at least 1, got 'lots'",
        ),
        (
            "postgresql+asyncpg://app:s3cret-pw@127.0.0.1:1/chat?pool_timeout=-3",
            "pool_timeout",
            "pool_timeout in the URL must be a positive number of seconds, got '-3'",
        ),
        (
            "sqlite+aiosqlite:///chat.db?max_overflow=5",
            "max_overflow",
            "max_overflow applies to PostgreSQL only: on SQLite every call queues for its "
            "connection instead of waiting for a free one",
        ),
    ],
)
def test_a_pool_setting_out_of_range_in_the_url_is_refused_at_construction(
    url: str, field_name: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SqlStore(url)
    assert caught.value.message == message
    assert caught.value.details == {"field": field_name}


def test_pool_settings_with_an_engine_passed_in_are_refused(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'own.db'}")
    with pytest.raises(
        ValueError,
        match=r"^pool_size configures an engine the store creates; "
        r"configure the engine you pass in yourself$",
    ):
        SqlStore(engine=engine, pool_size=3)


async def test_a_pool_class_of_your_own_gets_no_pool_sizes(tmp_path: Path) -> None:
    store = SqlStore(
        f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", engine_kwargs={"poolclass": NullPool}
    )
    await store.initialize()
    try:
        h = header()
        await store.write_session(h, turn_items(1), expected_revision=None)
        assert await store.get_revision(h.id) == 0
        assert store.engine is not None
        assert isinstance(store.engine.pool, NullPool)
    finally:
        await store.close()
