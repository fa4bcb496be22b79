"""How ``RedisStore`` counts sessions and finds expired ones: from sorted sets, with Redis's own
key expiry kept consistent with its indexes.

A session whose ``expires_at`` is ahead of Redis's clock gets key expiry (Redis removes it);
one whose ``expires_at`` is already past when written (the caller's clock is behind, or
injected as in these tests) is kept as *overdue* until deleted, as on every other store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis
from redis.asyncio import Redis
from redis.driver_info import DriverInfo

from chatruntime.models import SessionHeader, now_ms
from chatruntime.stores import RedisStore
from chatruntime.stores import _redis_scripts as scripts
from support.factories import T0, header

pytestmark = [pytest.mark.anyio, pytest.mark.services]

DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)
HOUR = 3_600_000


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


def user_key(prefix: str, user_id: str, *parts: str) -> str:
    return prefix + ":".join(("user_id", user_id, *parts))


async def create(store: RedisStore, *headers: SessionHeader) -> None:
    for h in headers:
        await store.write_session(h, [], expected_revision=None)


async def expire_now(raw: Redis, prefix: str, *headers: SessionHeader) -> None:
    """Let Redis expire these sessions' keys now, as it does at their ``expires_at``."""
    for h in headers:
        names = [key(prefix, "owner", h.id)]
        if h.user_id is None:
            names += [key(prefix, "session", h.id), key(prefix, "history", h.id)]
        else:
            names += [user_key(prefix, h.user_id, "session", h.id, "header")]
        for name in names:
            await raw.pexpire(name, 1)
        await raw.zadd(key(prefix, "expiring"), {h.id: now_ms() - 1})
        if h.user_id is not None:
            await raw.zadd(user_key(prefix, h.user_id, "expiring"), {h.id: now_ms() - 1})
    await anyio.sleep(0.01)


