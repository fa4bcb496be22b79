"""The cache never falls behind the store, and ``close()`` lets work in flight finish.

Each test stretches one store call with a delay so that another call lands in the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from agents import Agent
from agents.testing import ScriptedModel, assistant_message

from chatruntime import (
    AgentManager,
    ErrorCode,
    MemoryStore,
    OfflineModelProvider,
    SessionManager,
    TextDelta,
)
from chatruntime.models import ChatSession, HistoryItem, SessionHeader
from chatruntime.stores import CreateLimits, Lease
from support.turns import slow_step

pytestmark = pytest.mark.anyio


class SlowStore(MemoryStore):
    """A ``MemoryStore`` whose next write or read waits ``delay`` seconds in the middle."""

    def __init__(self) -> None:
        super().__init__()
        self.write_delay = 0.0
        self.read_delay = 0.0
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
        delay, self.write_delay = self.write_delay, 0.0
        if delay:
            self.writing.set()
            await anyio.sleep(delay)
        await super().write_session(
            header,
            new_items,
            expected_revision=expected_revision,
            lease=lease,
            keep=keep,
            limits=limits,
        )

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        delay, self.read_delay = self.read_delay, 0.0
        found = await super().get_session(session_id, last=last)
        await anyio.sleep(delay)
        return found


async def open_manager(store: SlowStore, *steps: object) -> tuple[SessionManager, str]:
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    agent_id = agents.register(Agent(name="Helper", model=ScriptedModel(list(steps))))
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    return manager, agent_id


async def test_a_stream_left_during_its_write_is_stored_whole_and_cached() -> None:
    store = SlowStore()
    manager, agent_id = await open_manager(store, [assistant_message("Hi there")])
    session_id = (await manager.create_session(agent_id, "Chat")).unwrap().id
    store.write_delay = 0.3

    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for event in manager.stream_message(session_id, "Hello"):
                    assert isinstance(event, TextDelta)

            tg.start_soon(consume)
            await store.writing.wait()
            tg.cancel_scope.cancel()  # the consumer walks away while the turn is written

    stored = await store.get_session(session_id)
    cached = (await manager.get_session(session_id)).unwrap()
    assert stored == cached
    assert (cached.revision, [item.type for item in cached.history]) == (
        1,
        ["message", "message"],
    )


async def test_a_slow_read_never_replaces_a_newer_cached_session() -> None:
    store = SlowStore()
    manager, agent_id = await open_manager(store, [assistant_message("Hi there")])
    other = SessionManager(store, manager.agents)
    (await other.initialize()).unwrap()
    session_id = (await other.create_session(agent_id, "Made elsewhere")).unwrap().id
    store.read_delay = 0.3  # the first read (get_session's) returns revision 0 late

    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.get_session, session_id)
        await anyio.sleep(0.05)
        reply = await manager.send_message(session_id, "Hello")

    assert reply.unwrap().content == "Hi there"
    assert (await manager.get_session(session_id)).unwrap() == await store.get_session(session_id)


async def test_close_waits_for_a_turn_in_flight(tmp_path: Path) -> None:
    from chatruntime import FileStore

    store = FileStore(tmp_path)
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    agent_id = agents.register(
        Agent(name="Helper", model=ScriptedModel([slow_step(0.3, assistant_message("Done"))]))
    )
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    session_id = (await manager.create_session(agent_id, "Chat")).unwrap().id
    replies = []

    async with anyio.create_task_group() as tg:

        async def send() -> None:
            replies.append(await manager.send_message(session_id, "Hello"))

        tg.start_soon(send)
        await anyio.sleep(0.1)
        await manager.close()

    assert [r.unwrap().content for r in replies] == ["Done"]
    assert [p async for p in anyio.Path(tmp_path).glob("sessions/*/*.journal")] == []
    reopened = FileStore(tmp_path)
    stored = await reopened.get_session(session_id)
    assert stored is not None
    assert (stored.revision, len(stored.history)) == (1, 2)


async def test_bad_model_settings_in_the_environment_are_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATRUNTIME_API", "telepathy")
    store = MemoryStore()
    agents = AgentManager(store)
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    agent = (await agents.create_agent("Helper")).unwrap()
    session_id = (await manager.create_session(agent.id, "Chat")).unwrap().id

    result = await manager.send_message(session_id, "Hello")

    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.message.startswith("the model settings in the environment are invalid")
    assert (await store.get_session(session_id)) is not None
    assert (await manager.get_session(session_id)).unwrap().history == []
