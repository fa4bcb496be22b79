"""Server outages: Redis and PostgreSQL stop answering in the middle of a turn.

- **stall**: the server is SIGSTOPped at a random moment of a turn (the model takes
  :data:`MODEL_DELAY`, so most stalls meet the commit) and SIGCONTed only after the call
  returned (or after :data:`HANG_LIMIT` past its timeout, when it does not return);
- **outage**: the server is SIGKILLed at a random moment of a turn, and started again on its
  port and data once the call returned.

Each call must answer a coded error (or succeed) within a second of its ``timeout``; a call
that failed with a definite error must not be stored once the server is back (only
``OUTCOME_UNKNOWN`` may end either way); a call that succeeded must be stored. Then the same
manager, in the same process, must serve a turn again.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import anyio

from chatruntime import ErrorCode, SessionManager

from ._report import Row
from ._servers import Restartable
from ._stores import StoreSpec
from ._workload import AGENT_ID, RUN_CONFIG, agent_manager

TIMEOUT = 3.0
"""The ``timeout`` of each interrupted turn."""
MODEL_DELAY = 0.6
"""Seconds the offline model takes to answer."""
HANG_LIMIT = 12.0
"""Seconds past the timeout after which a stalled server is resumed anyway."""
RECOVERY_LIMIT = 45.0
"""Seconds the trial waits for the same manager to serve a turn once the server is back."""
RECOVERY_TARGET = 5.0
"""Seconds within which it should: more means a lease the holder could have given back (or
taken again) blocked its own session until the lease's ttl."""
CODED = {
    ErrorCode.STORAGE_ERROR,
    ErrorCode.OUTCOME_UNKNOWN,
    ErrorCode.TIMEOUT,
    ErrorCode.BUSY,
}


@dataclass
class _Call:
    finished: anyio.Event = field(default_factory=anyio.Event)
    done: bool = False
    success: bool = False
    code: str = ""
    message: str = ""
    seconds: float = 0.0


async def _turn(manager: SessionManager, session_id: str, content: str, into: _Call) -> None:
    started = anyio.current_time()
    try:
        result = await manager.send_message(session_id, content, timeout=TIMEOUT)
        into.success = result.success
        if not result.success:
            into.code, into.message = str(result.error.code), result.error.message
    except Exception as error:
        into.code = f"raised {type(error).__name__}"
        into.message = str(error)
    into.seconds = anyio.current_time() - started
    into.done = True
    into.finished.set()


async def _stored_count(spec: StoreSpec, session_id: str, content: str) -> int:
    """How many user messages with ``content`` another store (process) finds."""
    store = spec.build()
    await store.initialize()
    try:
        session = await store.get_session(session_id)
    finally:
        await store.close()
    assert session is not None
    return sum(1 for item in session.history if item.type == "message" and item.text == content)


async def _interrupt(
    mode: str,
    server: Restartable,
    manager: SessionManager,
    spec: StoreSpec,
    session_id: str,
    number: int,
    rng: random.Random,
    row: Row,
    answers: dict[str, int],
) -> None:
    content = f"{mode} turn {number}"
    call = _Call()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_turn, manager, session_id, content, call)
        await anyio.sleep(rng.uniform(0.0, MODEL_DELAY + 0.2))
        if mode == "stall":
            server.stall()
        else:
            await anyio.to_thread.run_sync(server.kill)
        with anyio.move_on_after(TIMEOUT + HANG_LIMIT):
            await call.finished.wait()
        if mode == "stall":
            server.resume()
        else:
            await anyio.to_thread.run_sync(server.restart)
        if not call.done:
            row.note(
                f"{mode} {number}: send_message(timeout={TIMEOUT:g}) had not returned "
                f"{TIMEOUT + HANG_LIMIT:.0f} s after the server stopped; it returned once "
                "the server was back"
            )
    row.tried += 1
    row.overran(call.seconds - TIMEOUT)
    answer = "success" if call.success else call.code
    answers[answer] = answers.get(answer, 0) + 1
    if call.success:
        row.acknowledged += 1
    elif call.code not in CODED:
        row.failed += 1
        row.note(f"{mode}: send_message answered {call.code}: {call.message[:120]}")
    # What was stored once the server is back: a definite failure stores nothing.
    stored = await _stored_count(spec, session_id, content)
    if call.success and stored != 1:
        row.lost += 1
        row.note(f"{mode} {number}: an acknowledged turn is stored {stored} times")
    if not call.success and call.code != ErrorCode.OUTCOME_UNKNOWN and stored:
        row.changed += 1
        row.note(
            f"{mode}: send_message answered {call.code} after {call.seconds:.1f} s, yet the turn "
            "is stored once the server is back"
        )
    await _recover(mode, manager, session_id, number, row)


async def _recover(
    mode: str, manager: SessionManager, session_id: str, number: int, row: Row
) -> None:
    started = anyio.current_time()
    last = ""
    while anyio.current_time() - started < RECOVERY_LIMIT:
        result = await manager.send_message(session_id, f"after {mode} {number}", timeout=10)
        if result.success:
            row.acknowledged += 1
            waited = anyio.current_time() - started
            if waited > RECOVERY_TARGET:
                row.failed += 1
                row.note(
                    f"{mode} {number}: the same manager served a turn again only after "
                    f"{waited:.0f} s (target {RECOVERY_TARGET:.0f} s); until then: {last}"
                )
            return
        last = f"{result.error.code}: {result.error.message[:120]}"
        await anyio.sleep(0.5)
    row.failed += 1
    row.note(
        f"{mode} {number}: the same manager served no turn within {RECOVERY_LIMIT:.0f} s: {last}"
    )


async def run_server(server: Restartable, spec: StoreSpec, times: int, seed: int) -> list[Row]:
    """``times`` stalls and ``times`` outages of ``server`` under turns on ``spec``."""
    rng = random.Random(seed)
    rows = []
    store = spec.build()
    manager = SessionManager(store, agent_manager(store, delay=MODEL_DELAY), run_config=RUN_CONFIG)
    (await manager.initialize()).unwrap()
    try:
        session_id = (await manager.create_session(AGENT_ID, "Outages")).unwrap().id
        for mode in ("stall", "outage"):
            row = Row(f"server {mode}", spec.kind, unit="stalls" if mode == "stall" else "outages")
            started = time.perf_counter()
            answers: dict[str, int] = {}
            for number in range(1, times + 1):
                await _interrupt(mode, server, manager, spec, session_id, number, rng, row, answers)
            row.seconds = time.perf_counter() - started
            row.note(f"interrupted calls answered: {answers} (timeout {TIMEOUT:g} s)")
            rows.append(row)
    finally:
        await manager.close()
    return rows
