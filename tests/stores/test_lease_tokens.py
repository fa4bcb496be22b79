"""``TokenLeases``, the lease algorithm of Redis and PostgreSQL, over a server kept in a dict.

What the real servers show end to end (``test_outage_leases.py``) is specified here step by
step: a token the server did not take back is remembered, given back before this process's
next lease of the session and by a background retry, dropped once its ttl has passed, and
``close()`` leaves nothing running. And ``run_to_end``, which keeps a give-back or a write
from being cut short by a raw ``Task.cancel()``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest

from chatruntime.models import StorageError
from chatruntime.stores._lease import Granted, TokenLeases, run_to_end

pytestmark = pytest.mark.anyio

SESSION = "s1"


@dataclass
class Server:
    """Lease tokens by session, and a switch for the server being away."""

    up: bool = True
    leases: dict[str, str] = field(default_factory=dict)
    expiry: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    """``(primitive, session_id, token)`` of every call that reached the server."""
    give_back_delay: float = 0.0

    def check(self) -> None:
        if not self.up:
            raise StorageError("cannot reach the server: connection refused")

    async def take(self, session_id: str, token: str, ttl_ms: int) -> Granted:
        self.check()
        self.calls.append(("take", session_id, token))
        if self.expiry.get(session_id, 0) < anyio.current_time():
            self.leases.pop(session_id, None)
        if self.leases.setdefault(session_id, token) != token:
            return Granted(False)
        self.expiry[session_id] = anyio.current_time() + ttl_ms / 1000
        return Granted(True, revision_known=True, revision=7)

    async def renew(self, session_id: str, token: str, ttl_ms: int) -> bool:
        self.check()
        self.calls.append(("renew", session_id, token))
        return self.leases.get(session_id) == token

    async def give_back(self, session_id: str, token: str) -> None:
        await anyio.sleep(self.give_back_delay)
        self.check()
        self.calls.append(("give_back", session_id, token))
        if self.leases.get(session_id) == token:
            del self.leases[session_id]

    def leases_of(self, give_back_timeout: float = 1.0) -> TokenLeases:
        return TokenLeases(
            take=self.take,
            renew=self.renew,
            give_back=self.give_back,
            failures=(StorageError,),
            give_back_timeout=give_back_timeout,
            logger=logging.getLogger("test.leases"),
        )


async def hold_while_away(server: Server, leases: TokenLeases, *, ttl: float = 30) -> str:
    """Hold the session's lease and leave it while the server is away; the token."""
    async with leases.hold(SESSION, ttl=ttl, timeout=0) as lease:
        server.up = False
    return lease.token


def retrying() -> list[asyncio.Task[object]]:
    """The tasks retrying to give leases back."""
    return [task for task in asyncio.all_tasks() if "TokenLeases" in repr(task.get_coro())]


