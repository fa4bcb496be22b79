"""Per-call SDK options: a tool reads the caller's context, hooks fire, a call's max_turns and
run_config apply, and tracing groups a session's turns by its id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, RunContextWrapper, RunHooks, function_tool
from agents.testing import assistant_message, function_call
from pydantic import BaseModel

from chatruntime import Done, ErrorCode
from chatruntime.models import MessageItem
from support.turns import STORE_KINDS, TurnHarness, open_turn_harness

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORE_KINDS)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


@dataclass
class Caller:
    user: str
    seen: list[str]


@function_tool
def whoami(wrapper: RunContextWrapper[Caller]) -> str:
    """Say who is asking."""
    wrapper.context.seen.append(wrapper.context.user)
    return f"you are {wrapper.context.user}"


def tool_agent(h: TurnHarness) -> str:
    return h.agent(
        "Helper",
        [function_call("whoami", "{}", call_id="c1")],
        [assistant_message("done", item_id="m1")],
        tools=[whoami],
    )


async def test_a_tool_reads_the_callers_context(h: TurnHarness) -> None:
    session_id = await h.session(tool_agent(h))
    caller = Caller(user="alice", seen=[])
    reply = await h.manager.send_message(session_id, "who am I?", context=caller)
    assert reply.unwrap().content == "done"
    assert caller.seen == ["alice"]
    stored = await h.stored(session_id)
    assert [
        getattr(i, "output", None) for i in stored.history if i.type == "function_call_result"
    ] == ["you are alice"]


async def test_a_streamed_turn_hands_the_context_and_hooks_on(h: TurnHarness) -> None:
    session_id = await h.session(tool_agent(h))
    caller = Caller(user="bob", seen=[])
    hooks = Recorder()
    events = [
        event
        async for event in h.manager.stream_message(
            session_id, "who am I?", context=caller, hooks=hooks
        )
    ]
    assert isinstance(events[-1], Done)
    assert caller.seen == ["bob"]
    assert hooks.events == ["agent_start", "tool_start:whoami", "tool_end:whoami", "agent_end"]


class Recorder(RunHooks[Any]):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def on_agent_start(self, context: Any, agent: Agent[Any]) -> None:
        self.events.append("agent_start")

    async def on_agent_end(self, context: Any, agent: Agent[Any], output: Any) -> None:
        self.events.append("agent_end")

    async def on_tool_start(self, context: Any, agent: Agent[Any], tool: Any) -> None:
        self.events.append(f"tool_start:{tool.name}")

    async def on_tool_end(self, context: Any, agent: Agent[Any], tool: Any, result: str) -> None:
        self.events.append(f"tool_end:{tool.name}")


async def test_hooks_fire_on_a_sent_turn(h: TurnHarness) -> None:
    session_id = await h.session(tool_agent(h))
    hooks = Recorder()
    (await h.manager.send_message(session_id, "hi", context=Caller("c", []), hooks=hooks)).unwrap()
    assert hooks.events == ["agent_start", "tool_start:whoami", "tool_end:whoami", "agent_end"]


async def test_a_calls_max_turns_applies_and_stores_nothing(h: TurnHarness) -> None:
    session_id = await h.session(tool_agent(h))
    before = await h.stored(session_id)
    result = await h.manager.send_message(session_id, "hi", context=Caller("c", []), max_turns=1)
    assert result.error is not None
    assert result.error.code is ErrorCode.MAX_TURNS_EXCEEDED
    assert await h.stored(session_id) == before


@pytest.mark.parametrize(
    ("options", "field"),
    [({"max_turns": 0}, "max_turns"), ({"run_config": {}}, "run_config"), ({"hooks": 1}, "hooks")],
)
async def test_bad_call_options_are_validation_errors(
    h: TurnHarness, options: dict[str, Any], field: str
) -> None:
    session_id = await h.session(h.agent("Helper", [assistant_message("x", item_id="m")]))
    result = await h.manager.send_message(session_id, "hi", **options)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.details["field"] == field


async def test_tracing_groups_a_sessions_turns_unless_the_call_says_otherwise(
    h: TurnHarness,
) -> None:
    session_id = await h.session(h.agent("Helper", [assistant_message("a", item_id="m1")]))
    config = await h.manager._turn_run_config(None, session_id)
    assert config.group_id == session_id
    mine = await h.manager._turn_run_config(RunConfig(group_id="conversation-7"), session_id)
    assert mine.group_id == "conversation-7"


class Forecast(BaseModel):
    city: str
    celsius: int


async def test_a_structured_reply_carries_its_typed_value_and_stores_it(
    h: TurnHarness,
) -> None:
    answer = '{"city":"Paris","celsius":21}'
    agent_id = h.agent(
        "Forecaster", [assistant_message(answer, item_id="m1")], output_type=Forecast
    )
    session_id = await h.session(agent_id)
    reply = (await h.manager.send_message(session_id, "weather?")).unwrap()
    assert reply.output == Forecast(city="Paris", celsius=21)
    assert reply.content == answer
    stored = await h.stored(session_id)
    last = stored.history[-1]
    assert isinstance(last, MessageItem)
    assert last.output == {"city": "Paris", "celsius": 21}
    recent = (await h.manager.get_recent_messages(session_id, limit=1)).unwrap()
    assert recent == [last]


async def test_a_plain_text_reply_has_no_structured_output(h: TurnHarness) -> None:
    session_id = await h.session(h.agent("Helper", [assistant_message("hi", item_id="m1")]))
    reply = (await h.manager.send_message(session_id, "hello")).unwrap()
    assert reply.output is None
    stored = await h.stored(session_id)
    assert "output" not in stored.history[-1].to_wire()
