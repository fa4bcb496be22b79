"""Replay: stored history rebuilds exactly what the SDK would send, and never an orphan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, ToolErrorFormatterArgs
from agents.items import TResponseInputItem
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import ResponseReasoningItem
from openai.types.responses.response_reasoning_item import Content, Summary

from chatruntime.models import (
    HISTORY_ADAPTER,
    ChatSession,
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    MessageItem,
    ReasoningItem,
)
from chatruntime.session._replay import history_to_input, items_from_run
from support.factories import T0
from support.turns import crash, lookup

pytestmark = pytest.mark.anyio


def reasoning(
    item_id: str, text: str, *, encrypted: str | None = None, raw: str | None = None
) -> ResponseReasoningItem:
    # Only fields a provider sent are set; an explicit None would be replayed as null.
    fields: dict[str, Any] = {}
    if encrypted is not None:
        fields["encrypted_content"] = encrypted
    if raw is not None:
        fields["content"] = [Content(text=raw, type="reasoning_text")]
    return ResponseReasoningItem(
        id=item_id, type="reasoning", summary=[Summary(text=text, type="summary_text")], **fields
    )


@dataclass
class Scenario:
    """Two agents (the second is the first one's handoff target) and what their models say."""

    steps: list[Any]
    other_steps: list[Any]
    messages: list[str]


SCENARIOS: dict[str, Scenario] = {
    "plain": Scenario(
        [
            [assistant_message("Hi!", item_id="msg_1")],
            [assistant_message("Again", item_id="msg_2")],
        ],
        [],
        ["Hello", "And again"],
    ),
    "tools": Scenario(
        [
            [function_call("lookup", {"n": 1}, call_id="call_1", item_id="fc_1")],
            [assistant_message("It is result 1", item_id="msg_1")],
            [
                function_call("lookup", {"n": 2}, call_id="call_2"),
                function_call("lookup", {"n": 3}, call_id="call_3"),
            ],
            [assistant_message("2 and 3", item_id="msg_2")],
        ],
        [],
        ["Look up 1", "Look up 2 and 3"],
    ),
    "tool error": Scenario(
        [
            [function_call("crash", {"n": 1}, call_id="call_1")],
            [assistant_message("The tool failed", item_id="msg_1")],
            [assistant_message("Still here", item_id="msg_2")],
        ],
        [],
        ["Crash it", "Then?"],
    ),
    "handoff": Scenario(
        [
            [
                assistant_message("Passing you on", item_id="msg_1"),
                function_call("transfer_to_other", {}, call_id="call_h"),
            ],
            [assistant_message("Triage again", item_id="msg_3")],
        ],
        [[assistant_message("Other here", item_id="msg_2")]],
        ["I need the other one", "Back to you"],
    ),
    "handoff next to tool calls": Scenario(
        [
            [
                function_call("lookup", {"n": 1}, call_id="call_1"),
                function_call("transfer_to_other", {}, call_id="call_h"),
                function_call("lookup", {"n": 2}, call_id="call_2"),
            ],
            [assistant_message("Triage again", item_id="msg_3")],
        ],
        [
            [function_call("lookup", {"n": 9}, call_id="call_9")],
            [assistant_message("Other here", item_id="msg_2")],
        ],
        ["Both, please", "Back to you"],
    ),
    "reasoning": Scenario(
        [
            [
                reasoning("rs_1", "Think first", encrypted="gAAA-1"),
                function_call("lookup", {"n": 1}, call_id="call_1", item_id="fc_1"),
            ],
            [
                reasoning("rs_2", "Now answer", raw="raw thoughts"),
                assistant_message("Result 1", item_id="msg_1"),
            ],
            [reasoning("rs_3", "Short"), assistant_message("Bye", item_id="msg_2")],
        ],
        [],
        ["Think about 1", "Bye"],
    ),
}


def build(scenario: Scenario) -> tuple[Agent[Any], Callable[[Agent[Any]], str]]:
    other = Agent(name="Other", model=ScriptedModel(scenario.other_steps), tools=[lookup])
    agent = Agent(
        name="Triage",
        model=ScriptedModel(scenario.steps),
        tools=[lookup, crash],
        handoffs=[other],
    )
    ids = {id(agent): "agent-triage", id(other): "agent-other"}
    return agent, lambda a: ids[id(a)]


def recording(failed: set[str]) -> Callable[[ToolErrorFormatterArgs[Any]], None]:
    def record(args: ToolErrorFormatterArgs[Any]) -> None:
        failed.add(args.call_id)

    return record


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_replayed_history_equals_the_sdks_chained_input_list(name: str) -> None:
    agent, agent_ref = build(SCENARIOS[name])
    history: list[HistoryItem] = []
    sdk_history: list[TResponseInputItem] = []
    for text in SCENARIOS[name].messages:
        user = MessageItem(role="user", content=text, timestamp=T0)
        start = [*sdk_history, {"content": text, "role": "user"}]
        assert history_to_input([*history, user]) == start
        failed: set[str] = set()
        config = RunConfig(tracing_disabled=True, tool_error_formatter=recording(failed))
        result = await Runner.run(agent, start, run_config=config)
        produced = items_from_run(
            result.new_items, agent_ref=agent_ref, failed_calls=failed, timestamp=T0
        )
        history = [*history, user, *produced]
        sdk_history = result.to_input_list()
        assert history_to_input(history) == sdk_history
    # What a store keeps (the wire form) replays the same.
    reloaded = HISTORY_ADAPTER.validate_python([item.to_wire() for item in history])
    assert history_to_input(reloaded) == sdk_history


async def test_run_items_become_typed_history_items() -> None:
    agent, agent_ref = build(SCENARIOS["reasoning"])
    result = await Runner.run(agent, "Think", run_config=RunConfig(tracing_disabled=True))
    items = items_from_run(result.new_items, agent_ref=agent_ref, failed_calls=(), timestamp=T0)
    assert items == [
        ReasoningItem(
            id=items[0].id,
            timestamp=T0,
            agent_id="agent-triage",
            item_id="rs_1",
            summary=[{"text": "Think first", "type": "summary_text"}],
            encrypted_content="gAAA-1",
        ),
        FunctionCallItem(
            id=items[1].id,
            timestamp=T0,
            agent_id="agent-triage",
            name="lookup",
            arguments='{"n":1}',
            call_id="call_1",
            item_id="fc_1",
        ),
        FunctionCallResultItem(
            id=items[2].id,
            timestamp=T0,
            agent_id="agent-triage",
            name="lookup",
            call_id="call_1",
            status="completed",
            output="result 1",
        ),
        ReasoningItem(
            id=items[3].id,
            timestamp=T0,
            agent_id="agent-triage",
            item_id="rs_2",
            summary=[{"text": "Now answer", "type": "summary_text"}],
            content=[{"text": "raw thoughts", "type": "reasoning_text"}],
        ),
        MessageItem(
            id=items[4].id,
            timestamp=T0,
            agent_id="agent-triage",
            role="assistant",
            content=[
                {"annotations": [], "text": "Result 1", "type": "output_text", "logprobs": []}
            ],
            status="completed",
            item_id="msg_1",
        ),
    ]


async def test_a_handoff_is_one_item_with_both_agents() -> None:
    agent, agent_ref = build(SCENARIOS["handoff"])
    result = await Runner.run(agent, "Go", run_config=RunConfig(tracing_disabled=True))
    items = items_from_run(result.new_items, agent_ref=agent_ref, failed_calls=(), timestamp=T0)
    assert [type(item).__name__ for item in items] == ["MessageItem", "HandoffItem", "MessageItem"]
    handoff = items[1]
    assert isinstance(handoff, HandoffItem)
    assert (
        handoff.from_agent_id,
        handoff.to_agent_id,
        handoff.agent_id,
        handoff.call_id,
        handoff.name,
        handoff.arguments,
        handoff.output,
    ) == (
        "agent-triage",
        "agent-other",
        "agent-triage",
        "call_h",
        "transfer_to_other",
        "{}",
        '{"assistant": "Other"}',
    )
    assert [items[0].agent_id, items[2].agent_id] == ["agent-triage", "agent-other"]


async def test_a_tool_that_raised_has_a_failed_result() -> None:
    agent, agent_ref = build(SCENARIOS["tool error"])
    failed: set[str] = set()
    config = RunConfig(tracing_disabled=True, tool_error_formatter=recording(failed))
    result = await Runner.run(agent, "Crash", run_config=config)
    items = items_from_run(result.new_items, agent_ref=agent_ref, failed_calls=failed, timestamp=T0)
    outcome = items[1]
    assert isinstance(outcome, FunctionCallResultItem)
    assert (outcome.call_id, outcome.status, outcome.output) == (
        "call_1",
        "failed",
        "An error occurred while running the tool. Please try again.",
    )


def call(call_id: str, **extra: Any) -> FunctionCallItem:
    return FunctionCallItem(name="lookup", arguments="{}", call_id=call_id, **extra)


def result(call_id: str, output: str = "ok") -> FunctionCallResultItem:
    return FunctionCallResultItem(name="lookup", call_id=call_id, output=output)


def test_orphan_calls_and_outputs_are_not_sent() -> None:
    history: list[HistoryItem] = [
        MessageItem(role="user", content="Hi"),
        call("call_lost"),  # no output: never sent
        result("call_unknown"),  # no call: never sent
        call("call_ok"),
        result("call_ok"),
        result("call_ok", "again"),  # a second output for one call: never sent
        result("call_early"),  # its call comes after it
        call("call_early"),
        HandoffItem(from_agent_id="a", to_agent_id="b"),  # cortex's, no call id
    ]
    assert history_to_input(history) == [
        {"content": "Hi", "role": "user"},
        {"arguments": "{}", "call_id": "call_ok", "name": "lookup", "type": "function_call"},
        {"call_id": "call_ok", "output": "ok", "type": "function_call_output"},
    ]


CORTEX_SESSION: dict[str, Any] = {
    "id": "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
    "agentId": "3f1c2a9e-8b7d-4c1e-9f2a-1d2c3b4a5e6f",
    "name": "Weather",
    "createdAt": 1753776100000,
    "updatedAt": 1753776160000,
    "history": [
        {
            "type": "message",
            "role": "system",
            "content": "Answer in one sentence.",
            "timestamp": 1753776100000,
        },
        {
            "id": "6b1f2a5f-1d66-4a1f-b7b8-6e2a1c9d0b01",
            "type": "message",
            "role": "user",
            "content": [{"type": "text", "text": "Weather in Paris?"}],
            "timestamp": 1753776101000,
            "status": "completed",
        },
        {
            "id": "fc_01",
            "type": "function_call",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "callId": "call_abc123",
            "status": "completed",
            "providerData": {"model": "gpt-4.1-mini"},
        },
        {
            "type": "function_call_result",
            "name": "get_weather",
            "callId": "call_abc123",
            "status": "completed",
            "output": {"type": "text", "text": "18°C, cloudy"},
        },
        {
            "id": "fc_02",
            "type": "function_call",
            "name": "get_forecast",
            "arguments": '{"city": "Paris", "days": 2}',
            "callId": "call_def456",
            "status": "failed",
        },
        {
            "type": "function_call_result",
            "name": "get_forecast",
            "callId": "call_def456",
            "status": "failed",
            "output": {"type": "error", "error": "forecast service unavailable"},
        },
        {
            "id": "6b1f2a5f-1d66-4a1f-b7b8-6e2a1c9d0b02",
            "type": "message",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "It is 18°C and cloudy in Paris.",
                    "providerData": {"annotations": []},
                }
            ],
            "timestamp": 1753776160000,
            "status": "completed",
        },
    ],
    "context": {
        "totalTokens": 0,
        "totalMessages": 3,
        "totalFunctionCalls": 2,
        "lastActivity": 1753776160000,
    },
    "status": "active",
}


def test_cortex_history_replays_as_plain_messages_and_calls() -> None:
    session = ChatSession.model_validate(CORTEX_SESSION)
    assert history_to_input(session.history) == [
        {"content": "Answer in one sentence.", "role": "system"},
        {"content": [{"text": "Weather in Paris?", "type": "input_text"}], "role": "user"},
        {
            "arguments": '{"city": "Paris"}',
            "call_id": "call_abc123",
            "name": "get_weather",
            "type": "function_call",
            "status": "completed",
        },
        {"call_id": "call_abc123", "output": "18°C, cloudy", "type": "function_call_output"},
        {
            "arguments": '{"city": "Paris", "days": 2}',
            "call_id": "call_def456",
            "name": "get_forecast",
            "type": "function_call",
        },
        {
            "call_id": "call_def456",
            "output": "forecast service unavailable",
            "type": "function_call_output",
        },
        {"content": "It is 18°C and cloudy in Paris.", "role": "assistant"},
    ]
