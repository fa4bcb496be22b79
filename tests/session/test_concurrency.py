"""One turn at a time per session, in call order; sessions do not wait for each other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents.testing import ModelCall, ModelStep, assistant_message

from chatruntime.models import Message, Result
from support.turns import STORE_KINDS, TurnHarness, open_turn_harness

pytestmark = pytest.mark.anyio

TURNS = 200


@pytest.fixture(params=STORE_KINDS)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


async def test_concurrent_messages_run_one_at_a_time_in_call_order(h: TurnHarness) -> None:
    inputs: list[list[Any]] = []

    def echo(call: ModelCall) -> Any:
        # Recorded here: reading ScriptedModel.calls would deep-copy every input again.
        inputs.append(call.input)
        question = call.input[-1]["content"]
        return [assistant_message(f"re: {question}", item_id=f"msg_{question}")]

    agent_id = h.agent("Echo", *[ModelStep.respond(echo) for _ in range(TURNS)])
    session_id = await h.session(agent_id)
    results: dict[int, Result[Message]] = {}

    async def send(number: int) -> None:
        results[number] = await h.manager.send_message(session_id, f"m{number}")

    async with anyio.create_task_group() as group:
        for number in range(TURNS):
            group.start_soon(send, number)

    assert [results[number].unwrap().content for number in range(TURNS)] == [
        f"re: m{number}" for number in range(TURNS)
    ]
    stored = await h.stored(session_id)
    expected = [text for number in range(TURNS) for text in (f"m{number}", f"re: m{number}")]
    assert [item.text for item in stored.messages()] == expected
    assert (stored.revision, stored.context.total_turns, stored.context.total_messages) == (
        TURNS,
        TURNS,
        2 * TURNS,
    )
    assert len(inputs) == TURNS
    for number, sent in enumerate(inputs):
        # Every earlier turn, complete, then this turn's message.
        assert [item["content"] if item.get("role") == "user" else item["id"] for item in sent] == [
            *(part for earlier in range(number) for part in (f"m{earlier}", f"msg_m{earlier}")),
            f"m{number}",
        ]
    assert len(h.manager._locks) == 0


async def test_turns_of_different_sessions_run_at_the_same_time(h: TurnHarness) -> None:
    started = {"a": anyio.Event(), "b": anyio.Event()}

    def meets(me: str, other: str) -> ModelStep:
        async def respond(call: ModelCall) -> Any:
            started[me].set()
            # Only returns if the other session's turn is running at the same time.
            with anyio.fail_after(5):
                await started[other].wait()
            return [assistant_message(f"{me} met {other}", item_id=f"msg_{me}")]

        return ModelStep.respond(respond)

    first = await h.session(h.agent("A", meets("a", "b")))
    second = await h.session(h.agent("B", meets("b", "a")))
    replies: dict[str, Result[Message]] = {}

    async def send(key: str, session_id: str) -> None:
        replies[key] = await h.manager.send_message(session_id, "Hello")

    async with anyio.create_task_group() as group:
        group.start_soon(send, "a", first)
        group.start_soon(send, "b", second)

    assert (replies["a"].unwrap().content, replies["b"].unwrap().content) == (
        "a met b",
        "b met a",
    )
