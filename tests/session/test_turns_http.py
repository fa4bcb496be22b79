"""Turns through the SDK's real OpenAI client, against the loopback Responses API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.models.interface import ModelProvider

from chatruntime import (
    AgentManager,
    Done,
    Error,
    ErrorCode,
    ItemUsage,
    MemoryStore,
    SessionManager,
    TextDelta,
    ToolCall,
    ToolResult,
)
from chatruntime.agent._providers import ModelConfig, build_model_provider
from chatruntime.models import FunctionCallItem, FunctionCallResultItem, MessageItem, ReasoningItem
from chatruntime.session._replay import history_to_input
from support.openai_server import OpenAIServer, function_call, message, reasoning, usage
from support.stores import open_store_for_test
from support.turns import STORE_KINDS, TurnHarness, lookup

pytestmark = pytest.mark.anyio


@pytest.fixture
async def provider(openai_server: OpenAIServer) -> AsyncIterator[ModelProvider]:
    config = ModelConfig(base_url=openai_server.base_url, default_model="test-model", max_retries=0)
    built = build_model_provider(config)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture(params=STORE_KINDS)
async def h(
    request: pytest.FixtureRequest, tmp_path: Path, provider: ModelProvider
) -> AsyncIterator[TurnHarness]:
    async with open_store_for_test(str(request.param), tmp_path, request) as store:
        agents = AgentManager(store, model_provider=provider)
        manager = SessionManager(store, agents, run_config=RunConfig(tracing_disabled=True))
        (await manager.initialize()).unwrap()
        try:
            yield TurnHarness(str(request.param), tmp_path, store, agents, manager)
        finally:
            await manager.close()


async def helper_session(h: TurnHarness) -> str:
    agent_id = h.agents.register(Agent(name="Helper", instructions="Be brief.", tools=[lookup]))
    return await h.session(agent_id)


async def test_a_plain_reply_over_http(h: TurnHarness, openai_server: OpenAIServer) -> None:
    session_id = await helper_session(h)
    openai_server.reply(message("Hi there!", id="msg_1"), usage=usage(12, 3))

    reply = (await h.manager.send_message(session_id, "Hello")).unwrap()

    assert (reply.content, reply.usage) == (
        "Hi there!",
        ItemUsage(requests=1, input_tokens=12, output_tokens=3, total_tokens=15),
    )
    sent = openai_server.requests[0]
    assert (sent["model"], sent["instructions"], sent["input"]) == (
        "test-model",
        "Be brief.",
        [{"content": "Hello", "role": "user"}],
    )
    stored = await h.stored(session_id)
    assert [item.text for item in stored.messages()] == ["Hello", "Hi there!"]
    context = stored.context
    assert (
        context.input_tokens,
        context.output_tokens,
        context.total_tokens,
        context.requests,
        context.total_messages,
    ) == (12, 3, 15, 1, 2)


async def sdk_requests(
    openai_server: OpenAIServer, provider: ModelProvider, messages: list[str]
) -> list[dict[str, Any]]:
    """The requests the SDK itself makes when each turn continues ``to_input_list()``."""
    first = len(openai_server.requests)
    agent = Agent(name="Helper", instructions="Be brief.", tools=[lookup])
    config = RunConfig(model_provider=provider, tracing_disabled=True)
    history: list[TResponseInputItem] = []
    for text in messages:
        result = await Runner.run(
            agent, [*history, {"content": text, "role": "user"}], run_config=config
        )
        history = result.to_input_list()
    return openai_server.requests[first:]


def script_tool_round_trip(openai_server: OpenAIServer) -> None:
    openai_server.reply(
        reasoning("I should look it up", id="rs_1", encrypted_content="gAAA-1"),
        function_call("lookup", {"n": 1}, call_id="call_1"),
        usage=usage(20, 5),
    )
    openai_server.reply(message("It is result 1", id="msg_1"), usage=usage(40, 6))
    openai_server.reply(message("Bye", id="msg_2"), usage=usage(50, 2))


async def test_a_tool_round_trip_over_http_replays_like_the_sdk(
    h: TurnHarness, openai_server: OpenAIServer, provider: ModelProvider
) -> None:
    session_id = await helper_session(h)
    script_tool_round_trip(openai_server)

    first = (await h.manager.send_message(session_id, "Look up 1")).unwrap()
    second = (await h.manager.send_message(session_id, "Bye")).unwrap()

    ours = openai_server.requests[:3]
    script_tool_round_trip(openai_server)
    theirs = await sdk_requests(openai_server, provider, ["Look up 1", "Bye"])
    assert [request["input"] for request in ours] == [request["input"] for request in theirs]
    assert ours[1]["input"][-2:] == [
        {
            "arguments": '{"n":1}',
            "call_id": "call_1",
            "name": "lookup",
            "type": "function_call",
            "id": "fc_call_1",
            "status": "completed",
        },
        {"call_id": "call_1", "output": "result 1", "type": "function_call_output"},
    ]
    stored = await h.stored(session_id)
    assert [type(item) for item in stored.history] == [
        MessageItem,
        ReasoningItem,
        FunctionCallItem,
        FunctionCallResultItem,
        MessageItem,
        MessageItem,
        MessageItem,
    ]
    assert history_to_input(stored.history) == [
        *theirs[2]["input"],
        {
            "id": "msg_2",
            "content": [{"annotations": [], "logprobs": [], "text": "Bye", "type": "output_text"}],
            "role": "assistant",
            "status": "completed",
            "type": "message",
        },
    ]
    assert (first.content, second.content) == ("It is result 1", "Bye")
    assert first.usage == ItemUsage(requests=2, input_tokens=60, output_tokens=11, total_tokens=71)
    assert (stored.context.total_tokens, stored.context.requests) == (25 + 46 + 52, 3)


async def test_streamed_text_arrives_in_the_servers_pieces(
    h: TurnHarness, openai_server: OpenAIServer
) -> None:
    session_id = await helper_session(h)
    openai_server.reply(message("Hello there, friend", id="msg_1"), usage=usage(9, 4))

    events = [event async for event in h.manager.stream_message(session_id, "Hi")]

    assert openai_server.requests[0]["stream"] is True
    reply = (await h.stored(session_id)).messages()[-1]
    assert events == [
        TextDelta(text="Hello"),
        TextDelta(text=" there,"),
        TextDelta(text=" friend"),
        Done(message=events[-1].message),
    ]
    assert (events[-1].message.content, events[-1].message.id) == ("Hello there, friend", reply.id)
    assert events[-1].message.usage == ItemUsage(
        requests=1, input_tokens=9, output_tokens=4, total_tokens=13
    )


async def test_a_streamed_tool_round_trip(h: TurnHarness, openai_server: OpenAIServer) -> None:
    session_id = await helper_session(h)
    openai_server.reply(function_call("lookup", {"n": 4}, call_id="call_4"), usage=usage(10, 2))
    openai_server.reply(message("Result four", id="msg_1"), usage=usage(15, 2))

    events = [event async for event in h.manager.stream_message(session_id, "Look up 4")]

    assert events[:-1] == [
        ToolCall(name="lookup", arguments='{"n":4}', call_id="call_4"),
        ToolResult(call_id="call_4", output="result 4"),
        TextDelta(text="Result"),
        TextDelta(text=" four"),
    ]
    assert isinstance(events[-1], Done)
    assert openai_server.requests[1]["input"][-1] == {
        "call_id": "call_4",
        "output": "result 4",
        "type": "function_call_output",
    }
    stored = await h.stored(session_id)
    assert (stored.context.total_tokens, stored.context.total_function_calls) == (29, 1)


async def test_a_server_error_is_a_model_error_and_stores_nothing(
    h: TurnHarness, openai_server: OpenAIServer
) -> None:
    session_id = await helper_session(h)
    openai_server.reply(message("First", id="msg_1"))
    (await h.manager.send_message(session_id, "Hello")).unwrap()
    before = await h.snapshot(session_id)
    openai_server.fail(500, "The server had an error")
    openai_server.fail(500, "The server had an error again")

    result = await h.manager.send_message(session_id, "Hello?")
    events = [event async for event in h.manager.stream_message(session_id, "Hello?")]

    assert result.error is not None
    assert (result.error.code, result.error.details["status_code"]) == (ErrorCode.MODEL_ERROR, 500)
    endpoint = f"{openai_server.base_url}/responses"
    assert result.error.details["endpoint"] == endpoint
    assert result.error.message.startswith(f"the model at {endpoint} answered HTTP 500: ")
    assert len(events) == 1 and isinstance(events[0], Error)
    assert events[0].error.code is ErrorCode.MODEL_ERROR
    assert await h.snapshot(session_id) == before
    assert len(openai_server.requests) == 3


async def test_a_slow_server_times_out_and_stores_nothing(
    h: TurnHarness, openai_server: OpenAIServer
) -> None:
    session_id = await helper_session(h)
    openai_server.reply(message("Too late", id="msg_1"), delay=5)
    before = await h.snapshot(session_id)

    result = await h.manager.send_message(session_id, "Hello", timeout=0.2)

    assert result.error is not None and result.error.code is ErrorCode.TIMEOUT
    assert await h.snapshot(session_id) == before


async def test_without_a_provider_the_manager_uses_the_environments(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("CHATRUNTIME_OFFLINE", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("CHATRUNTIME_MODEL", "env-model")
    openai_server.reply(message("From the environment", id="msg_1"))
    store = MemoryStore()
    agents = AgentManager(store)
    async with SessionManager(store, agents) as manager:
        agent_id = agents.register(Agent(name="Helper"))
        session_id = (await manager.create_session(agent_id, "Chat")).unwrap().id

        reply = (await manager.send_message(session_id, "Hello")).unwrap()

    assert reply.content == "From the environment"
    assert openai_server.requests[0]["model"] == "env-model"


async def test_a_server_that_is_down_is_named_in_the_model_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed.
    base_url = f"http://127.0.0.1:{port}/v1"
    config = ModelConfig(base_url=base_url, default_model="m", max_retries=0, timeout=5)
    provider = build_model_provider(config)
    try:
        store = MemoryStore()
        agents = AgentManager(store, model_provider=provider)
        async with SessionManager(store, agents) as manager:
            agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
            session = (await manager.create_session(agent.id, "Chat")).unwrap()
            result = await manager.send_message(session.id, "Hello")
    finally:
        await provider.aclose()
    assert result.error is not None
    assert result.error.code is ErrorCode.MODEL_ERROR
    assert result.error.message == (
        f"the model at {base_url}/responses could not be reached: Connection error."
    )
