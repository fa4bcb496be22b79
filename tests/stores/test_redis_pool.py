"""How ``RedisStore`` connects: a pool that waits for a free connection, and its settings.

Also the 1,000-concurrent-sessions promise: a store built from a URL with default settings
serves 1,000 sessions taking two turns each at once without one error.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import anyio
import pytest
import redis
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.driver_info import DriverInfo

from chatruntime.models import ChatSession, InvalidInputError, StorageError, new_id
from chatruntime.stores import RedisStore
from support.factories import bumped, header, turn_items

pytestmark = pytest.mark.anyio

DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


def pool_of(store: RedisStore) -> Any:
    return store.client.connection_pool


async def test_a_store_from_a_url_waits_in_a_blocking_pool_with_the_default_settings(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url)
    pool = pool_of(store)
    assert isinstance(pool, BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (64, 20.0)
    await store.close()


async def test_pool_settings_are_read_from_the_url_query(redis_url: str, prefix: str) -> None:
    store = RedisStore(
        f"{redis_url}?max_connections=3&pool_timeout=0.5&socket_keepalive=true",
        key_prefix=prefix,
    )
    pool = pool_of(store)
    assert (pool.max_connections, pool.timeout) == (3, 0.5)
    assert pool.connection_kwargs["socket_keepalive"] is True
    await store.initialize()
    await store.close()


async def test_pool_settings_are_taken_as_arguments(redis_url: str) -> None:
    store = RedisStore(redis_url, max_connections=5, pool_timeout=1.5)
    assert (pool_of(store).max_connections, pool_of(store).timeout) == (5, 1.5)
    await store.close()


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("?max_connections=0", "max_connections", "an integer of at least 1, got '0'"),
        ("?max_connections=many", "max_connections", "an integer of at least 1, got 'many'"),
        ("?pool_timeout=0", "pool_timeout", "a positive number, got '0'"),
        ("?pool_timeout=soon", "pool_timeout", "a positive number, got 'soon'"),
    ],
)
def test_a_bad_pool_setting_in_the_url_is_invalid_input(
    redis_url: str, query: str, field: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        RedisStore(redis_url + query)
    assert caught.value.message == f"{field} in the URL must be {message}"
    assert caught.value.details == {"field": field}


@pytest.mark.parametrize(
    ("query", "arguments", "message"),
    [
        ("", {"max_connections": 0}, "max_connections must be an integer of at least 1, got 0"),
        ("", {"pool_timeout": -1.0}, "pool_timeout must be a positive number, got -1.0"),
        (
            "?max_connections=8",
            {"max_connections": 8},
            "max_connections is given both in the URL and as an argument; give it once",
        ),
        (
            "?pool_timeout=2",
            {"pool_timeout": 2.0},
            "pool_timeout is given both in the URL and as an argument; give it once",
        ),
    ],
)
def test_a_bad_or_repeated_pool_setting_argument_is_a_value_error(
    redis_url: str, query: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        RedisStore(redis_url + query, **arguments)


def test_redis_pys_own_timeout_query_is_refused_for_the_clearer_pool_timeout(
    redis_url: str,
) -> None:
    with pytest.raises(InvalidInputError, match="use pool_timeout=, not timeout="):
        RedisStore(f"{redis_url}?timeout=5")


def test_pool_settings_apply_only_to_a_store_built_from_a_url(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, driver_info=DRIVER)
    with pytest.raises(ValueError, match="apply to a store built from a URL"):
        RedisStore(connection_pool=pool, max_connections=10)


async def test_more_concurrent_calls_than_connections_wait_for_one(
    redis_url: str, prefix: str
) -> None:
    store = RedisStore(redis_url, key_prefix=prefix, max_connections=2)
    await store.initialize()
    made = [header() for _ in range(100)]
    async with anyio.create_task_group() as group:
        for h in made:
            group.start_soon(lambda h=h: store.write_session(h, [], expected_revision=None))
    assert await store.count_sessions() == 100
    await store.close()


async def test_no_free_connection_in_time_is_a_storage_error_naming_the_settings(
    redis_url: str, prefix: str
) -> None:
    store = RedisStore(redis_url, key_prefix=prefix, max_connections=1, pool_timeout=0.2)
    await store.initialize()
    async with anyio.create_task_group() as group:
        # A blocking read holds the only connection for a second.
        group.start_soon(lambda: store.client.blpop([f"{prefix}nothing"], timeout=1))
        await anyio.sleep(0.05)
        started = anyio.current_time()
        with pytest.raises(StorageError) as caught:
            await store.get_session(new_id())
        waited = anyio.current_time() - started
        group.cancel_scope.cancel()
    await store.close()
    server = caught.value.details["server"]
    assert caught.value.message == (
        f"no free connection to Redis at {server}: all 1 were in use for 0.2s; raise "
        "max_connections or pool_timeout (in the store URL's query or as RedisStore "
        "arguments), or lower the load"
    )
    assert caught.value.details == {"server": server, "max_connections": 1, "pool_timeout": 0.2}
    assert 0.15 < waited < 0.9


async def test_a_full_pool_passed_in_that_does_not_wait_says_so(
    redis_url: str, prefix: str
) -> None:
    pool = ConnectionPool.from_url(redis_url, max_connections=1, driver_info=DRIVER)
    store = RedisStore(connection_pool=pool, key_prefix=prefix)
    await store.initialize()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: store.client.blpop([f"{prefix}nothing"], timeout=1))
        await anyio.sleep(0.05)
        with pytest.raises(StorageError, match=r"pass a redis\.asyncio\.BlockingConnectionPool"):
            await store.get_session(new_id())
        group.cancel_scope.cancel()
    await pool.disconnect()


async def test_a_thousand_sessions_taking_two_turns_at_once_with_default_settings(
    redis_url: str, prefix: str
) -> None:
    store = RedisStore(redis_url, key_prefix=prefix)
    await store.initialize()
    errors: list[Exception] = []
    made = [header() for _ in range(1000)]

    async def two_turns(h: Any) -> None:
        try:
            async with store.lease(h.id) as lease:
                assert (lease.revision_known, lease.revision) == (True, None)
                await store.write_session(h, turn_items(1), expected_revision=None, lease=lease)
            async with store.lease(h.id) as lease:
                assert lease.revision == 0
                await store.write_session(
                    bumped(h), turn_items(2), expected_revision=0, lease=lease
                )
        except Exception as error:
            errors.append(error)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for h in made:
                group.start_soon(two_turns, h)

    assert errors == []
    assert await store.count_sessions() == 1000
    sample = await store.get_session(made[500].id)
    assert isinstance(sample, ChatSession)
    assert (sample.revision, len(sample.history)) == (1, 8)
    await store.close()
