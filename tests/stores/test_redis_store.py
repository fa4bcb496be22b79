"""What ``RedisStore`` does beyond the contract: its keys, indexes, leases and failures.

Runs against the session's throwaway Redis server; each test gets its own key prefix.
Listing, tail reads and connection pools are specified in ``test_redis_listing.py``,
``test_redis_pool.py``; layout upgrades in ``test_redis_upgrade.py`` (1) and
``test_redis_layout.py`` (2); counts and expiry in ``test_redis_expiry.py``; keep, limits and
the header in ``test_redis_writes.py``; checkpoints in ``test_redis_checkpoints.py``; a Redis
that stops answering during a write in ``test_redis_stall.py``.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from functools import partial
from typing import Any, TypeVar

import anyio
import pytest
import redis
from redis.asyncio import ConnectionPool, Redis
from redis.driver_info import DriverInfo

from chatruntime.models import (
    BusyError,
    ChatSession,
    ConflictError,
    CorruptDataError,
    InvalidInputError,
    MessageItem,
    SessionContext,
    SessionHeader,
    StorageError,
    StoreVersionError,
    new_id,
    now_ms,
)
from chatruntime.stores import CorruptRecord, RedisStore, load_all
from chatruntime.stores import _redis_scripts as scripts
from support.factories import T0, agent_spec, bumped, header, turn_items
from support.services import start_redis

pytestmark = pytest.mark.anyio

T = TypeVar("T")

# Without an explicit version redis-py reads package metadata for every new connection,
# which the blocking-call detector rightly flags when it happens inside the store.
DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)


def raw_client(url: str, **options: Any) -> Redis:
    return Redis.from_url(url, decode_responses=True, driver_info=DRIVER, **options)


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
    client = raw_client(redis_url)
    yield client
    await client.aclose()


def key(prefix: str, *parts: str) -> str:
    return prefix + ":".join(("chatruntime", *parts))


def user_key(prefix: str, user_id: str, *parts: str) -> str:
    """A key of the user's data, in the seed's pattern ``user_id:{user_id}:...``."""
    return prefix + ":".join(("user_id", user_id, *parts))


def session_keys(prefix: str, h: SessionHeader) -> list[str]:
    """Where the session's header hash and history list are, by its user."""
    if h.user_id is None:
        return [key(prefix, "session", h.id), key(prefix, "history", h.id)]
    return [
        user_key(prefix, h.user_id, "session", h.id, "header"),
        user_key(prefix, h.user_id, "session", h.id, "history"),
    ]


def wire(model: Any) -> dict[str, Any]:
    return dict(model.to_wire())


async def keys_under(raw: Redis, prefix: str) -> set[str]:
    return {name async for name in raw.scan_iter(match=f"{prefix}*")}


async def commands_sent(raw: Redis, action: Awaitable[T]) -> tuple[T, list[str], list[str]]:
    """What ``action`` returned, and the commands other clients sent Redis meanwhile and
    those their scripts ran, as MONITOR shows them."""
    end = f"end-{uuid.uuid4().hex}"
    async with raw.monitor() as monitor:
        result = await action
        await raw.echo(end)
        seen: list[dict[str, Any]] = []
        while (entry := await monitor.next_command())["command"] != f"ECHO {end}":
            seen.append(entry)
    ours = (entry["client_address"], entry["client_port"])
    others = [e for e in seen if (e["client_address"], e["client_port"]) != ours]
    sent = [e["command"] for e in others if e.get("client_type") != "lua"]
    by_scripts = [e["command"] for e in others if e.get("client_type") == "lua"]
    return result, sent, by_scripts


