"""What ``RedisStore`` does in the one script of a write beyond the contract: trimming with
``keep``, counting ``limits`` so racing creations hold them exactly, keeping ``turn_keys``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest
import redis
from redis.asyncio import Redis
from redis.driver_info import DriverInfo

from chatruntime.models import (
    ChatSession,
    InvalidInputError,
    LimitExceededError,
    SessionHeader,
    TurnKey,
    now_ms,
)
from chatruntime.stores import CreateLimits, RedisStore
from support.factories import T0, bumped, header, turn_items

pytestmark = [pytest.mark.anyio, pytest.mark.services]

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


def history_key(prefix: str, h: SessionHeader) -> str:
    if h.user_id is None:
        return f"{prefix}chatruntime:history:{h.id}"
    return f"{prefix}user_id:{h.user_id}:session:{h.id}:history"


# -- keep -------------------------------------------------------------------------------------


async def test_keep_trims_the_history_and_appends_in_the_same_script(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    first, second, third = turn_items(1), turn_items(2), turn_items(3)
    await store.write_session(h, first + second, expected_revision=None)

    await store.write_session(bumped(h), third, expected_revision=0, keep=4)

    assert await store.get_session(h.id) == ChatSession.from_parts(bumped(h), first + third)
    stored = await raw.lrange(history_key(prefix, h), 0, -1)
    assert [json.loads(item)["id"] for item in stored] == [i.id for i in first + third]


async def test_keep_zero_empties_the_history(store: RedisStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), [], expected_revision=0, keep=0)
    assert await store.get_session(h.id) == ChatSession.from_parts(bumped(h), [])


async def test_keeping_more_than_is_stored_is_refused_and_changes_nothing(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    with pytest.raises(InvalidInputError) as caught:
        await store.write_session(bumped(h), turn_items(2), expected_revision=0, keep=5)
    assert caught.value.details == {"session_id": h.id, "keep": 5, "stored_count": 4}
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


# -- limits -----------------------------------------------------------------------------------


async def test_racing_creations_from_two_processes_hold_the_limit_exactly(
    redis_url: str, prefix: str
) -> None:
    # Two stores (two connection pools, as two processes have) create 40 sessions at once.
    stores = [RedisStore(redis_url, key_prefix=prefix) for _ in range(2)]
    created: list[str] = []
    refused: list[str] = []
    limits = CreateLimits(now=now_ms(), max_sessions=7)

    async def create(store: RedisStore, h: SessionHeader) -> None:
        try:
            await store.write_session(h, [], expected_revision=None, limits=limits)
        except LimitExceededError as error:
            refused.append(error.details["limit"])
        else:
            created.append(h.id)

    try:
        async with anyio.create_task_group() as group:
            for n in range(40):
                group.start_soon(create, stores[n % 2], header())
        assert (len(created), refused) == (7, ["max_sessions"] * 33)
        assert await stores[0].count_sessions() == 7
    finally:
        for store in stores:
            await store.close()


async def test_the_per_user_limit_counts_only_that_users_live_sessions(
    store: RedisStore,
) -> None:
    now = now_ms()
    limits = CreateLimits(now=now, max_sessions_per_user=2)
    # Expired by the limits' clock: not counted. Another user's: not counted.
    await store.write_session(header(user_id="alice", expires_at=T0), [], expected_revision=None)
    await store.write_session(header(user_id="bob"), [], expected_revision=None)
    for _ in range(2):
        await store.write_session(
            header(user_id="alice"), [], expected_revision=None, limits=limits
        )

    with pytest.raises(LimitExceededError) as caught:
        await store.write_session(
            header(user_id="alice"), [], expected_revision=None, limits=limits
        )

    assert caught.value.details == {"limit": "max_sessions_per_user", "max_sessions_per_user": 2}
    await store.write_session(header(user_id="bob"), [], expected_revision=None, limits=limits)
    await store.write_session(header(), [], expected_revision=None, limits=limits)
    assert await store.count_sessions(user_id="alice") == 3


async def test_limits_are_refused_on_an_update(store: RedisStore) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    with pytest.raises(InvalidInputError):
        await store.write_session(
            bumped(h), [], expected_revision=0, limits=CreateLimits(now=T0, max_sessions=1)
        )


# -- the header -------------------------------------------------------------------------------


async def test_turn_keys_state_and_expiry_round_trip_exactly(store: RedisStore) -> None:
    items = turn_items(1) + turn_items(2)
    keys = [
        TurnKey(key="retry-1", item_id=items[0].id, item_count=4, created_at=T0),
        TurnKey(key="ünïcode ✓", item_id=items[4].id, item_count=4, created_at=T0 + 1),
    ]
    h = header(
        user_id="alice",
        turn_keys=keys,
        state={"agent": {"memory": [1, {"nested": None}]}},
        expires_at=now_ms() + 60_000,
    )
    await store.write_session(h, items, expected_revision=None)

    loaded = await store.get_session(h.id)

    assert loaded == ChatSession.from_parts(h, items)
    assert loaded is not None
    assert loaded.turn_keys == keys
    [listed] = (await store.list_sessions(user_id="alice")).sessions
    assert listed.turn_keys == keys
