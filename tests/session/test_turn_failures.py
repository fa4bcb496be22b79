"""Every way a turn fails leaves the stored session byte-for-byte as it was, with its own code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    RunContextWrapper,
    TResponseInputItem,
    input_guardrail,
    output_guardrail,
)
from agents.exceptions import ModelBehaviorError
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

from chatruntime import AgentManager, ErrorCode, MemoryStore, OfflineModelProvider, SessionManager
from chatruntime.models import HistoryItem, SessionHeader
from chatruntime.stores import CreateLimits, Lease
from support.turns import (
    STORE_KINDS,
    TurnHarness,
    crash_hard,
    lookup,
    open_turn_harness,
    slow_step,
)

pytestmark = pytest.mark.anyio


@input_guardrail(name="no_secrets", run_in_parallel=False)
def no_secrets(
    context: RunContextWrapper[Any], agent: Agent[Any], user_input: str | list[TResponseInputItem]
) -> GuardrailFunctionOutput:
    last = user_input if isinstance(user_input, str) else user_input[-1].get("content")
    return GuardrailFunctionOutput(output_info="secret", tripwire_triggered=last == "Break")


@output_guardrail(name="no_rudeness")
def no_rudeness(
    context: RunContextWrapper[Any], agent: Agent[Any], output: Any
) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info="rude", tripwire_triggered=output == "rude words")


async def cancel_the_run(call: ModelCall) -> Any:
    # A cancellation that starts inside the run, not from the caller.
    raise asyncio.CancelledError


@dataclass
class Failure:
    steps: Sequence[Any]
    code: ErrorCode
    agent_options: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None


FAILURES: dict[str, Failure] = {
    "model behaviour error": Failure([ModelBehaviorError("garbled output")], ErrorCode.MODEL_ERROR),
    "model raises": Failure([RuntimeError("connection reset")], ErrorCode.MODEL_ERROR),
    "model fails after a tool ran": Failure(
        [
            [function_call("lookup", {"n": 1}, call_id="call_1")],
            ModelBehaviorError("second call broke"),
        ],
        ErrorCode.MODEL_ERROR,
        {"tools": [lookup]},
    ),
    "tool crash without handler": Failure(
        [[function_call("crash_hard", {"n": 1}, call_id="call_1")]],
        ErrorCode.TOOL_ERROR,
        {"tools": [crash_hard]},
    ),
    "max turns exceeded": Failure(
        [
            [function_call("lookup", {"n": 1}, call_id="call_1")],
            [function_call("lookup", {"n": 2}, call_id="call_2")],
        ],
        ErrorCode.MAX_TURNS_EXCEEDED,
        {"tools": [lookup]},
    ),
    "input guardrail": Failure([], ErrorCode.GUARDRAIL_TRIPPED, {"input_guardrails": [no_secrets]}),
    "output guardrail": Failure(
        [[assistant_message("rude words", item_id="msg_x")]],
        ErrorCode.GUARDRAIL_TRIPPED,
        {"output_guardrails": [no_rudeness]},
    ),
    "timeout": Failure(
        [slow_step(10, assistant_message("too late", item_id="msg_x"))],
        ErrorCode.TIMEOUT,
        timeout=0.05,
    ),
    "run cancelled itself": Failure([ModelStep.respond(cancel_the_run)], ErrorCode.CANCELLED),
}


@pytest.fixture(params=STORE_KINDS)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request, max_turns=2) as harness:
        yield harness


async def chat_with_one_turn(h: TurnHarness, *steps: Any, **agent_options: Any) -> str:
    """A session whose first turn succeeded; the agent then takes ``steps``, then one reply."""
    agent_id = h.agent(
        "Helper",
        [assistant_message("first", item_id="msg_1")],
        *steps,
        [assistant_message("after", item_id="msg_2")],
        **agent_options,
    )
    session_id = await h.session(agent_id)
    (await h.manager.send_message(session_id, "Hello")).unwrap()
    return session_id


@pytest.mark.parametrize("name", list(FAILURES))
async def test_a_failed_turn_stores_nothing_and_names_its_code(h: TurnHarness, name: str) -> None:
    failure = FAILURES[name]
    session_id = await chat_with_one_turn(h, *failure.steps, **failure.agent_options)
    before = await h.snapshot(session_id)

    result = await h.manager.send_message(session_id, "Break", timeout=failure.timeout)

    assert result.error is not None
    assert result.error.code is failure.code, result.error
    assert await h.snapshot(session_id) == before
    # The session is not left locked or half-written: the next turn works.
    after = (await h.manager.send_message(session_id, "Again")).unwrap()
    assert after.content == "after"
    texts = [item.text for item in (await h.stored(session_id)).messages()]
    assert texts == ["Hello", "first", "Again", "after"]


async def test_the_managers_default_timeout_applies(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_turn_harness("memory", tmp_path, request, default_timeout=0.05) as h:
        # Two agents, so that which step each turn gets never depends on how far a
        # timed-out turn got on a loaded machine (it may not reach the model at all).
        slow = h.agent("Slow", slow_step(10, assistant_message("too late", item_id="msg_1")))
        fast = h.agent("Fast", slow_step(0.1, assistant_message("in time", item_id="msg_2")))
        slow_session = await h.session(slow)
        fast_session = await h.session(fast)

        timed_out = await h.manager.send_message(slow_session, "Hello")
        in_time = await h.manager.send_message(fast_session, "Hello", timeout=5)

    assert timed_out.error is not None
    assert (timed_out.error.code, timed_out.error.details["timeout"]) == (ErrorCode.TIMEOUT, 0.05)
    assert in_time.unwrap().content == "in time"


async def test_waiting_for_an_earlier_turn_counts_against_the_timeout(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Slow",
        slow_step(0.3, assistant_message("slow answer", item_id="msg_1")),
        [assistant_message("never", item_id="msg_2")],
    )
    session_id = await h.session(agent_id)
    results: dict[str, Any] = {}

    async def send(key: str, timeout: float | None) -> None:
        results[key] = await h.manager.send_message(session_id, key, timeout=timeout)

    async with anyio.create_task_group() as group:
        group.start_soon(send, "first", None)
        await anyio.sleep(0.05)
        group.start_soon(send, "second", 0.05)

    assert results["first"].unwrap().content == "slow answer"
    assert results["second"].error.code is ErrorCode.TIMEOUT
    assert [item.text for item in (await h.stored(session_id)).messages()] == [
        "first",
        "slow answer",
    ]


async def test_a_cancelled_caller_is_cancelled_and_nothing_is_stored(h: TurnHarness) -> None:
    started = anyio.Event()

    async def hang(call: ModelCall) -> Any:
        started.set()
        await anyio.sleep(10)
        return [assistant_message("too late", item_id="msg_x")]

    session_id = await chat_with_one_turn(h, ModelStep.respond(hang))
    before = await h.snapshot(session_id)

    async def cancel_once_running(scope: anyio.CancelScope) -> None:
        await started.wait()
        scope.cancel()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(cancel_once_running, scope)
            await h.manager.send_message(session_id, "Hello?")

    assert scope.cancelled_caught
    assert await h.snapshot(session_id) == before
    assert (await h.manager.send_message(session_id, "Again")).unwrap().content == "after"


async def test_a_caller_cancelled_by_its_task_group_stores_nothing(h: TurnHarness) -> None:
    started = anyio.Event()

    async def hang(call: ModelCall) -> Any:
        started.set()
        await anyio.sleep(10)
        return [assistant_message("too late", item_id="msg_x")]

    session_id = await chat_with_one_turn(h, ModelStep.respond(hang))
    before = await h.snapshot(session_id)

    async with anyio.create_task_group() as group:
        group.start_soon(h.manager.send_message, session_id, "Hello?")
        await started.wait()
        group.cancel_scope.cancel()

    assert await h.snapshot(session_id) == before


class SlowWriteStore(MemoryStore):
    """A memory store whose session writes take a while, to cancel a caller during one."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = anyio.Event()

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
        lease: Lease | None = None,
        keep: int | None = None,
        limits: CreateLimits | None = None,
    ) -> None:
        if expected_revision is not None:
            self.writing.set()
            await anyio.sleep(0.2)
        await super().write_session(
            header,
            new_items,
            expected_revision=expected_revision,
            lease=lease,
            keep=keep,
            limits=limits,
        )


async def test_a_cancellation_during_the_write_lands_after_it() -> None:
    store = SlowWriteStore()
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    async with SessionManager(store, agents) as manager:
        agent_id = agents.register(
            Agent(name="Helper", model=ScriptedModel([[assistant_message("Hi", item_id="m")]]))
        )
        session_id = (await manager.create_session(agent_id, "Chat")).unwrap().id

        async with anyio.create_task_group() as group:
            group.start_soon(manager.send_message, session_id, "Hello")
            await store.writing.wait()
            group.cancel_scope.cancel()

        stored = await store.get_session(session_id)
        cached = (await manager.get_session(session_id)).unwrap()
    assert stored is not None
    assert [item.text for item in stored.messages()] == ["Hello", "Hi"]
    assert cached == stored