async def snapshot(raw: Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` with its value and expiry (``DUMP`` would also show the
    order of a hash's buckets, which a read may change)."""
    readers = {
        "string": raw.get,
        "hash": raw.hgetall,
        "list": lambda name: raw.lrange(name, 0, -1),
        "zset": lambda name: raw.zrange(name, 0, -1, withscores=True),
    }
    found: dict[str, Any] = {}
    for name in await keys_under(raw, prefix):
        kind = await raw.type(name)
        found[name] = (kind, await readers[kind](name), await raw.pexpiretime(name))
    return found


# -- keys and values ------------------------------------------------------------------------


async def test_created_session_is_a_header_hash_a_history_list_and_index_entries(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="user-1")
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    header_key = f"{prefix}user_id:user-1:session:{h.id}:header"
    history_key = f"{prefix}user_id:user-1:session:{h.id}:history"

    stored = await raw.hgetall(header_key)
    assert set(stored) == {"revision", "header", "agentId", "userId", "status"}
    assert (stored["revision"], stored["agentId"], stored["userId"], stored["status"]) == (
        "0",
        h.agent_id,
        "user-1",
        "active",
    )
    assert json.loads(stored["header"]) == wire(h)
    history = await raw.lrange(history_key, 0, -1)
    assert [json.loads(element) for element in history] == [wire(item) for item in items]
    assert await raw.get(key(prefix, "owner", h.id)) == "user-1"
    indexes = [
        key(prefix, "sessions"),
        key(prefix, "agent_sessions", h.agent_id),
        f"{prefix}user_id:user-1:sessions",
        key(prefix, "status_sessions", "active"),
    ]
    for index in indexes:
        assert await raw.zrange(index, 0, -1, withscores=True) == [(h.id, T0)]
    assert await keys_under(raw, prefix) == {
        key(prefix, "schema"),
        header_key,
        history_key,
        key(prefix, "owner", h.id),
        *indexes,
    }


async def test_a_session_without_user_is_keyed_by_its_id_alone(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    assert await keys_under(raw, prefix) == {
        key(prefix, "schema"),
        key(prefix, "session", h.id),
        key(prefix, "history", h.id),
        key(prefix, "sessions"),
        key(prefix, "agent_sessions", h.agent_id),
        key(prefix, "status_sessions", "active"),
    }


async def test_a_turn_pushes_exactly_its_items_and_rewrites_nothing(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    history_key = key(prefix, "history", h.id)

    events = await history_key_events(
        raw, history_key, store.write_session(bumped(h), second, expected_revision=0)
    )

    assert events == ["rpush"]
    history = await raw.lrange(history_key, 0, -1)
    assert [json.loads(element) for element in history] == [wire(i) for i in first + second]


async def test_a_header_only_write_does_not_touch_the_history(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    history_key = key(prefix, "history", h.id)

    renamed = bumped(h, name="Renamed")
    events = await history_key_events(
        raw, history_key, store.write_session(renamed, [], expected_revision=0)
    )

    assert events == []
    stored = await raw.hmget(key(prefix, "session", h.id), ["revision", "header"])
    assert stored[0] == "1"
    assert json.loads(stored[1]) == wire(renamed)


async def history_key_events(raw: Redis, history_key: str, write: Any) -> list[str]:
    """The keyspace events Redis reports for ``history_key`` while ``write`` runs."""
    previous = (await raw.config_get("notify-keyspace-events"))["notify-keyspace-events"]
    await raw.config_set("notify-keyspace-events", "KA")
    pubsub = raw.pubsub()
    try:
        await pubsub.subscribe(f"__keyspace@0__:{history_key}")
        await pubsub.get_message(timeout=1)  # the subscription confirmation
        await write
        events: list[str] = []
        while (message := await pubsub.get_message(timeout=0.2)) is not None:
            events.append(message["data"])
        return events
    finally:
        await pubsub.aclose()
        await raw.config_set("notify-keyspace-events", previous)


async def test_a_long_turn_is_pushed_whole_and_in_order(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    items = [MessageItem(role="user", content=f"m{n}", timestamp=T0) for n in range(2500)]
    await store.write_session(h, items, expected_revision=None)
    history = await raw.lrange(key(prefix, "history", h.id), 0, -1)
    assert [json.loads(element)["content"] for element in history] == [f"m{n}" for n in range(2500)]


async def test_agents_are_json_strings_indexed_by_creation_time(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    spec = agent_spec(created_at=5)
    await store.save_agent(spec)
    assert json.loads(await raw.get(key(prefix, "agent", spec.id))) == wire(spec)
    assert await raw.zrange(key(prefix, "agents"), 0, -1, withscores=True) == [(spec.id, 5.0)]
    await store.delete_agent(spec.id)
    assert await keys_under(raw, prefix) == {key(prefix, "schema")}


# -- indexes --------------------------------------------------------------------------------


async def test_changing_user_and_status_moves_the_session_between_indexes(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice", expires_at=now_ms() + 3_600_000)
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    moved = bumped(h, user_id="bob", status="paused", context=SessionContext(last_activity=T0 + 7))
    await store.write_session(moved, [], expected_revision=0)

    assert await raw.exists(user_key(prefix, "alice", "sessions")) == 0
    assert await raw.exists(user_key(prefix, "alice", "expiring")) == 0
    assert await raw.exists(key(prefix, "status_sessions", "active")) == 0
    for index in (
        key(prefix, "agent_sessions", h.agent_id),
        user_key(prefix, "bob", "sessions"),
        key(prefix, "status_sessions", "paused"),
        key(prefix, "sessions"),
    ):
        assert await raw.zrange(index, 0, -1, withscores=True) == [(h.id, T0 + 7)]
    assert await raw.zrange(user_key(prefix, "bob", "expiring"), 0, -1) == [h.id]
    # Its data moved under bob, expiry and all.
    alices, bobs = session_keys(prefix, h), session_keys(prefix, moved)
    assert await raw.exists(*alices) == 0
    assert await raw.hget(bobs[0], "status") == "paused"
    assert await raw.llen(bobs[1]) == 4
    assert await raw.get(key(prefix, "owner", h.id)) == "bob"
    assert await raw.pexpiretime(bobs[0]) == h.expires_at
    assert await store.get_session(h.id) == ChatSession.from_parts(moved, items)


async def test_removing_the_user_drops_the_session_from_the_user_index(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h, user_id=None), [], expected_revision=0)
    assert await raw.exists(user_key(prefix, "alice", "sessions")) == 0
    assert await raw.hget(key(prefix, "session", h.id), "userId") == ""
    assert await raw.llen(key(prefix, "history", h.id)) == 4
    assert await raw.exists(key(prefix, "owner", h.id)) == 0
    assert await raw.zrange(key(prefix, "agent_sessions", h.agent_id), 0, -1) == [h.id]


async def test_a_write_naming_another_agent_is_refused_and_leaves_the_indexes(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    before = await snapshot(raw, prefix)
    other_agent = new_id()

    with pytest.raises(InvalidInputError) as caught:
        await store.write_session(bumped(h, agent_id=other_agent), [], expected_revision=0)

    assert caught.value.details == {
        "session_id": h.id,
        "agent_id": other_agent,
        "stored_agent_id": h.agent_id,
    }
    assert await snapshot(raw, prefix) == before


async def test_a_refused_write_leaves_header_history_and_indexes_as_they_were(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    before = await snapshot(raw, prefix)

    with pytest.raises(ConflictError) as caught:
        await store.write_session(
            h.model_copy(update={"revision": 6, "user_id": "bob", "status": "paused"}),
            turn_items(2),
            expected_revision=5,
        )

    assert caught.value.details == {
        "session_id": h.id,
        "stored_revision": 0,
        "expected_revision": 5,
    }
    assert caught.value.message == (
        f"session {h.id} is at revision 0, not 5: reload it and try again"
    )
    assert await snapshot(raw, prefix) == before


async def test_update_of_a_missing_session_says_it_no_longer_exists(store: RedisStore) -> None:
    h = header()
    with pytest.raises(ConflictError, match=f"^session {h.id} no longer exists$"):
        await store.write_session(bumped(h), [], expected_revision=0)


async def test_delete_removes_header_history_and_every_index_entry(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    kept = header(user_id="alice")
    gone = header(user_id="alice", agent_id=kept.agent_id, expires_at=now_ms() + 3_600_000)
    await store.write_session(kept, [], expected_revision=None)
    await store.write_session(gone, turn_items(1), expected_revision=None)

    assert await store.delete_session(gone.id) is True

    assert await raw.exists(*session_keys(prefix, gone), key(prefix, "owner", gone.id)) == 0
    for index in (
        key(prefix, "sessions"),
        key(prefix, "agent_sessions", kept.agent_id),
        user_key(prefix, "alice", "sessions"),
        key(prefix, "status_sessions", "active"),
    ):
        assert await raw.zrange(index, 0, -1) == [kept.id]
    assert (
        await raw.exists(
            key(prefix, "expiring"),
            key(prefix, "expiring_indexes"),
            user_key(prefix, "alice", "expiring"),
        )
        == 0
    )


async def test_repeating_a_stored_write_succeeds_without_writing_twice(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    # What redis-py does when a reply is lost and it retries the script.
    h = header()
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, second, expected_revision=0)
    await store.write_session(h1, second, expected_revision=0)
    assert await raw.llen(key(prefix, "history", h.id)) == 8
    assert await store.get_session(h.id) == ChatSession.from_parts(h1, first + second)
    with pytest.raises(ConflictError):
        await store.write_session(h1, turn_items(3), expected_revision=0)


async def test_a_scan_yields_every_session_once_a_batch_at_a_time(store: RedisStore) -> None:
    # More sessions than a scan batch, and than Redis keeps in a compact sorted set.
    made = [header() for _ in range(160)]
    async with anyio.create_task_group() as group:
        for h in made:
            group.start_soon(partial(store.write_session, h, turn_items(1), expected_revision=None))

    scanned = [found async for found in store.scan_sessions()]

    assert sorted(s.id for s in scanned if isinstance(s, ChatSession)) == sorted(h.id for h in made)
    assert all(isinstance(s, ChatSession) and len(s.history) == 4 for s in scanned)


async def test_a_scan_skips_index_entries_whose_session_is_gone(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    await raw.zadd(key(prefix, "sessions"), {new_id(): T0})
    assert [s.id async for s in store.scan_sessions()] == [h.id]


# -- tail reads -----------------------------------------------------------------------------


async def test_a_tail_read_is_one_script_that_reads_only_the_tail(
    store: RedisStore, prefix: str, raw: Redis
) -> None:
    h, items = header(), turn_items(1) + turn_items(2)
    await store.write_session(h, items, expected_revision=None)
    session_key, history_key = key(prefix, "session", h.id), key(prefix, "history", h.id)

    read, sent, by_scripts = await commands_sent(raw, store.get_session(h.id, last=3))

    assert read == ChatSession.from_parts(h, items[-3:])
    assert [command.split()[0] for command in sent] == ["EVALSHA"]
    assert [c for c in by_scripts if c.startswith(("LRANGE", "HMGET"))] == [
        f"HMGET {session_key} revision header",
        f"LRANGE {history_key} -3 -1",
    ]


async def test_a_tail_read_does_not_read_a_corrupt_item_before_the_tail(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    await raw.lset(key(prefix, "history", h.id), 0, "{not json")
    assert await store.get_session(h.id, last=3) == ChatSession.from_parts(h, items[1:])
    with pytest.raises(CorruptDataError):
        await store.get_session(h.id)


async def test_a_corrupt_item_in_the_tail_is_reported_at_its_place_in_the_history(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, turn_items(1) + turn_items(2), expected_revision=None)
    history_key = key(prefix, "history", h.id)
    await raw.lset(history_key, 6, '{"type": "bogus"}')
    with pytest.raises(CorruptDataError) as caught:
        await store.get_session(h.id, last=3)
    assert caught.value.details["location"] == history_key
    assert caught.value.details["reason"].startswith("invalid item at index 6: ")


@pytest.mark.parametrize("last", [-1, True, 2.0])
async def test_a_tail_of_a_negative_or_non_integer_length_is_invalid(
    store: RedisStore, last: Any
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await store.get_session(new_id(), last=last)
    assert caught.value.details == {"field": "last"}


# -- expiry ---------------------------------------------------------------------------------


async def test_expires_at_becomes_the_keys_expiry_and_is_tracked_for_the_indexes(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    expires_at = now_ms() + 3_600_000
    h = header(expires_at=expires_at, user_id="alice")
    await store.write_session(h, turn_items(1), expected_revision=None)
    for name in (*session_keys(prefix, h), key(prefix, "owner", h.id)):
        assert await raw.pexpiretime(name) == expires_at
    for expiring in (key(prefix, "expiring"), user_key(prefix, "alice", "expiring")):
        assert await raw.zrange(expiring, 0, -1, withscores=True) == [(h.id, expires_at)]
    owners = await raw.hget(key(prefix, "expiring_indexes"), h.id)
    assert json.loads(owners) == [h.agent_id, "alice", "active"]


async def test_clearing_expires_at_persists_the_keys_and_stops_tracking_them(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header(expires_at=now_ms() + 3_600_000)
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h, expires_at=None), [], expected_revision=0)
    assert await raw.pttl(key(prefix, "session", h.id)) == -1
    assert await raw.pttl(key(prefix, "history", h.id)) == -1
    assert await raw.exists(key(prefix, "expiring"), key(prefix, "expiring_indexes")) == 0


async def expire(raw: Redis, prefix: str, *headers: SessionHeader) -> None:
    """Make Redis expire these sessions now, as it would at their ``expires_at``."""
    for h in headers:
        for name in (*session_keys(prefix, h), key(prefix, "owner", h.id)):
            await raw.pexpire(name, 1)
        await raw.zadd(key(prefix, "expiring"), {h.id: now_ms() - 1})
        if h.user_id is not None:
            await raw.zadd(user_key(prefix, h.user_id, "expiring"), {h.id: now_ms() - 1})
    await anyio.sleep(0.01)


async def test_an_expired_session_leaves_every_index_at_the_next_listing(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    kept = header(user_id="alice")
    expiring = header(user_id="alice", agent_id=kept.agent_id, expires_at=now_ms() + 60_000)
    await store.write_session(kept, [], expected_revision=None)
    await store.write_session(expiring, turn_items(1), expected_revision=None)
    await expire(raw, prefix, expiring)

    assert await store.get_session(expiring.id) is None
    assert [s.id for s in (await store.list_sessions()).sessions] == [kept.id]
    for index in (
        key(prefix, "sessions"),
        key(prefix, "agent_sessions", kept.agent_id),
        user_key(prefix, "alice", "sessions"),
        key(prefix, "status_sessions", "active"),
    ):
        assert await raw.zrange(index, 0, -1) == [kept.id]
    assert (
        await raw.exists(
            key(prefix, "expiring"),
            key(prefix, "expiring_indexes"),
            user_key(prefix, "alice", "expiring"),
        )
        == 0
    )


async def test_expired_sessions_beyond_one_sweep_are_neither_listed_nor_counted(
    store: RedisStore, raw: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scripts, "SWEEP_BUDGET", 1)
    agent = new_id()
    kept = header(agent_id=agent, context=SessionContext(last_activity=T0))
    expiring = [
        header(
            agent_id=agent,
            expires_at=now_ms() + 60_000,
            context=SessionContext(last_activity=T0 + 1),
        )
        for _ in range(4)
    ]
    for h in [kept, *expiring]:
        await store.write_session(h, [], expected_revision=None)
    await expire(raw, prefix, *expiring)

    assert await store.count_sessions() == 1
    assert [s.id for s in (await store.list_sessions(agent_id=agent)).sessions] == [kept.id]
    assert await store.count_sessions() == 1


async def test_a_session_created_again_after_expiring_keeps_no_index_entry_of_before(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    before = header(user_id="alice", status="paused", expires_at=now_ms() + 60_000)
    await store.write_session(before, turn_items(1), expected_revision=None)
    await expire(raw, prefix, before)
    again = header(id=before.id, agent_id=before.agent_id, user_id="bob")

    await store.write_session(again, [], expected_revision=None)

    assert await raw.exists(user_key(prefix, "alice", "sessions")) == 0
    assert await raw.exists(key(prefix, "status_sessions", "paused")) == 0
    assert await raw.zrange(user_key(prefix, "bob", "sessions"), 0, -1) == [before.id]
    assert await raw.exists(key(prefix, "expiring"), key(prefix, "expiring_indexes")) == 0
    assert await store.get_session(before.id) == ChatSession.from_parts(again, [])


# -- leases ---------------------------------------------------------------------------------


async def test_a_held_lease_is_a_random_token_with_the_ttl(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    session_id = new_id()
    lease_key = key(prefix, "lease", session_id)
    async with store.lease(session_id, ttl=20, timeout=1):
        token = await raw.get(lease_key)
        ttl_ms = await raw.pttl(lease_key)
    assert token is not None
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert 19_000 < ttl_ms <= 20_000
    assert await raw.exists(lease_key) == 0


async def test_a_holder_cannot_release_a_lease_that_is_no_longer_its_own(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    # The holder's lease expired and another process took the session meanwhile.
    session_id = new_id()
    lease_key = key(prefix, "lease", session_id)
    async with store.lease(session_id, timeout=1):
        await raw.set(lease_key, "another-holder", px=60_000)
    assert await raw.get(lease_key) == "another-holder"


async def test_a_dead_holders_lease_is_granted_once_it_expires(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    session_id = new_id()
    lease_key = key(prefix, "lease", session_id)
    await raw.set(lease_key, "dead-holder", px=400)
    started = anyio.current_time()
    async with store.lease(session_id, timeout=5):
        waited = anyio.current_time() - started
        holder = await raw.get(lease_key)
    assert 0.3 <= waited < 2
    assert holder not in (None, "dead-holder")


async def test_a_lease_held_past_the_timeout_is_busy_with_details(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    session_id = new_id()
    await raw.set(key(prefix, "lease", session_id), "other-process", px=60_000)
    with anyio.fail_after(3), pytest.raises(BusyError) as caught:
        async with store.lease(session_id, timeout=0.2):
            pytest.fail("the lease was granted while another process held it")
    assert caught.value.details == {"session_id": session_id, "timeout": 0.2}
    assert await raw.get(key(prefix, "lease", session_id)) == "other-process"


async def test_a_held_lease_is_renewed_past_its_ttl(
    store: RedisStore, raw: Redis, prefix: str, redis_url: str
) -> None:
    session_id = new_id()
    lease_key = key(prefix, "lease", session_id)
    other = RedisStore(redis_url, key_prefix=prefix)
    async with store.lease(session_id, ttl=0.3, timeout=1):
        token = await raw.get(lease_key)
        await anyio.sleep(1.0)
        assert await raw.get(lease_key) == token
        with pytest.raises(BusyError):
            async with other.lease(session_id, timeout=0.1):
                pass
    await other.close()
    assert await raw.exists(lease_key) == 0


async def test_a_cancelled_waiter_leaves_the_holders_lease_alone(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    session_id = new_id()
    lease_key = key(prefix, "lease", session_id)
    await raw.set(lease_key, "holder", px=60_000)
    with anyio.move_on_after(0.2):
        async with store.lease(session_id, timeout=5):
            pytest.fail("granted while held")
    assert await raw.get(lease_key) == "holder"


async def test_taking_a_lease_reads_the_stored_revision_in_the_same_step(
    store: RedisStore,
) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    await store.write_session(bumped(h), [], expected_revision=0)
    async with store.lease(h.id, timeout=1) as lease:
        assert (lease.revision_known, lease.revision) == (True, 1)
        assert re.fullmatch(r"[0-9a-f]{32}", lease.token)
    async with store.lease(new_id(), timeout=1) as missing:
        assert (missing.revision_known, missing.revision) == (True, None)


async def test_a_lease_on_an_unreadable_revision_leaves_it_to_the_revision_read(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    session_id = new_id()
    await raw.hset(key(prefix, "session", session_id), mapping={"revision": "x"})
    async with store.lease(session_id, timeout=1) as lease:
        assert lease.revision_known is False
        with pytest.raises(CorruptDataError):
            await store.get_revision(session_id)


async def test_a_write_under_the_lease_gives_it_back_in_the_same_step(
    store: RedisStore, raw: Redis, prefix: str, redis_url: str
) -> None:
    h = header()
    lease_key = key(prefix, "lease", h.id)
    other = RedisStore(redis_url, key_prefix=prefix)
    async with store.lease(h.id, timeout=1) as lease:
        await store.write_session(h, turn_items(1), expected_revision=None, lease=lease)
        assert lease.released is True
        assert await raw.exists(lease_key) == 0
        async with other.lease(h.id, timeout=0) as taken:
            assert taken.revision == 0
            held_by_other = await raw.get(lease_key)
        # Leaving the first lease's block must not touch what another holder took since.
        await raw.set(lease_key, "another-holder", px=60_000)
    await other.close()
    assert held_by_other == taken.token
    assert await raw.get(lease_key) == "another-holder"


async def test_a_write_under_a_lease_another_holder_took_is_refused_as_busy(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    before = await snapshot(raw, prefix)
    lease_key = key(prefix, "lease", h.id)
    async with store.lease(h.id, timeout=1) as lease:
        # This holder stalled past its ttl; another process was granted the lease.
        await raw.set(lease_key, "another-holder", px=60_000)
        with pytest.raises(BusyError) as caught:
            await store.write_session(bumped(h), turn_items(2), expected_revision=0, lease=lease)
        assert lease.released is False
    assert caught.value.details == {"session_id": h.id}
    assert "taken over by another holder" in caught.value.message
    assert await raw.get(lease_key) == "another-holder"
    await raw.delete(lease_key)
    assert await snapshot(raw, prefix) == before


async def test_a_write_under_a_lease_that_expired_untaken_is_stored(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    async with store.lease(h.id, timeout=1) as lease:
        await raw.delete(key(prefix, "lease", h.id))
        await store.write_session(bumped(h), turn_items(1), expected_revision=0, lease=lease)
    assert await store.get_revision(h.id) == 1


async def test_a_turn_costs_two_commands_lease_and_write(store: RedisStore, raw: Redis) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    async with store.lease(h.id, timeout=1):
        pass  # every script the turn runs is loaded, the connection open

    async def turn() -> None:
        async with store.lease(h.id, timeout=1) as lease:
            assert lease.revision == 0
            await store.write_session(bumped(h), turn_items(2), expected_revision=0, lease=lease)

    _, sent, _ = await commands_sent(raw, turn())

    assert [command.split()[0] for command in sent] == ["EVALSHA", "EVALSHA"]
    assert await store.get_revision(h.id) == 1


# -- initialize and bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "127.0.0.1:6379",
        "redis://",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:99999/0",
        "unix://",
    ],
)
def test_a_malformed_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInputError, match="malformed Redis URL") as caught:
        RedisStore(url)
    assert caught.value.details == {"field": "url"}


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2secret@127.0.0.1:6379/0",
        "redis://user:hunter2secret@/0",
        "redis://:hunter2secret@127.0.0.1:notaport/0",
        "redis://:hunter2secret@127.0.0.1:99999/0",
        "redis://:hunter2secret@127.0.0.1:0/0",
        "redis://user:hunter2secret@[::1/0",
        "unix://user:hunter2secret@",
        "redis://user:hunter2secret@127.0.0.1/0?socket_timeout=abc",
        "redis://us@er:hunter2secret@@127.0.0.1:99999/0",
        "redis://user:hunter2%73ecret@127.0.0.1/0?socket_timeout=abc",
    ],
)
def test_a_malformed_url_never_shows_its_password(url: str) -> None:
    with pytest.raises(InvalidInputError, match="malformed Redis URL") as caught:
        RedisStore(url)
    shown = f"{caught.value} {caught.value.details}"
    assert "hunter2" not in shown
    assert ":***@" in shown


def test_exactly_one_of_url_client_and_pool_is_needed(redis_url: str) -> None:
    with pytest.raises(ValueError, match=r"got none$"):
        RedisStore()
    client = raw_client(redis_url)
    with pytest.raises(ValueError, match=r"got url, client$"):
        RedisStore(redis_url, client=client)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"key_prefix": 7}, "key_prefix must be a string, got int"),
        ({"socket_timeout": 0}, "socket_timeout must be positive, got 0"),
        ({"connect_timeout": -1.0}, "connect_timeout must be positive, got -1.0"),
    ],
)
def test_bad_constructor_arguments_are_value_errors(
    redis_url: str, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        RedisStore(redis_url, **arguments)


async def test_an_unreachable_server_fails_promptly_naming_host_and_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = RedisStore(f"redis://127.0.0.1:{port}/0")
    with anyio.fail_after(3), pytest.raises(StorageError) as caught:
        await unreachable.initialize()
    assert f"cannot reach Redis at 127.0.0.1:{port}" in caught.value.message
    assert caught.value.details == {"server": f"127.0.0.1:{port}"}
    await unreachable.close()


@pytest.fixture(scope="module")
def password_redis() -> Iterator[str]:
    """A second server that demands a password: its URL with the right one."""
    server = start_redis()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"CONFIG SET requirepass right-password\r\n")
            assert sock.recv(64) == b"+OK\r\n"
        yield f"redis://:right-password@127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "credentials", ["", ":wrong-password@", "someone:right-password@"], ids=str
)
async def test_wrong_credentials_fail_saying_authentication_failed(
    password_redis: str, credentials: str
) -> None:
    url = password_redis.replace(":right-password@", credentials)
    refused = RedisStore(url)
    with anyio.fail_after(5), pytest.raises(StorageError, match="authentication failed"):
        await refused.initialize()
    await refused.close()


async def test_the_right_password_is_accepted(password_redis: str) -> None:
    accepted = RedisStore(password_redis)
    await accepted.initialize()
    await accepted.close()


async def test_initialize_records_the_layout_version_once(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    fresh = RedisStore(redis_url, key_prefix=prefix)
    await fresh.initialize()
    await fresh.initialize()
    assert await raw.get(key(prefix, "schema")) == "3"
    await fresh.close()


async def test_data_from_a_newer_version_is_refused(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    await raw.set(key(prefix, "schema"), "4")
    newer = RedisStore(redis_url, key_prefix=prefix)
    with pytest.raises(StoreVersionError, match="newer chatruntime") as caught:
        await newer.initialize()
    assert caught.value.details == {
        "location": key(prefix, "schema"),
        "found": 4,
        "supported": 3,
    }
    assert await raw.get(key(prefix, "schema")) == "4"
    await newer.close()


async def test_a_closed_store_can_be_initialized_again(store: RedisStore) -> None:
    await store.close()
    await store.initialize()
    h = header()
    await store.write_session(h, [], expected_revision=None)
    assert await store.get_revision(h.id) == 0


async def test_a_client_passed_in_is_used_and_left_open(
    redis_url: str, raw: Redis, prefix: str
) -> None:
    # decode_responses=True: the store reads text replies as well as bytes.
    client = raw_client(redis_url)
    borrowed = RedisStore(client=client, key_prefix=prefix)
    await borrowed.initialize()
    h = header()
    items = turn_items(1)
    await borrowed.write_session(h, items, expected_revision=None)
    assert await borrowed.get_session(h.id) == ChatSession.from_parts(h, items)
    await borrowed.close()
    assert await client.ping() is True
    await client.aclose()


async def test_a_pool_passed_in_is_used_and_left_open(redis_url: str, prefix: str) -> None:
    pool = ConnectionPool.from_url(redis_url, driver_info=DRIVER)
    pooled = RedisStore(connection_pool=pool, key_prefix=prefix)
    await pooled.initialize()
    await pooled.close()
    assert await Redis(connection_pool=pool).ping() is True
    await pool.disconnect()


# -- corrupt records ------------------------------------------------------------------------


async def test_a_corrupt_header_is_reported_and_left_in_place(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    good = header()
    await store.write_session(good, [], expected_revision=None)
    bad_id = new_id()
    bad_key = key(prefix, "session", bad_id)
    await raw.hset(bad_key, mapping={"revision": "0", "header": "{not json"})
    await raw.zadd(key(prefix, "sessions"), {bad_id: 1})

    report = await load_all(store)

    assert [s.id for s in report.sessions] == [good.id]
    assert [(r.session_id, r.location) for r in report.corrupt] == [(bad_id, bad_key)]
    assert report.corrupt[0].reason.startswith(
        "invalid header: not valid JSON: key must be a string"
    )
    with pytest.raises(CorruptDataError) as caught:
        await store.get_session(bad_id)
    assert caught.value.details["location"] == bad_key
    assert await raw.hgetall(bad_key) == {"revision": "0", "header": "{not json"}


async def test_a_corrupt_history_item_is_reported_with_its_position(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    history_key = key(prefix, "history", h.id)
    await raw.rpush(history_key, '{"type": "bogus"}')

    report = await load_all(store)

    assert report.sessions == []
    assert report.corrupt == [
        CorruptRecord(
            session_id=h.id,
            location=history_key,
            reason=report.corrupt[0].reason,
        )
    ]
    assert report.corrupt[0].reason.startswith("invalid item at index 4: ")
    assert await raw.llen(history_key) == 5


async def test_a_session_key_of_the_wrong_type_is_corrupt(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    session_id = new_id()
    session_key = key(prefix, "session", session_id)
    await raw.set(session_key, "not a hash")
    await raw.zadd(key(prefix, "sessions"), {session_id: 1})
    report = await load_all(store)
    assert report.corrupt == [
        CorruptRecord(session_id, session_key, f"{session_key} is not a hash")
    ]
    with pytest.raises(CorruptDataError):
        await store.get_revision(session_id)


async def test_a_history_key_of_the_wrong_type_is_corrupt(
    store: RedisStore, raw: Redis, prefix: str
) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    history_key = key(prefix, "history", h.id)
    await raw.set(history_key, "not a list")
    report = await load_all(store)
    assert report.corrupt == [CorruptRecord(h.id, history_key, f"{history_key} is not a list")]
    with pytest.raises(CorruptDataError):
        await store.get_session(h.id, last=2)


async def test_a_corrupt_agent_is_corrupt_data(store: RedisStore, raw: Redis, prefix: str) -> None:
    agent_id = new_id()
    await raw.set(key(prefix, "agent", agent_id), '{"id": 1}')
    with pytest.raises(CorruptDataError) as caught:
        await store.get_agent(agent_id)
    assert caught.value.details["location"] == key(prefix, "agent", agent_id)


# -- packaging ------------------------------------------------------------------------------


def test_without_the_redis_extra_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import chatruntime.stores as stores

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "chatruntime.stores._redis")
    monkeypatch.delattr(stores, "RedisStore", raising=False)
    with pytest.raises(ImportError, match=r"^RedisStore needs .*: install chatruntime\[redis\]$"):
        stores.RedisStore  # noqa: B018
