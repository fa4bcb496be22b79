"""Idempotent turns: a turn sent again with the same ``idempotency_key`` is not run again; the
caller gets the reply that was stored, after a restart and from another process too."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from chatruntime import (
    AgentManager,
    Done,
    ErrorCode,
    FileStore,
    MessageItem,
    SessionManager,
    TextDelta,
)
from chatruntime.models import IDEMPOTENCY_KEYS_KEPT
from support.managers import Harness, open_harness
from support.stores import store_params

pytestmark = pytest.mark.anyio


@pytest.fixture(params=store_params())
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(request.param, tmp_path, request) as harness:
        yield harness


async def test_a_repeated_key_returns_the_stored_reply_without_running_again(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
    first = (await h.manager.send_message(session.id, "Hello", idempotency_key="k-1")).unwrap()
    again = (await h.manager.send_message(session.id, "Hello", idempotency_key="k-1")).unwrap()
    assert again == first
    assert first.content == "[offline] You said: Hello (turn 1)"
    stored = (await h.manager.get_session(session.id)).unwrap()
    assert [item.type for item in stored.history] == ["message", "message"]
    assert stored.context.total_turns == 1
    assert [(k.key, k.item_id, k.item_count) for k in stored.turn_keys] == [
        ("k-1", stored.history[0].id, 2)
    ]


async def test_different_keys_and_no_key_each_run_a_turn(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
    a = (await h.manager.send_message(session.id, "Hi", idempotency_key="a")).unwrap()
    b = (await h.manager.send_message(session.id, "Hi", idempotency_key="b")).unwrap()
    c = (await h.manager.send_message(session.id, "Hi")).unwrap()
    assert [a.content, b.content, c.content] == [
        "[offline] You said: Hi (turn 1)",
        "[offline] You said: Hi (turn 2)",
        "[offline] You said: Hi (turn 3)",
    ]
    stored = (await h.manager.get_session(session.id)).unwrap()
    assert [k.key for k in stored.turn_keys] == ["a", "b"]


async def test_the_key_survives_a_restart(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
    first = (await h.manager.send_message(session.id, "Hello", idempotency_key="k")).unwrap()
    for n in range(3):
        (await h.manager.send_message(session.id, f"later {n}")).unwrap()
    await h.manager.close()
    fresh = SessionManager(h.store, AgentManager(h.store))
    (await fresh.initialize()).unwrap()
    try:
        again = (await fresh.send_message(session.id, "Hello", idempotency_key="k")).unwrap()
        assert again == first
        assert (await fresh.get_session(session.id)).unwrap().context.total_turns == 4
    finally:
        await fresh.close()
    h.manager = SessionManager(h.store, h.agents)
    (await h.manager.initialize()).unwrap()


async def test_racing_calls_with_one_key_run_one_turn(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
    replies = []

    async def send() -> None:
        result = await h.manager.send_message(session.id, "Once", idempotency_key="same")
        replies.append(result.unwrap())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(send)
    assert len({reply.id for reply in replies}) == 1
    stored = (await h.manager.get_session(session.id)).unwrap()
    assert stored.context.total_turns == 1
    assert len(stored.history) == 2


async def test_a_streamed_repeat_yields_only_done_with_the_stored_reply(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
    events = [e async for e in h.manager.stream_message(session.id, "Hi", idempotency_key="s")]
    assert any(isinstance(e, TextDelta) for e in events)
    done = events[-1]
    assert isinstance(done, Done)
    repeat = [e async for e in h.manager.stream_message(session.id, "Hi", idempotency_key="s")]
    assert repeat == [Done(message=done.message)]
    sent = (await h.manager.send_message(session.id, "Hi", idempotency_key="s")).unwrap()
    assert sent == done.message


@pytest.mark.parametrize(
    ("key", "wording"),
    [
        ("", "idempotency_key must be a string of 1 to 200 characters"),
        ("x" * 201, "idempotency_key must be a string of 1 to 200 characters"),
        (
            "tab\there",
            "idempotency_key must hold printable characters only; got one with the "
            "unprintable character U+0009",
        ),
        (
            "bad\ud800",
            "idempotency_key must hold printable characters only; got one with a lone "
            "surrogate (U+D800)",
        ),
    ],
)
async def test_a_bad_key_is_refused_and_nothing_is_stored(
    h: Harness, key: str, wording: str
) -> None:
    session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
    result = await h.manager.send_message(session.id, "Hi", idempotency_key=key)
    assert result.error is not None
    assert result.error.code == ErrorCode.VALIDATION_ERROR
    assert result.error.message == wording
    assert (await h.manager.get_session(session.id)).unwrap().history == []


@pytest.mark.parametrize("kind", ["memory"])
async def test_the_header_remembers_the_most_recent_keys_only(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_harness(kind, tmp_path, request) as h:
        session = (await h.manager.create_session(h.agent.id, "chat")).unwrap()
        for n in range(IDEMPOTENCY_KEYS_KEPT + 1):
            (await h.manager.send_message(session.id, f"m{n}", idempotency_key=f"k{n}")).unwrap()
        stored = (await h.manager.get_session(session.id)).unwrap()
        assert [k.key for k in stored.turn_keys] == [
            f"k{n}" for n in range(1, IDEMPOTENCY_KEYS_KEPT + 1)
        ]
        # The oldest key is forgotten: sending it again runs a new turn.
        again = (await h.manager.send_message(session.id, "m0", idempotency_key="k0")).unwrap()
        assert again.content == f"[offline] You said: m0 (turn {IDEMPOTENCY_KEYS_KEPT + 2})"


async def test_another_process_gets_the_stored_reply(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "data")
    agents = AgentManager(store)
    async with SessionManager(store, agents) as manager:
        agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
        session = (await manager.create_session(agent.id, "chat")).unwrap()
        first = (await manager.send_message(session.id, "Hello", idempotency_key="p")).unwrap()
    script = textwrap.dedent(
        f"""
        import anyio
        from chatruntime import AgentManager, FileStore, SessionManager

        async def main() -> None:
            store = FileStore({str(tmp_path / "data")!r})
            async with SessionManager(store, AgentManager(store)) as manager:
                reply = await manager.send_message(
                    {session.id!r}, "Hello", idempotency_key="p"
                )
                print(reply.unwrap().model_dump_json())

        anyio.run(main)
        """
    )
    with anyio.fail_after(120):
        done = await anyio.run_process([sys.executable, "-c", script], check=True)
    assert done.stdout.decode().strip() == first.model_dump_json()
    async with SessionManager(store, agents) as manager:
        stored = (await manager.get_session(session.id)).unwrap()
        assert stored.context.total_turns == 1
        assert sum(isinstance(item, MessageItem) for item in stored.history) == 2
