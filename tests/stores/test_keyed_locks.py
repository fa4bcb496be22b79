"""``KeyedLocks``: one fair lock per key, kept only while someone holds or awaits it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from chatruntime.stores._keyed_locks import KeyedLocks

pytestmark = pytest.mark.anyio


async def test_holders_of_one_key_take_turns_in_the_order_they_came() -> None:
    locks = KeyedLocks()
    order: list[int] = []

    async def hold(n: int) -> None:
        async with locks.hold("a"):
            order.append(n)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tasks:
        for n in range(5):
            tasks.start_soon(hold, n)
            await anyio.sleep(0.001)  # each task queues before the next starts

    assert order == [0, 1, 2, 3, 4]


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    async with locks.hold("a"):
        with anyio.fail_after(1):
            async with locks.hold("b"):
                assert len(locks) == 2


async def test_a_key_has_a_lock_only_while_it_is_held_or_awaited() -> None:
    locks = KeyedLocks()
    entered = anyio.Event()
    go = anyio.Event()

    async def hold() -> None:
        async with locks.hold("a"):
            entered.set()
            await go.wait()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hold)
        await entered.wait()
        tasks.start_soon(hold)  # waits behind the first
        await anyio.sleep(0.01)
        assert len(locks) == 1
        go.set()

    assert len(locks) == 0


async def test_acquire_takes_a_free_lock_even_with_no_time_to_wait() -> None:
    locks = KeyedLocks()
    assert await locks.acquire("a", timeout=0) is True
    locks.release("a")
    assert len(locks) == 0


@asynccontextmanager
async def held_elsewhere(locks: KeyedLocks, key: str) -> AsyncIterator[None]:
    """``key``'s lock held by another task for the body of the ``async with``."""
    taken, done = anyio.Event(), anyio.Event()

    async def holder() -> None:
        async with locks.hold(key):
            taken.set()
            await done.wait()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(holder)
        await taken.wait()
        try:
            yield
        finally:
            done.set()


async def test_acquire_gives_up_after_its_timeout_and_leaves_nothing_behind() -> None:
    locks = KeyedLocks()
    async with held_elsewhere(locks, "a"):
        before = anyio.current_time()
        assert await locks.acquire("a", timeout=0.05) is False
        assert anyio.current_time() - before >= 0.05
        assert len(locks) == 1
    assert len(locks) == 0


async def test_a_cancelled_wait_leaves_nothing_behind() -> None:
    locks = KeyedLocks()
    async with held_elsewhere(locks, "a"):
        with anyio.move_on_after(0.02):
            await locks.acquire("a")
        assert len(locks) == 1
    assert len(locks) == 0
    assert locks.try_acquire("a") is True
    locks.release("a")


async def test_try_acquire_takes_a_free_lock_and_refuses_a_held_one_without_waiting() -> None:
    locks = KeyedLocks()
    async with held_elsewhere(locks, "a"):
        assert locks.try_acquire("a") is False
        assert len(locks) == 1
    assert locks.try_acquire("a") is True
    locks.release("a")
    assert len(locks) == 0


async def test_a_lock_is_not_reentrant_and_a_second_take_leaves_no_trace() -> None:
    locks = KeyedLocks()
    async with locks.hold("a"):
        with pytest.raises(RuntimeError):
            locks.try_acquire("a")
        assert len(locks) == 1
    assert len(locks) == 0


async def test_a_lock_released_to_a_waiter_is_not_free_for_a_newcomer() -> None:
    locks = KeyedLocks()
    got: list[str] = []

    async def wait_for_it() -> None:
        async with locks.hold("a"):
            got.append("waiter")

    assert locks.try_acquire("a")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(wait_for_it)
        await anyio.sleep(0.01)
        locks.release("a")
        # The waiter owns the lock now, though it has not run yet.
        assert locks.try_acquire("a") is False
    assert got == ["waiter"]
    assert len(locks) == 0
