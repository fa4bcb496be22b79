"""Model and network faults through the SDK's real OpenAI client, against a loopback server.

Each fault (HTTP 500, 429 with ``retry-after``, a connection dropped half-way, a malformed
body or event, a stalled answer under a timeout) is injected into ``send_message`` and
``stream_message`` on a session that already holds turns. Each must answer its code
(``MODEL_ERROR``, or ``TIMEOUT`` for the stall — within a second of the timeout), leave what
is stored byte for byte as it was, and the next turn must work. A 429 whose ``retry-after``
the client may honour (``max_retries=1``) must end in one stored turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from chatruntime import AgentManager, Done, Error, ErrorCode, SessionManager
from chatruntime.agent._providers import ModelConfig, build_model_provider

from ._fault_server import Fault, FaultServer
from ._report import Row
from ._stores import StoreSpec, StoreWatch
from ._workload import RUN_CONFIG

STALL_TIMEOUT = 1.5
"""The timeout of a turn whose answer stalls."""


@dataclass(frozen=True)
class Trial:
    name: str
    fault: Fault
    expected: ErrorCode
    timeout: float | None = None


TRIALS = (
    Trial("HTTP 500", Fault("status", 500), ErrorCode.MODEL_ERROR),
    Trial(
        "HTTP 429 retry-after (no retry left)",
        Fault("status", 429, {"retry-after": "1"}),
        ErrorCode.MODEL_ERROR,
    ),
    Trial("connection dropped mid-answer", Fault("drop"), ErrorCode.MODEL_ERROR),
    Trial("malformed answer", Fault("malformed"), ErrorCode.MODEL_ERROR),
    Trial("stalled answer", Fault("stall", seconds=60), ErrorCode.TIMEOUT, timeout=STALL_TIMEOUT),
)


@asynccontextmanager
async def _manager(spec: StoreSpec, base_url: str, retries: int) -> AsyncIterator[SessionManager]:
    config = ModelConfig(base_url=base_url, default_model="test-model", max_retries=retries)
    provider = build_model_provider(config)
    store = spec.build()
    manager = SessionManager(
        store, AgentManager(store, model_provider=provider), run_config=RUN_CONFIG
    )
    try:
        (await manager.initialize()).unwrap()
        yield manager
    finally:
        await manager.close()
        await provider.aclose()


async def _stream_code(manager: SessionManager, session_id: str, timeout: float | None) -> Any:
    """The stream's one terminal event, as a result-like pair (success, code)."""
    terminal = []
    async for event in manager.stream_message(session_id, "Hello", timeout=timeout):
        if isinstance(event, Done | Error):
            terminal.append(event)
    if len(terminal) != 1:
        return False, f"{len(terminal)} terminal events"
    event = terminal[0]
    return (True, None) if isinstance(event, Done) else (False, event.error.code)


async def _send_code(manager: SessionManager, session_id: str, timeout: float | None) -> Any:
    result = await manager.send_message(session_id, "Hello", timeout=timeout)
    return (True, None) if result.success else (False, result.error.code)


async def run_store(spec: StoreSpec, reps: int) -> Row:
    """Every fault ``reps`` times each way (sent and streamed) on one store."""
    row = Row("model faults", spec.kind, unit="faults")
    started = time.perf_counter()
    with FaultServer() as server:
        async with _manager(spec, server.base_url, 0) as manager:
            agent = (await manager.agents.create_agent("Remote", "Be brief.")).unwrap()
            session_id = (await manager.create_session(agent.id, "Faults")).unwrap().id
            watch = StoreWatch(spec, manager.store)
            try:
                for _ in range(2):
                    (await manager.send_message(session_id, "Warm up")).unwrap()
                    row.acknowledged += 1
                for _ in range(reps):
                    for trial in TRIALS:
                        for way, call in (("send", _send_code), ("stream", _stream_code)):
                            await _one_fault(
                                row, manager, watch, server, session_id, trial, way, call
                            )
            finally:
                watch.close()
        for _ in range(reps):
            await _retry_after(row, spec, server, session_id)
    row.seconds = time.perf_counter() - started
    return row


async def _one_fault(
    row: Row,
    manager: SessionManager,
    watch: StoreWatch,
    server: FaultServer,
    session_id: str,
    trial: Trial,
    way: str,
    call: Any,
) -> None:
    before = await watch.digest()
    server.queue(trial.fault)
    row.tried += 1
    began = anyio.current_time()
    try:
        success, code = await call(manager, session_id, trial.timeout)
    except Exception as error:
        success, code = False, f"raised {type(error).__name__}"
    took = anyio.current_time() - began
    server.clear()
    if trial.timeout is not None:
        row.overran(took - trial.timeout)
    if success or code != trial.expected:
        row.failed += 1
        row.note(f"{trial.name} ({way}): answered {code or 'success'}, not {trial.expected}")
    if await watch.digest() != before:
        row.changed += 1
        row.note(f"{trial.name} ({way}): the stored session changed")
    success, code = await _send_code(manager, session_id, 30)
    if success:
        row.acknowledged += 1
    else:
        row.failed += 1
        row.note(f"the turn after {trial.name} ({way}) failed: {code}")


async def _retry_after(row: Row, spec: StoreSpec, server: FaultServer, session_id: str) -> None:
    """A 429 with ``retry-after: 1`` and one retry allowed: one turn, stored once."""
    async with _manager(spec, server.base_url, 1) as manager:
        before = len((await manager.get_session(session_id)).unwrap().history)
        server.queue(Fault("status", 429, {"retry-after": "1"}))
        row.tried += 1
        began = anyio.current_time()
        success, code = await _send_code(manager, session_id, 30)
        took = anyio.current_time() - began
        after = len((await manager.get_session(session_id)).unwrap().history)
        if not success:
            row.failed += 1
            row.note(f"HTTP 429 retry-after then success: answered {code}")
        elif after != before + 2:
            row.changed += 1
            row.note(f"HTTP 429 retry-after then success stored {after - before} items, not 2")
        else:
            row.acknowledged += 1
            if took < 1.0:
                row.note(f"the retry after a 429 came {took:.2f} s later, before retry-after: 1")


async def run(specs: list[StoreSpec], reps: int) -> list[Row]:
    """The fault trial on each store of ``specs``; the SDK's own error logs are muted."""
    quiet = [logging.getLogger(name) for name in ("openai.agents", "openai", "httpx")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        return [await run_store(spec, reps) for spec in specs]
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
