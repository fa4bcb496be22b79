"""Turns over HTTP: the reply as JSON, the stream as server-sent events, and failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from agents import Agent
from agents.exceptions import ModelBehaviorError
from agents.testing import ScriptedModel, assistant_message, function_call

from chatruntime import (
    Done,
    Error,
    ErrorCode,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolRegistry,
    ToolResult,
)
from conftest import ADMIN_KEY, Service, error_body, sse_events
from support.turns import lookup, slow_step


def new_session(client: httpx.Client, **fields: Any) -> str:
    response = client.post("/sessions", json={"name": "Chat", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stream(client: httpx.Client, session_id: str, content: str, **fields: Any) -> list[StreamEvent]:
    with client.stream(
        "POST", f"/sessions/{session_id}/messages:stream", json={"content": content, **fields}
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        named = list(sse_events(response.iter_lines()))
    assert all(name == event.type for name, event in named)
    return [event for _, event in named]


def history(service: Service, session_id: str) -> list[tuple[str, str]]:
    session = service.call(lambda: service.store.get_session(session_id))
    assert session is not None
    return [(item.type, getattr(item, "text", "")) for item in session.history]


def test_send_answers_the_reply_once_the_turn_is_stored(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)

    response = alice.post(f"/sessions/{session_id}/messages", json={"content": "Hello"})

    assert response.status_code == 200
    reply = response.json()
    assert (reply["role"], reply["content"], reply["agentId"]) == (
        "assistant",
        "[offline] You said: Hello (turn 1)",
        service.default_agent_id,
    )
    assert reply["usage"] == {"requests": 1, "inputTokens": 3, "outputTokens": 6, "totalTokens": 9}
    assert history(service, session_id) == [
        ("message", "Hello"),
        ("message", "[offline] You said: Hello (turn 1)"),
    ]


def test_stream_sends_text_deltas_then_one_done_with_the_stored_reply(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)

    events = stream(alice, session_id, "Hello")

    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert [event.type for event in events] == ["text_delta"] * len(deltas) + ["done"]
    done = events[-1]
    assert isinstance(done, Done)
    assert "".join(delta.text for delta in deltas) == done.message.content
    assert done.message.content == "[offline] You said: Hello (turn 1)"
    assert history(service, session_id)[-1] == ("message", done.message.content)


def test_tool_calls_and_their_results_are_streamed(start_service: Callable[..., Service]) -> None:
    service = start_service(tools=ToolRegistry([lookup]))
    admin = service.client(ADMIN_KEY)
    agent = admin.post("/agents", json={"name": "Looker", "tools": ["lookup"]}).json()
    alice = service.client()
    session_id = new_session(alice, agentId=agent["id"])

    events = stream(alice, session_id, '/tool lookup {"n": 3}')

    assert [event.type for event in events[:2]] == ["tool_call", "tool_result"]
    call, result = events[0], events[1]
    assert isinstance(call, ToolCall) and isinstance(result, ToolResult)
    assert (call.name, call.arguments, result.call_id, result.output, result.failed) == (
        "lookup",
        '{"n":3}',
        call.call_id,
        "result 3",
        False,
    )
    done = events[-1]
    assert isinstance(done, Done)
    assert done.message.content == "[offline] lookup returned: result 3"


def test_a_paused_session_answers_409_to_send_and_stream(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)
    alice.patch(f"/sessions/{session_id}", json={"status": "paused"})
    expected = {
        "code": "SESSION_NOT_ACTIVE",
        "message": f"session {session_id} is paused; set it active to send messages",
        "details": {"session_id": session_id, "status": "paused"},
    }

    sent = alice.post(f"/sessions/{session_id}/messages", json={"content": "Hello"})
    streamed = alice.post(f"/sessions/{session_id}/messages:stream", json={"content": "Hello"})

    assert (sent.status_code, error_body(sent)) == (409, expected)
    assert (streamed.status_code, error_body(streamed)) == (409, expected)
    assert streamed.headers["content-type"] == "application/json"
    assert history(service, session_id) == []


@pytest.mark.parametrize("route", ["messages", "messages:stream"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"content": "  "}, "content must not be empty or only whitespace"),
        ({"content": "Hi", "timeout": -1}, "timeout must be a positive number of seconds, got -1"),
    ],
)
def test_bad_content_or_timeout_answers_422(
    alice: httpx.Client, route: str, body: dict[str, Any], message: str
) -> None:
    session_id = new_session(alice)

    response = alice.post(f"/sessions/{session_id}/{route}", json=body)

    assert response.status_code == 422
    assert error_body(response)["message"].startswith(message)


@pytest.mark.parametrize("route", ["messages", "messages:stream"])
def test_a_model_failure_answers_502_model_error(
    service: Service, alice: httpx.Client, route: str
) -> None:
    broken = service.register(
        Agent(name="Broken", model=ScriptedModel([RuntimeError("connection reset")]))
    )
    session_id = new_session(alice, agentId=broken)

    response = alice.post(f"/sessions/{session_id}/{route}", json={"content": "Hello"})

    assert response.status_code == 502
    assert error_body(response)["code"] == "MODEL_ERROR"
    assert history(service, session_id) == []


def test_a_failure_after_events_streamed_ends_the_stream_with_one_error(
    service: Service, alice: httpx.Client
) -> None:
    agent_id = service.register(
        Agent(
            name="Flaky",
            model=ScriptedModel(
                [
                    [function_call("lookup", {"n": 1}, call_id="call_1")],
                    ModelBehaviorError("garbled"),
                ]
            ),
            tools=[lookup],
        )
    )
    session_id = new_session(alice, agentId=agent_id)

    events = stream(alice, session_id, "Go")

    assert [event.type for event in events] == ["tool_call", "tool_result", "error"]
    error = events[-1]
    assert isinstance(error, Error)
    assert error.error.code is ErrorCode.MODEL_ERROR
    assert history(service, session_id) == []
    assert service.metric("chatruntime_errors_total", code="MODEL_ERROR") == 1
    assert service.metric("chatruntime_turns_total", mode="stream", outcome="error") == 1


@pytest.mark.parametrize("route", ["messages", "messages:stream"])
def test_a_turn_over_its_timeout_answers_504(
    service: Service, alice: httpx.Client, route: str
) -> None:
    slow = service.register(
        Agent(
            name="Slow",
            model=ScriptedModel([slow_step(10, assistant_message("late", item_id="msg_1"))]),
        )
    )
    session_id = new_session(alice, agentId=slow)

    response = alice.post(
        f"/sessions/{session_id}/{route}", json={"content": "Hello", "timeout": 0.1}
    )

    assert response.status_code == 504
    assert error_body(response) == {
        "code": "TIMEOUT",
        "message": "the turn took longer than 0.1s; nothing was stored",
        "details": {"session_id": session_id, "timeout": 0.1},
    }
    assert history(service, session_id) == []


def test_a_session_held_elsewhere_past_the_lease_timeout_answers_429(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(manager_options={"lease_timeout": 0.2})
    alice = service.client()
    session_id = new_session(alice)
    release = anyio.Event()
    held = anyio.Event()

    async def hold() -> None:
        async with service.store.lease(session_id, ttl=30, timeout=5):
            held.set()
            await release.wait()

    async def start_holding() -> None:
        service.loop.create_task(hold())
        await held.wait()

    service.call(start_holding)
    try:
        response = alice.post(f"/sessions/{session_id}/messages", json={"content": "Hello"})
    finally:

        async def let_go() -> None:
            release.set()

        service.call(let_go)

    assert response.status_code == 429
    assert error_body(response)["code"] == "BUSY"
    assert history(service, session_id) == []


def test_content_may_be_a_list_of_input_parts(service: Service, alice: httpx.Client) -> None:
    session_id = new_session(alice)
    parts = [{"type": "input_text", "text": "Hello"}, {"type": "input_text", "text": " there"}]

    response = alice.post(f"/sessions/{session_id}/messages", json={"content": parts})

    assert response.status_code == 200
    stored = service.call(lambda: service.store.get_session(session_id))
    assert stored is not None
    assert stored.history[0].content == parts  # type: ignore[union-attr]


def test_a_bad_input_part_answers_422_naming_it(alice: httpx.Client) -> None:
    session_id = new_session(alice)

    response = alice.post(
        f"/sessions/{session_id}/messages", json={"content": [{"type": "input_video"}]}
    )

    assert response.status_code == 422
    assert "input_video" in error_body(response)["message"]


def test_an_idle_stream_sends_keep_alive_comments(start_service: Callable[..., Service]) -> None:
    service = start_service(offline_delay=0.1, app_options={"ping_seconds": 0.02})
    alice = service.client()
    session_id = new_session(alice)

    with alice.stream(
        "POST", f"/sessions/{session_id}/messages:stream", json={"content": "Hello"}
    ) as response:
        lines = list(response.iter_lines())

    assert ": ping" in lines
    events = list(sse_events(lines))
    assert isinstance(events[-1][1], Done)
