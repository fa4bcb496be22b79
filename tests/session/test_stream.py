"""``stream_message``: typed events as a turn runs, one ``Done`` or ``Error``, walking away."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent
from agents.exceptions import ModelBehaviorError
from agents.testing import ScriptedModel, assistant_message, function_call

from chatruntime import (
    STREAM_EVENT_ADAPTER,
    AgentChanged,
    Done,
    Error,
    ErrorCode,
    Handoff,
    OfflineModel,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolResult,
)
from chatruntime.models import Message
from support.turns import (
    STORE_KINDS,
    TurnHarness,
    crash,
    lookup,
    open_turn_harness,
    sdk_chained_inputs,
    slow_step,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORE_KINDS)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


async def collect(h: TurnHarness, session_id: str, content: str, **options: Any) -> list[Any]:
    return [event async for event in h.manager.stream_message(session_id, content, **options)]


async def stored_reply(h: TurnHarness, session_id: str) -> Message:
    return Message.from_item((await h.stored(session_id)).messages()[-1])


async def test_text_arrives_as_deltas_then_done_with_the_stored_reply(h: TurnHarness) -> None:
    agent_id = h.agents.register(Agent(name="Offline", model=OfflineModel()))
    session_id = await h.session(agent_id)

    events = await collect(h, session_id, "Hello there")

    reply = await stored_reply(h, session_id)
    assert reply.content == "[offline] You said: Hello there (turn 1)"
    assert events[-1] == Done(message=reply)
    deltas = events[:-1]
    assert all(isinstance(event, TextDelta) for event in deltas)
    assert [event.text for event in deltas] == [
        "[offline] ",
        "You ",
        "said: ",
        "Hello ",
        "there ",
        "(turn ",
        "1)",
    ]


async def test_tool_calls_and_results_are_streamed(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [
            function_call("lookup", {"n": 7}, call_id="call_7"),
            function_call("crash", {"n": 8}, call_id="call_8"),
        ],
        [assistant_message("7 found, 8 broke", item_id="msg_1")],
        tools=[lookup, crash],
    )
    session_id = await h.session(agent_id)

    events = await collect(h, session_id, "Look up 7 and 8")

    assert events == [
        ToolCall(name="lookup", arguments='{"n":7}', call_id="call_7"),
        ToolCall(name="crash", arguments='{"n":8}', call_id="call_8"),
        ToolResult(call_id="call_7", output="result 7", failed=False),
        ToolResult(
            call_id="call_8",
            output="An error occurred while running the tool. Please try again.",
            failed=True,
        ),
        TextDelta(text="7 found, 8 broke"),
        Done(message=await stored_reply(h, session_id)),
    ]


async def test_a_handoff_is_streamed_with_the_agent_change(h: TurnHarness) -> None:
    billing = Agent(
        name="Billing", model=ScriptedModel([[assistant_message("Billing here", item_id="m2")]])
    )
    billing_id = h.agents.register(billing)
    triage_id = h.agent(
        "Triage",
        [function_call("transfer_to_billing", {}, call_id="call_h")],
        handoffs=[billing],
    )
    session_id = await h.session(triage_id)

    events = await collect(h, session_id, "Invoice")

    reply = await stored_reply(h, session_id)
    assert events == [
        Handoff(from_agent_id=triage_id, to_agent_id=billing_id),
        AgentChanged(agent_id=billing_id, name="Billing"),
        TextDelta(text="Billing here"),
        Done(message=reply),
    ]
    assert reply.agent_id == billing_id


async def test_a_streamed_turn_replays_like_the_sdks_own(h: TurnHarness) -> None:
    steps: list[Any] = [
        [function_call("lookup", {"n": 1}, call_id="call_1", item_id="fc_1")],
        [assistant_message("result 1 it is", item_id="msg_1")],
        [assistant_message("Bye", item_id="msg_2")],
    ]
    agent_id = h.agent("Helper", *steps, tools=[lookup])
    session_id = await h.session(agent_id)

    await collect(h, session_id, "Look up 1")
    (await h.manager.send_message(session_id, "Bye")).unwrap()

    _, starts = await sdk_chained_inputs(
        Agent(name="Helper", model=ScriptedModel(steps), tools=[lookup]), ["Look up 1", "Bye"]
    )
    assert h.models[0].calls[2].input == starts[1]


async def test_events_survive_a_json_round_trip(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [function_call("lookup", {"n": 1}, call_id="call_1")],
        [assistant_message("Done", item_id="msg_1")],
        tools=[lookup],
    )
    session_id = await h.session(agent_id)

    events = await collect(h, session_id, "Go")

    assert [STREAM_EVENT_ADAPTER.validate_json(event.model_dump_json()) for event in events] == (
        events
    )
    assert [event.type for event in events] == ["tool_call", "tool_result", "text_delta", "done"]


async def test_a_failed_turn_ends_with_one_error_and_stores_nothing(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [function_call("lookup", {"n": 1}, call_id="call_1")],
        ModelBehaviorError("garbled"),
        tools=[lookup],
    )
    session_id = await h.session(agent_id)
    before = await h.snapshot(session_id)

    events = await collect(h, session_id, "Go")

    assert events[:2] == [
        ToolCall(name="lookup", arguments='{"n":1}', call_id="call_1"),
        ToolResult(call_id="call_1", output="result 1"),
    ]
    assert len(events) == 3
    assert isinstance(events[2], Error)
    assert events[2].error.code is ErrorCode.MODEL_ERROR
    assert await h.snapshot(session_id) == before


async def test_refusals_come_as_a_single_error_event(h: TurnHarness) -> None:
    session_id = await h.session(h.agent("Helper"))
    (await h.manager.update_session(session_id, status="paused")).unwrap()

    paused = await collect(h, session_id, "Hello")
    empty = await collect(h, session_id, "  ")

    assert [type(event) for event in paused + empty] == [Error, Error]
    assert [paused[0].error.code, empty[0].error.code] == [
        ErrorCode.SESSION_NOT_ACTIVE,
        ErrorCode.VALIDATION_ERROR,
    ]


async def test_a_stream_that_times_out_ends_with_timeout(h: TurnHarness) -> None:
    session_id = await h.session(
        h.agent("Slow", slow_step(10, assistant_message("late", item_id="msg_1")))
    )
    before = await h.snapshot(session_id)

    events = await collect(h, session_id, "Hello", timeout=0.05)

    assert [type(event) for event in events] == [Error]
    assert events[0].error.code is ErrorCode.TIMEOUT
    assert await h.snapshot(session_id) == before


async def chat_then_slow_agent(h: TurnHarness) -> str:
    """A session with one stored turn whose agent now streams one word every 50 ms."""
    agent_id = h.agents.register(Agent(name="Offline", model=OfflineModel(delay=0.05)))
    session_id = await h.session(agent_id)
    (await h.manager.send_message(session_id, "Hello")).unwrap()
    return session_id


async def assert_unchanged_and_usable(h: TurnHarness, session_id: str, before: Any) -> None:
    assert await h.snapshot(session_id) == before
    reply = (await h.manager.send_message(session_id, "Still there?")).unwrap()
    assert reply.content == "[offline] You said: Still there? (turn 2)"


async def test_leaving_the_loop_early_cancels_the_turn(h: TurnHarness) -> None:
    session_id = await chat_then_slow_agent(h)
    before = await h.snapshot(session_id)

    received: list[StreamEvent] = []
    async with aclosing(h.manager.stream_message(session_id, "Tell me more")) as events:
        async for event in events:
            received.append(event)
            break

    assert received == [TextDelta(text="[offline] ")]
    await assert_unchanged_and_usable(h, session_id, before)


async def test_breaking_without_closing_still_cancels_the_turn(h: TurnHarness) -> None:
    session_id = await chat_then_slow_agent(h)
    before = await h.snapshot(session_id)

    async for _ in h.manager.stream_message(session_id, "Tell me more"):
        break
    # The abandoned iterator is finalised by the event loop, in a task of its own.
    await anyio.sleep(0.2)

    await assert_unchanged_and_usable(h, session_id, before)


async def test_a_cancelled_consumer_cancels_the_turn(h: TurnHarness) -> None:
    session_id = await chat_then_slow_agent(h)
    before = await h.snapshot(session_id)
    received: list[StreamEvent] = []

    with anyio.CancelScope() as scope:
        async with aclosing(h.manager.stream_message(session_id, "Tell me more")) as events:
            async for event in events:
                received.append(event)
                if len(received) == 2:
                    # The consumer's task is cancelled while it waits for the next event.
                    scope.cancel()

    assert scope.cancelled_caught
    assert received == [TextDelta(text="[offline] "), TextDelta(text="You ")]
    await assert_unchanged_and_usable(h, session_id, before)
