"""How ``RedisStore`` lists sessions: from sorted-set indexes, a page at a time.

The order, the cursor and the filters are the contract's (``test_contract.py``); these tests
cover what only an index shows: long runs of equal times, cursors whose session moved or went,
the most selective index, a bounded cost, entries whose session is gone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from functools import partial

import anyio
import pytest
import redis
from redis.asyncio import Redis
from redis.driver_info import DriverInfo

from chatruntime.models import SessionContext, SessionHeader, new_id
from chatruntime.stores import RedisStore
from chatruntime.stores import _redis as redis_store_module
from support.factories import T0, bumped, header, turn_items

pytestmark = pytest.mark.anyio

DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture
async def store(redis_url: str, prefix: str) -> AsyncIterator[RedisStore]:
    opened = RedisStore(redis_url, key_prefix=prefix)
    await opened.initialize()
    yield opened
    await opened.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True, driver_info=DRIVER)
    yield client
    await client.aclose()


def key(prefix: str, *parts: str) -> str:
    return prefix + ":".join(("chatruntime", *parts))


def at(millis: int, **overrides: object) -> SessionHeader:
    return header(context=SessionContext(last_activity=millis), **overrides)


async def create(store: RedisStore, *headers: SessionHeader) -> None:
    async with anyio.create_task_group() as group:
        for h in headers:
            group.start_soon(partial(store.write_session, h, [], expected_revision=None))


def listing_order(headers: list[SessionHeader]) -> list[str]:
    ordered = sorted(headers, key=lambda h: (h.context.last_activity, h.id), reverse=True)
    return [h.id for h in ordered]


async def walk(store: RedisStore, limit: int, **filters: str) -> tuple[list[str], list[int]]:
    """Every id a listing walks through page by page, and the size of each page."""
    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        page = await store.list_sessions(limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        seen.extend(s.id for s in page.sessions)
        sizes.append(len(page.sessions))
        if (cursor := page.next_cursor) is None:
            return seen, sizes


async def test_pages_walk_a_long_run_of_equal_times_once_in_order(store: RedisStore) -> None:
    # More than Redis keeps in a compact sorted set, all in one millisecond but a few.
    made = [at(T0) for _ in range(300)] + [at(T0 + 1) for _ in range(5)]
    await create(store, *made)
    seen, sizes = await walk(store, limit=7)
    assert seen == listing_order(made)
    assert sizes == [7] * 43 + [4]


async def test_a_cursor_continues_after_its_session_moved_to_the_front(
    store: RedisStore,
) -> None:
    made = [at(T0) for _ in range(6)]
    await create(store, *made)
    expected = listing_order(made)
    first = await store.list_sessions(limit=3)
    last_listed = next(h for h in made if h.id == first.sessions[-1].id)
    await store.write_session(
        bumped(last_listed, context=SessionContext(last_activity=T0 + 5)),
        turn_items(1),
        expected_revision=0,
    )
    rest = await store.list_sessions(limit=3, cursor=first.next_cursor)
    assert [s.id for s in first.sessions] + [s.id for s in rest.sessions] == expected
    assert rest.next_cursor is None


async def test_a_cursor_continues_after_its_session_was_deleted(store: RedisStore) -> None:
    made = [at(T0 + i % 2) for i in range(6)]
    await create(store, *made)
    expected = listing_order(made)
    first = await store.list_sessions(limit=2)
    await store.delete_session(first.sessions[-1].id)
    page = await store.list_sessions(limit=10, cursor=first.next_cursor)
    assert [s.id for s in page.sessions] == expected[2:]


async def test_combined_filters_are_served_from_the_smallest_index(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    agent = new_id()
    crowd = [at(T0 + i, agent_id=agent) for i in range(200)]
    carols = [at(T0 - 1000 + i, agent_id=agent, user_id="carol") for i in range(3)]
    await create(store, *crowd, *carols)
    await raw.config_resetstat()
    # Read from the agent's index, the page would pass over its 200 newer sessions first.
    page = await store.list_sessions(agent_id=agent, user_id="carol", status="active", limit=2)
    stats = await raw.info("commandstats")
    assert stats["cmdstat_hmget"]["calls"] == 3
    assert [s.id for s in page.sessions] == listing_order(carols)[:2]
    assert page.next_cursor is not None
    rest = await store.list_sessions(
        agent_id=agent, user_id="carol", status="active", cursor=page.next_cursor
    )
    assert [s.id for s in rest.sessions] == listing_order(carols)[2:]


async def test_a_sparse_filter_answers_short_pages_with_a_cursor_and_misses_nothing(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "_LIST_EXAMINE_EXTRA", 4)
    agent = new_id()
    # Two indexes of equal size, where the one read holds matches only far apart.
    matching = [at(T0 + 10 * i, agent_id=agent, user_id="dave") for i in range(3)]
    others = [at(T0 + 10 * i + 5, agent_id=agent, user_id=f"u{i}") for i in range(30)]
    paused = [at(T0 + 10 * i + 6, user_id="dave", status="paused") for i in range(30)]
    await create(store, *matching, *others, *paused)

    seen, sizes = await walk(store, limit=2, agent_id=agent, user_id="dave")

    assert seen == listing_order(matching)
    # Each call examines at most 2 + 1 + 4 entries, so some pages end before they fill.
    assert 0 in sizes


async def test_listing_drops_index_entries_whose_session_is_gone(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    # What an earlier chatruntime left behind when Redis expired a session.
    kept = at(T0, user_id="erin")
    await create(store, kept)
    ghost = new_id()
    await raw.zadd(f"{prefix}user_id:erin:sessions", {ghost: T0 + 1})

    page = await store.list_sessions(user_id="erin")

    assert [s.id for s in page.sessions] == [kept.id]
    assert await raw.zrange(f"{prefix}user_id:erin:sessions", 0, -1) == [kept.id]


async def test_listing_skips_an_unreadable_header_and_logs_it(
    store: RedisStore, raw: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = at(T0), at(T0 + 1)
    await create(store, good, bad)
    await raw.hset(key(prefix, "session", bad.id), "header", "{not json")
    with caplog.at_level(logging.WARNING, logger="chatruntime.stores.redis"):
        page = await store.list_sessions()
    assert [s.id for s in page.sessions] == [good.id]
    assert len(caplog.records) == 1
    assert (
        caplog.records[0]
        .getMessage()
        .startswith(f"listing skips session {bad.id}: invalid header: not valid JSON")
    )


async def test_listing_skips_a_session_key_of_the_wrong_type(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    good = at(T0)
    await create(store, good)
    bad_id = new_id()
    await raw.set(key(prefix, "session", bad_id), "not a hash")
    await raw.zadd(key(prefix, "sessions"), {bad_id: T0 + 1})
    assert [s.id for s in (await store.list_sessions()).sessions] == [good.id]
    assert await store.count_sessions() == 2


async def test_the_first_page_reads_a_page_of_sessions_not_the_store(
    store: RedisStore, raw: Redis
) -> None:
    await create(store, *(at(T0 + i) for i in range(400)))
    await raw.config_resetstat()
    page = await store.list_sessions(limit=10)
    stats = await raw.info("commandstats")
    await raw.config_resetstat()
    assert len(page.sessions) == 10
    # Ten sessions and the one that tells whether another page follows.
    assert stats["cmdstat_hmget"]["calls"] == 11
