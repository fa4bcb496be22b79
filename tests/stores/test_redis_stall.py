"""A Redis that stops answering during a write: the call returns within ``commit_timeout`` and
says whether the write may have been stored (``OUTCOME_UNKNOWN``) or surely was not.

Each test stalls a private Redis server with ``SIGSTOP`` (resumed with ``SIGCONT`` in a
``finally``), never the server the other tests share.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import pytest

from chatruntime.models import ErrorCode, OutcomeUnknownError, StorageError
from chatruntime.stores import RedisStore
from support.factories import bumped, header, turn_items
from support.services import RunningServer, start_redis

pytestmark = [pytest.mark.anyio, pytest.mark.services]

COMMIT_TIMEOUT = 0.5
MARGIN = 0.5
"""How far past ``commit_timeout`` a stalled write may return (scheduling on a loaded host)."""


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_redis()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def store(server: RunningServer) -> AsyncIterator[RedisStore]:
    opened = RedisStore(
        server.url, key_prefix=f"test-{uuid.uuid4().hex}:", commit_timeout=COMMIT_TIMEOUT
    )
    await opened.initialize()
    yield opened
    await opened.close()


@contextmanager
def stalled(server: RunningServer) -> Iterator[None]:
    """The server stopped (as by a debugger, a frozen VM, an overloaded host) for the body."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


async def test_a_write_sent_to_a_stalled_server_is_outcome_unknown_within_the_timeout(
    store: RedisStore, server: RunningServer
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)

    with stalled(server):
        started = time.monotonic()
        with pytest.raises(OutcomeUnknownError) as caught:
            await store.write_session(bumped(h), turn_items(2), expected_revision=0)
        took = time.monotonic() - started

    print(f"stalled write answered OUTCOME_UNKNOWN after {took:.3f}s")
    assert COMMIT_TIMEOUT <= took < COMMIT_TIMEOUT + MARGIN
    assert caught.value.code == ErrorCode.OUTCOME_UNKNOWN
    assert caught.value.details["session_id"] == h.id
    assert caught.value.details["commit_timeout"] == COMMIT_TIMEOUT
    assert "may or may not be stored" in caught.value.message


async def test_the_unknown_write_is_stored_once_the_server_resumes(
    store: RedisStore, server: RunningServer
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    second, items = bumped(h), turn_items(2)
    with stalled(server), pytest.raises(OutcomeUnknownError):
        await store.write_session(second, items, expected_revision=0)

    # The script was in the socket when the server stopped: it ran when it resumed. Writing
    # it again (what a retry does) is recognised, not stored twice.
    with anyio.fail_after(5):
        loaded = await store.get_session(h.id)
    assert loaded is not None
    assert (loaded.revision, len(loaded.history)) == (1, 8)
    await store.write_session(second, items, expected_revision=0)
    assert await store.client.llen(f"{store.key_prefix}chatruntime:history:{h.id}") == 8


async def test_a_turn_under_its_lease_returns_within_the_timeout_and_the_lease_comes_back(
    store: RedisStore, server: RunningServer
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)

    started = time.monotonic()
    with pytest.raises(OutcomeUnknownError):
        async with store.lease(h.id, timeout=1) as lease:
            with stalled(server):
                await store.write_session(
                    bumped(h), turn_items(2), expected_revision=0, lease=lease
                )
                # Leaving the lease must not wait for the stalled server a second time.
    took = time.monotonic() - started

    print(f"stalled turn (write and lease give-back) returned after {took:.3f}s")
    assert took < COMMIT_TIMEOUT + MARGIN
    # Given back as soon as the server answers again: the session is free at once.
    with anyio.fail_after(3):
        async with store.lease(h.id, timeout=2) as again:
            assert again.revision == 1


async def test_a_write_that_could_not_be_sent_is_a_storage_error_not_unknown(
    server: RunningServer,
) -> None:
    # The only connection is busy: the write waits for it, never sends, and says so.
    store = RedisStore(
        server.url,
        key_prefix=f"test-{uuid.uuid4().hex}:",
        commit_timeout=COMMIT_TIMEOUT,
        max_connections=1,
        pool_timeout=0.2,
    )
    await store.initialize()
    h = header()
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(store.client.blpop, [f"{store.key_prefix}nothing"], 1)
            await anyio.sleep(0.1)
            with pytest.raises(StorageError) as caught:
                await store.write_session(h, turn_items(1), expected_revision=None)
        assert not isinstance(caught.value, OutcomeUnknownError)
        assert caught.value.code == ErrorCode.STORAGE_ERROR
        assert "no free connection" in caught.value.message
        assert await store.get_revision(h.id) is None
    finally:
        await store.close()


def test_commit_timeout_must_be_positive(server: RunningServer) -> None:
    with pytest.raises(ValueError, match=r"^commit_timeout must be positive, got 0$"):
        RedisStore(server.url, commit_timeout=0)


def test_commit_timeout_defaults_to_two_seconds(server: RunningServer) -> None:
    assert RedisStore(server.url).commit_timeout == 2.0