async def eventually(condition: Callable[[], bool], within: float = 2) -> None:
    for _ in range(round(within / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)
    pytest.fail(f"not within {within}s")


async def test_a_lease_the_server_did_not_take_back_is_remembered() -> None:
    server = Server()
    leases = server.leases_of()
    token = await hold_while_away(server, leases)
    assert leases.unreturned == {SESSION: [token]}
    assert server.leases == {SESSION: token}
    await leases.close()


async def test_the_next_lease_of_the_session_gives_the_remembered_token_back_first() -> None:
    server = Server()
    leases = server.leases_of()
    stale = await hold_while_away(server, leases)
    server.up = True
    server.calls.clear()
    async with leases.hold(SESSION, ttl=30, timeout=0) as lease:
        assert server.leases == {SESSION: lease.token}
    # The background retry may have given it back already; either way, before the take.
    assert server.calls[-3:] == [
        ("give_back", SESSION, stale),
        ("take", SESSION, lease.token),
        ("give_back", SESSION, lease.token),
    ]
    assert leases.unreturned == {}
    assert server.leases == {}
    await leases.close()


async def test_a_background_retry_gives_it_back_once_the_server_answers() -> None:
    server = Server()
    leases = server.leases_of()
    token = await hold_while_away(server, leases)
    await anyio.sleep(0.5)  # retries meanwhile fail
    assert server.leases == {SESSION: token}
    server.up = True
    await eventually(lambda: not leases.unreturned)
    assert server.leases == {}
    assert server.calls[-1] == ("give_back", SESSION, token)
    # Nothing left to retry: the retrying task has ended by itself.
    await eventually(lambda: not retrying())
    await leases.close()


async def test_retries_wait_longer_and_longer_up_to_a_second() -> None:
    server = Server()
    attempts: list[float] = []
    give_back = server.give_back

    async def counted(session_id: str, token: str) -> None:
        attempts.append(anyio.current_time())
        await give_back(session_id, token)

    server.give_back = counted  # type: ignore[method-assign]
    leases = server.leases_of()
    await hold_while_away(server, leases)
    await anyio.sleep(4)
    pauses = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    # Doubling from 50 ms (less up to half for jitter), never over a second.
    assert 5 <= len(pauses) <= 14
    assert pauses[0] < 0.2
    assert max(pauses) <= 1.05
    assert pauses[-1] >= 0.45
    await leases.close()


async def test_a_token_whose_ttl_has_passed_is_dropped_without_asking_the_server() -> None:
    server = Server()
    leases = server.leases_of()
    await hold_while_away(server, leases, ttl=0.3)
    await anyio.sleep(0.5)
    server.up = True
    server.calls.clear()
    async with leases.hold(SESSION, ttl=30, timeout=0) as lease:
        pass
    assert server.calls == [("take", SESSION, lease.token), ("give_back", SESSION, lease.token)]
    assert leases.unreturned == {}
    await leases.close()


async def test_close_stops_the_retries_and_leaves_no_task_running() -> None:
    server = Server()
    leases = server.leases_of(give_back_timeout=0.2)
    await hold_while_away(server, leases)
    assert len(retrying()) == 1
    await leases.close()
    assert retrying() == []
    assert leases.unreturned == {}


async def test_close_makes_a_last_attempt_when_the_server_is_back() -> None:
    server = Server()
    leases = server.leases_of()
    token = await hold_while_away(server, leases)
    server.up = True
    await leases.close()
    assert server.leases == {}
    assert ("give_back", SESSION, token) in server.calls


async def test_a_give_back_slower_than_its_timeout_is_remembered() -> None:
    server = Server()
    leases = server.leases_of(give_back_timeout=0.1)
    server.give_back_delay = 1.0
    started = anyio.current_time()
    async with leases.hold(SESSION, ttl=30, timeout=0) as lease:
        pass
    assert anyio.current_time() - started < 0.5
    assert leases.unreturned == {SESSION: [lease.token]}
    await leases.close()


async def test_a_raw_cancel_while_giving_back_still_gives_it_back() -> None:
    server = Server(give_back_delay=0.05)
    leases = server.leases_of()

    async def turn() -> None:
        async with leases.hold(SESSION, ttl=30, timeout=0):
            pass

    task = asyncio.get_running_loop().create_task(turn())
    await anyio.sleep(0.02)  # the body is done: the lease is being given back
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()
    assert server.leases == {}
    assert leases.unreturned == {}
    await leases.close()


# -- run_to_end -------------------------------------------------------------------------------


async def test_run_to_end_finishes_the_call_and_then_delivers_a_raw_cancel() -> None:
    steps: list[str] = []

    async def step() -> str:
        await anyio.sleep(0.05)
        steps.append("stored")
        return "done"

    async def caller() -> None:
        steps.append(await run_to_end(step))
        await anyio.sleep(1)
        steps.append("never")

    task = asyncio.get_running_loop().create_task(caller())
    await anyio.sleep(0.01)
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled()
    assert steps == ["stored", "done"]


async def test_run_to_end_lets_asyncio_timeout_report_a_timeout() -> None:
    async def step() -> None:
        await anyio.sleep(0.1)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await run_to_end(step)
            await anyio.sleep(1)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_run_to_end_holds_back_an_anyio_cancellation_too() -> None:
    steps: list[str] = []

    async def step() -> None:
        await anyio.sleep(0.05)
        steps.append("stored")

    with anyio.move_on_after(0.01) as scope:
        await run_to_end(step)
        steps.append("returned")
        await anyio.sleep(1)
    assert scope.cancelled_caught
    assert steps == ["stored", "returned"]


async def test_run_to_end_passes_the_calls_error_on() -> None:
    async def step() -> None:
        raise StorageError("disk full")

    with pytest.raises(StorageError, match="disk full"):
        await run_to_end(step)
