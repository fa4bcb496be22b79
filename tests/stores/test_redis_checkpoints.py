"""Where ``RedisStore`` keeps checkpoints: a hash and an order set next to the session's keys,
gone with the session, expiring with it, moving with it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from redis.asyncio import Redis
from redis.driver_info import DriverInfo

from chatruntime.models import Checkpoint, CorruptDataError, SessionHeader, new_id, now_ms
from chatruntime.stores import RedisStore
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


def checkpoint(h: SessionHeader, *, created_at: int = T0, **overrides: object) -> Checkpoint:
    values: dict[str, object] = {
        "id": new_id(),
        "session_id": h.id,
        "created_at": created_at,
        "header": h,
        "item_count": 4,
        "shared_count": 4,
    }
    values.update(overrides)
    return Checkpoint.model_validate(values)


def checkpoint_keys(prefix: str, h: SessionHeader) -> tuple[str, str]:
    if h.user_id is None:
        base = f"{prefix}chatruntime:"
        return f"{base}checkpoints:{h.id}", f"{base}checkpoint_order:{h.id}"
    base = f"{prefix}user_id:{h.user_id}:session:{h.id}:"
    return f"{base}checkpoints", f"{base}checkpoint_order"


async def test_a_checkpoint_is_json_in_the_sessions_hash_and_ordered_by_time(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    saved = checkpoint(h, label="before", data={"turn": 1}, created_at=T0 + 5)

    await store.save_checkpoint(saved)

    hash_key, order_key = checkpoint_keys(prefix, h)
    assert hash_key == f"{prefix}user_id:alice:session:{h.id}:checkpoints"
    stored = json.loads(await raw.hget(hash_key, saved.id))
    assert Checkpoint.model_validate(stored) == saved
    assert await raw.zrange(order_key, 0, -1, withscores=True) == [(saved.id, T0 + 5)]
    assert await store.get_checkpoint(h.id, saved.id) == saved


async def test_checkpoints_list_newest_first_with_equal_times_by_id_descending(
    store: RedisStore,
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    made = [checkpoint(h, created_at=T0 + n % 2) for n in range(6)]
    for saved in made:
        await store.save_checkpoint(saved)

    listed = await store.list_checkpoints(h.id)

    assert [c.id for c in listed] == [
        c.id for c in sorted(made, key=lambda c: (c.created_at, c.id), reverse=True)
    ]


async def test_saving_a_checkpoint_again_replaces_it(store: RedisStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    saved = checkpoint(h)
    await store.save_checkpoint(saved)
    renamed = saved.model_copy(update={"label": "renamed", "created_at": T0 + 9})
    await store.save_checkpoint(renamed)
    assert await store.list_checkpoints(h.id) == [renamed]


async def test_deleting_and_clearing_checkpoints_remove_both_keys(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    first, second, third = (checkpoint(h, created_at=T0 + n) for n in range(3))
    for saved in (first, second, third):
        await store.save_checkpoint(saved)

    assert await store.delete_checkpoint(h.id, first.id) is True
    assert await store.delete_checkpoint(h.id, first.id) is False
    assert await store.list_checkpoints(h.id) == [third, second]
    assert await store.clear_checkpoints(h.id) == 2
    assert await raw.exists(*checkpoint_keys(prefix, h)) == 0
    assert await store.clear_checkpoints(h.id) == 0


async def test_deleting_the_session_deletes_its_checkpoints(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.save_checkpoint(checkpoint(h))
    await store.delete_session(h.id)
    assert await raw.exists(*checkpoint_keys(prefix, h)) == 0
    assert await store.list_checkpoints(h.id) == []


async def test_checkpoints_expire_with_the_session(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    expires_at = now_ms() + 3_600_000
    h = header(user_id="alice", expires_at=expires_at)
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.save_checkpoint(checkpoint(h))
    for name in checkpoint_keys(prefix, h):
        assert await raw.pexpiretime(name) == expires_at

    # A turn slides the expiry: the checkpoints slide with it.
    later = expires_at + 60_000
    await store.write_session(bumped(h, expires_at=later), [], expected_revision=0)
    for name in checkpoint_keys(prefix, h):
        assert await raw.pexpiretime(name) == later


async def test_checkpoints_move_with_the_session_to_another_user(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    saved = checkpoint(h)
    await store.save_checkpoint(saved)
    moved = bumped(h, user_id="bob")
    await store.write_session(moved, [], expected_revision=0)
    assert await raw.exists(*checkpoint_keys(prefix, h)) == 0
    assert await raw.exists(*checkpoint_keys(prefix, moved)) == 2
    assert await store.list_checkpoints(h.id) == [saved]


async def test_an_unreadable_checkpoint_is_corrupt_data_naming_its_key(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    saved = checkpoint(h)
    await store.save_checkpoint(saved)
    hash_key, _ = checkpoint_keys(prefix, h)
    await raw.hset(hash_key, saved.id, "{not json")
    with pytest.raises(CorruptDataError) as caught:
        await store.get_checkpoint(h.id, saved.id)
    assert caught.value.details["location"] == hash_key
    assert caught.value.details["reason"].startswith(f"checkpoint {saved.id} is invalid: ")