async def test_an_expires_at_already_past_is_kept_as_overdue_without_key_expiry(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice", expires_at=T0 + 10)
    await create(store, h)

    assert await store.get_revision(h.id) == 0
    assert await raw.pttl(user_key(prefix, "alice", "session", h.id, "header")) == -1
    for overdue in (key(prefix, "overdue"), user_key(prefix, "alice", "overdue")):
        assert await raw.zrange(overdue, 0, -1, withscores=True) == [(h.id, T0 + 10)]
    assert await raw.exists(key(prefix, "expiring")) == 0


async def test_a_later_expiry_turns_an_overdue_session_into_one_redis_expires(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(expires_at=T0 + 10)
    await create(store, h)
    later = now_ms() + HOUR
    await store.write_session(
        h.model_copy(update={"revision": 1, "expires_at": later}), [], expected_revision=0
    )
    assert await raw.exists(key(prefix, "overdue")) == 0
    assert await raw.zrange(key(prefix, "expiring"), 0, -1, withscores=True) == [(h.id, later)]
    assert await raw.pexpiretime(key(prefix, "session", h.id)) == later


@pytest.fixture
async def mixed(store: RedisStore, raw: Redis, prefix: str) -> dict[str, SessionHeader]:
    """Sessions of every kind of expiry: none, ahead, overdue, and expired by Redis."""
    made = {
        "lasting": header(user_id="alice"),
        "ahead": header(user_id="alice", expires_at=now_ms() + HOUR),
        "overdue": header(user_id="alice", expires_at=T0 + 10),
        "gone": header(user_id="bob", expires_at=now_ms() + HOUR),
        "no user": header(),
    }
    await create(store, *made.values())
    await expire_now(raw, prefix, made["gone"])
    return made


async def test_counts_leave_out_what_redis_expired(
    store: RedisStore, mixed: dict[str, SessionHeader]
) -> None:
    assert await store.count_sessions() == 4
    assert await store.count_sessions(user_id="alice") == 3
    assert await store.count_sessions(user_id="bob") == 0
    assert await store.count_sessions(user_id="carol") == 0


@pytest.mark.parametrize(
    ("live_at", "everyone", "alice"),
    [(T0, 4, 3), (T0 + 10, 3, 2), (None, 4, 3)],
    ids=["before-overdue", "at-overdue", "all"],
)
async def test_live_counts_leave_out_what_expired_by_then(
    store: RedisStore,
    mixed: dict[str, SessionHeader],
    live_at: int | None,
    everyone: int,
    alice: int,
) -> None:
    assert await store.count_sessions(live_at=live_at) == everyone
    assert await store.count_sessions(user_id="alice", live_at=live_at) == alice


async def test_a_live_count_after_every_expiry_counts_the_sessions_without_one(
    store: RedisStore, mixed: dict[str, SessionHeader]
) -> None:
    later = now_ms() + 2 * HOUR
    assert await store.count_sessions(live_at=later) == 2
    assert await store.count_sessions(user_id="alice", live_at=later) == 1


async def test_a_count_reads_only_sorted_set_sizes_and_ranges(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    await create(store, *(header(user_id="alice", expires_at=now_ms() + HOUR) for _ in range(50)))
    await raw.config_resetstat()
    assert await store.count_sessions(user_id="alice", live_at=now_ms()) == 50
    stats = await raw.info("commandstats")
    await raw.config_resetstat()
    used = {name.removeprefix("cmdstat_") for name in stats} - {"config|resetstat"}
    assert used == {"evalsha", "time", "zrangebyscore", "zcard", "zcount"}


async def test_user_counts_leave_out_expired_sessions_beyond_one_sweep(
    store: RedisStore, raw: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scripts, "SWEEP_BUDGET", 1)
    kept = header(user_id="alice")
    expiring = [header(user_id="alice", expires_at=now_ms() + HOUR) for _ in range(4)]
    await create(store, kept, *expiring)
    await expire_now(raw, prefix, *expiring)

    assert await store.count_sessions(user_id="alice") == 1
    assert await store.count_sessions(user_id="alice", live_at=T0) == 1
    assert await store.count_sessions(live_at=T0) == 1


async def test_expired_sessions_are_the_overdue_and_those_due_by_the_callers_clock(
    store: RedisStore, mixed: dict[str, SessionHeader]
) -> None:
    assert await store.expired_sessions(T0 + 9) == []
    assert await store.expired_sessions(T0 + 10) == [mixed["overdue"].id]
    later = now_ms() + 2 * HOUR
    assert await store.expired_sessions(later) == [mixed["overdue"].id, mixed["ahead"].id]


async def test_expired_sessions_are_earliest_first_then_by_id_and_limited(
    store: RedisStore,
) -> None:
    made = [header(expires_at=T0 + n % 3) for n in range(9)]
    await create(store, *made)
    expected = [h.id for h in sorted(made, key=lambda h: (h.expires_at, h.id))]
    assert await store.expired_sessions(T0 + 5) == expected
    assert await store.expired_sessions(T0 + 5, limit=4) == expected[:4]


async def test_expired_sessions_leave_out_and_unindex_what_redis_expired(
    store: RedisStore, raw: Redis, prefix: str, mixed: dict[str, SessionHeader]
) -> None:
    gone = mixed["gone"]
    assert gone.id not in await store.expired_sessions(now_ms() + 2 * HOUR)
    assert await raw.zscore(key(prefix, "sessions"), gone.id) is None
    assert await raw.exists(user_key(prefix, "bob", "sessions")) == 0
    assert await raw.hget(key(prefix, "expiring_indexes"), gone.id) is None


async def test_deleting_an_overdue_session_stops_tracking_it(
    store: RedisStore, raw: Redis, prefix: str, mixed: dict[str, SessionHeader]
) -> None:
    overdue = mixed["overdue"]
    assert await store.delete_session(overdue.id) is True
    assert await store.expired_sessions(T0 + 10) == []
    assert await raw.zscore(user_key(prefix, "alice", "overdue"), overdue.id) is None
    assert await store.count_sessions(user_id="alice") == 2
