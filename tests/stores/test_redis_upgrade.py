"""Data written in key layout 1 opens and is upgraded (through layout 2, to the current 3).

Layout 1 is written here by hand, key by key, as that version wrote it: a session hash of
``revision``, ``header``, ``agentId`` and ``userId``; the history list; indexes of all
sessions, per agent and per user; ``schema`` = 1. No status index, no expiry tracking.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.driver_info import DriverInfo

from chatruntime.models import (
    ChatSession,
    HistoryItem,
    SessionContext,
    SessionHeader,
    new_id,
    now_ms,
)
from chatruntime.stores import RedisStore, load_all
from support.factories import T0, bumped, header, turn_items

pytestmark = pytest.mark.anyio

DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True, driver_info=DRIVER)
    yield client
    await client.aclose()


def key(prefix: str, *parts: str) -> str:
    return prefix + ":".join(("chatruntime", *parts))


def as_stored(model: Any, **options: Any) -> str:
    return str(model.model_dump_json(by_alias=True, exclude_none=True, **options))


async def write_layout_1(
    raw: Redis, prefix: str, h: SessionHeader, items: list[HistoryItem]
) -> None:
    """One session as chatruntime's layout 1 stored it."""
    session_key = key(prefix, "session", h.id)
    await raw.hset(
        session_key,
        mapping={
            "revision": h.revision,
            "header": as_stored(h, include=set(SessionHeader.model_fields)),
            "agentId": h.agent_id,
            "userId": h.user_id or "",
        },
    )
    if items:
        await raw.rpush(key(prefix, "history", h.id), *(as_stored(i) for i in items))
    score = h.context.last_activity
    await raw.zadd(key(prefix, "sessions"), {h.id: score})
    await raw.zadd(key(prefix, "agent_sessions", h.agent_id), {h.id: score})
    if h.user_id:
        await raw.zadd(key(prefix, "user_sessions", h.user_id), {h.id: score})
    if h.expires_at is not None:
        await raw.pexpireat(session_key, h.expires_at)
        await raw.pexpireat(key(prefix, "history", h.id), h.expires_at)
    await raw.set(key(prefix, "schema"), "1")


async def opened(redis_url: str, prefix: str) -> RedisStore:
    store = RedisStore(redis_url, key_prefix=prefix)
    await store.initialize()
    return store


async def test_a_layout_1_store_opens_upgraded_with_status_indexes(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    agent = new_id()
    active = header(agent_id=agent, user_id="alice", context=SessionContext(last_activity=T0 + 2))
    paused = header(agent_id=agent, status="paused", context=SessionContext(last_activity=T0 + 1))
    items = turn_items(1)
    await write_layout_1(raw, prefix, active, items)
    await write_layout_1(raw, prefix, paused, [])

    store = await opened(redis_url, prefix)

    assert await raw.get(key(prefix, "schema")) == "3"
    # Upgraded through layout 2 to 3: alice's session now lives under her user id.
    active_key = f"{prefix}user_id:alice:session:{active.id}:header"
    assert await raw.hget(active_key, "status") == "active"
    assert await raw.zrange(key(prefix, "status_sessions", "paused"), 0, -1, withscores=True) == [
        (paused.id, T0 + 1)
    ]
    assert [s.id for s in (await store.list_sessions(status="active")).sessions] == [active.id]
    assert [s.id for s in (await store.list_sessions(agent_id=agent)).sessions] == [
        active.id,
        paused.id,
    ]
    assert await store.get_session(active.id) == ChatSession.from_parts(active, items)
    assert await store.count_sessions() == 2
    await store.close()


async def test_an_upgraded_session_takes_turns_and_changes_status_as_any_other(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await write_layout_1(raw, prefix, h, turn_items(1))
    store = await opened(redis_url, prefix)

    async with store.lease(h.id, timeout=1) as lease:
        assert lease.revision == 0
        await store.write_session(
            bumped(h, status="completed"), turn_items(2), expected_revision=0, lease=lease
        )

    assert await raw.exists(key(prefix, "status_sessions", "active")) == 0
    assert [s.id for s in (await store.list_sessions(status="completed")).sessions] == [h.id]
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert (loaded.revision, loaded.status, len(loaded.history)) == (1, "completed", 8)
    await store.close()


async def test_upgrading_tracks_the_expiry_of_expiring_sessions(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    expires_at = now_ms() + 3_600_000
    h = header(user_id="alice", expires_at=expires_at)
    await write_layout_1(raw, prefix, h, [])
    store = await opened(redis_url, prefix)

    assert await raw.zrange(key(prefix, "expiring"), 0, -1, withscores=True) == [(h.id, expires_at)]
    owners = await raw.hget(key(prefix, "expiring_indexes"), h.id)
    assert json.loads(owners) == [h.agent_id, "alice", "active"]
    await store.close()


async def test_upgrading_drops_index_entries_of_sessions_already_gone(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    # Layout 1 left these behind when Redis expired a session.
    kept = header()
    await write_layout_1(raw, prefix, kept, [])
    gone = new_id()
    await raw.zadd(key(prefix, "sessions"), {gone: T0})

    store = await opened(redis_url, prefix)

    assert await raw.zrange(key(prefix, "sessions"), 0, -1) == [kept.id]
    assert await store.count_sessions() == 1
    await store.close()


async def test_upgrading_many_sessions_in_batches_misses_none(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    made = [header(status="paused" if n % 2 else "active") for n in range(1203)]
    async with raw.pipeline(transaction=False) as pipe:
        for h in made:
            score = h.context.last_activity
            pipe.hset(
                key(prefix, "session", h.id),
                mapping={
                    "revision": 0,
                    "header": as_stored(h),
                    "agentId": h.agent_id,
                    "userId": "",
                },
            )
            pipe.zadd(key(prefix, "sessions"), {h.id: score})
            pipe.zadd(key(prefix, "agent_sessions", h.agent_id), {h.id: score})
        pipe.set(key(prefix, "schema"), "1")
        await pipe.execute()

    store = await opened(redis_url, prefix)

    assert await raw.zcard(key(prefix, "status_sessions", "paused")) == 601
    assert await raw.zcard(key(prefix, "status_sessions", "active")) == 602
    report = await load_all(store)
    assert (len(report.sessions), report.corrupt) == (1203, [])
    await store.close()


async def test_opening_an_upgraded_store_again_changes_nothing(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    h = header(status="paused")
    await write_layout_1(raw, prefix, h, turn_items(1))
    first = await opened(redis_url, prefix)
    await first.close()
    names = sorted([name async for name in raw.scan_iter(match=f"{prefix}*")])
    again = await opened(redis_url, prefix)
    assert sorted([name async for name in raw.scan_iter(match=f"{prefix}*")]) == names
    assert await raw.get(key(prefix, "schema")) == "3"
    assert [s.id for s in (await again.list_sessions(status="paused")).sessions] == [h.id]
    await again.close()
