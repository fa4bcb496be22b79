"""Data written in key layout 2 opens and is upgraded to layout 3: a user's sessions move
under ``user_id:{user}:session:{id}:``.

Layout 2 is written here by hand, key by key, as that version wrote it: every session under
``chatruntime:session:{id}`` and ``chatruntime:history:{id}``, the user index at
``chatruntime:user_sessions:{user}``, expiry tracked in ``expiring`` and ``expiring_indexes``.
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

from chatruntime.models import ChatSession, HistoryItem, SessionHeader, new_id, now_ms
from chatruntime.stores import RedisStore
from support.factories import T0, bumped, header, turn_items

pytestmark = [pytest.mark.anyio, pytest.mark.services]

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


def user_key(prefix: str, user_id: str, *parts: str) -> str:
    return prefix + ":".join(("user_id", user_id, *parts))


def as_stored(model: Any) -> str:
    return str(model.model_dump_json(by_alias=True, exclude_none=True))


async def write_layout_2(
    raw: Redis, prefix: str, h: SessionHeader, items: list[HistoryItem], *, schema: str = "2"
) -> None:
    """One session as chatruntime's layout 2 stored it."""
    session_key, history_key = key(prefix, "session", h.id), key(prefix, "history", h.id)
    await raw.hset(
        session_key,
        mapping={
            "revision": h.revision,
            "header": as_stored(h.header()),
            "agentId": h.agent_id,
            "userId": h.user_id or "",
            "status": h.status,
        },
    )
    if items:
        await raw.rpush(history_key, *(as_stored(i) for i in items))
    score = h.context.last_activity
    await raw.zadd(key(prefix, "sessions"), {h.id: score})
    await raw.zadd(key(prefix, "agent_sessions", h.agent_id), {h.id: score})
    await raw.zadd(key(prefix, "status_sessions", h.status), {h.id: score})
    if h.user_id:
        await raw.zadd(key(prefix, "user_sessions", h.user_id), {h.id: score})
    if h.expires_at is not None:
        await raw.pexpireat(session_key, h.expires_at)
        await raw.pexpireat(history_key, h.expires_at)
        await raw.zadd(key(prefix, "expiring"), {h.id: h.expires_at})
        await raw.hset(
            key(prefix, "expiring_indexes"),
            h.id,
            json.dumps([h.agent_id, h.user_id or "", h.status]),
        )
    await raw.set(key(prefix, "schema"), schema)


async def opened(redis_url: str, prefix: str) -> RedisStore:
    store = RedisStore(redis_url, key_prefix=prefix)
    await store.initialize()
    return store


async def test_a_users_session_moves_under_the_user_and_keeps_its_index_entries(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    mine, no_user = header(user_id="alice"), header()
    items = turn_items(1)
    await write_layout_2(raw, prefix, mine, items)
    await write_layout_2(raw, prefix, no_user, items)

    store = await opened(redis_url, prefix)

    assert await raw.get(key(prefix, "schema")) == "3"
    assert await raw.get(key(prefix, "owner", mine.id)) == "alice"
    assert await raw.hget(user_key(prefix, "alice", "session", mine.id, "header"), "userId") == (
        "alice"
    )
    assert await raw.llen(user_key(prefix, "alice", "session", mine.id, "history")) == 4
    assert await raw.exists(key(prefix, "session", mine.id), key(prefix, "history", mine.id)) == 0
    assert await raw.exists(key(prefix, "user_sessions", "alice")) == 0
    assert await raw.zrange(user_key(prefix, "alice", "sessions"), 0, -1, withscores=True) == [
        (mine.id, T0)
    ]
    # A session without user stays where it was.
    assert await raw.exists(key(prefix, "session", no_user.id)) == 1
    assert await store.get_session(mine.id) == ChatSession.from_parts(mine, items)
    assert await store.get_session(no_user.id) == ChatSession.from_parts(no_user, items)
    assert [s.id for s in (await store.list_sessions(user_id="alice")).sessions] == [mine.id]
    assert await store.count_sessions(user_id="alice") == 1
    assert await store.count_sessions() == 2
    await store.close()


async def test_an_expiring_session_moves_with_its_expiry(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    expires_at = now_ms() + 3_600_000
    h = header(user_id="alice", expires_at=expires_at)
    await write_layout_2(raw, prefix, h, turn_items(1))

    store = await opened(redis_url, prefix)

    for name in (
        user_key(prefix, "alice", "session", h.id, "header"),
        user_key(prefix, "alice", "session", h.id, "history"),
    ):
        assert await raw.pexpiretime(name) == expires_at
    # The owner pointer ends with the session (its ttl is set from the moved hash's).
    assert abs(await raw.pexpiretime(key(prefix, "owner", h.id)) - expires_at) <= 5
    assert await raw.zrange(user_key(prefix, "alice", "expiring"), 0, -1, withscores=True) == [
        (h.id, expires_at)
    ]
    assert await store.count_sessions(user_id="alice", live_at=now_ms()) == 1
    await store.close()


async def test_index_entries_of_sessions_already_gone_are_dropped(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    kept = header(user_id="alice")
    await write_layout_2(raw, prefix, kept, [])
    ghost = new_id()
    await raw.zadd(key(prefix, "sessions"), {ghost: T0})
    await raw.zadd(key(prefix, "user_sessions", "alice"), {ghost: T0})

    store = await opened(redis_url, prefix)

    assert await raw.zrange(key(prefix, "sessions"), 0, -1) == [kept.id]
    assert await raw.exists(key(prefix, "user_sessions", "alice")) == 0
    await store.close()


async def test_opening_an_upgraded_store_again_changes_nothing(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    await write_layout_2(raw, prefix, header(user_id="alice"), turn_items(1))
    first = await opened(redis_url, prefix)
    await first.close()
    names = sorted([name async for name in raw.scan_iter(match=f"{prefix}*")])
    again = await opened(redis_url, prefix)
    assert sorted([name async for name in raw.scan_iter(match=f"{prefix}*")]) == names
    await again.close()


async def test_a_write_to_a_session_not_moved_yet_moves_it(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    # Another process is still upgrading: the data says layout 3, this session is not moved.
    h = header(user_id="alice")
    first, second = turn_items(1), turn_items(2)
    await write_layout_2(raw, prefix, h, first, schema="3")
    store = await opened(redis_url, prefix)

    async with store.lease(h.id, timeout=1) as lease:
        assert lease.revision == 0
        await store.write_session(bumped(h), second, expected_revision=0, lease=lease)

    assert await raw.exists(key(prefix, "session", h.id), key(prefix, "history", h.id)) == 0
    assert await raw.exists(key(prefix, "user_sessions", "alice")) == 0
    assert await raw.llen(user_key(prefix, "alice", "session", h.id, "history")) == 8
    assert await store.get_session(h.id) == ChatSession.from_parts(bumped(h), first + second)
    assert [s.id for s in (await store.list_sessions(user_id="alice")).sessions] == [h.id]
    await store.close()
