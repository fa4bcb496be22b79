"""The manager is a cache over its store, never a copy of it: it reads what a call needs.

A spy store records every read, so each test states exactly what reached the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message

from chatruntime import (
    AgentManager,
    ErrorCode,
    LastItems,
    MemoryStore,
    OfflineModelProvider,
    SessionManager,
    TokenBudget,
)
from chatruntime.models import ChatSession, MessageItem, SessionHeader
from support.factories import turn_items
from support.managers import open_harness

pytestmark = pytest.mark.anyio


class SpyStore(MemoryStore):
    """A memory store that records how each session was read (``None``: whole history)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, int | None]] = []
        self.scans = 0

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        self.reads.append((session_id, last))
        return await super().get_session(session_id, last=last)

    async def scan_sessions(self) -> AsyncIterator[Any]:
        self.scans += 1
        async for found in super().scan_sessions():
            yield found


async def fill(store: MemoryStore, agent_id: str, sessions: int, turns: int) -> list[str]:
    """``sessions`` sessions of ``turns`` four-item turns each, written straight to the store."""
    ids: list[str] = []
    for n in range(sessions):
        from support.factories import header

        h = header(agent_id=agent_id, name=f"s{n}")
        await store.write_session(h, [], expected_revision=None)
        for turn in range(turns):
            nxt = h.model_copy(update={"revision": h.revision + 1})
            await store.write_session(nxt, turn_items(turn), expected_revision=h.revision)
            h = nxt
        ids.append(h.id)
    return ids


def echo_model() -> ScriptedModel:
    """A model that answers every call with "ok" and records what it was sent."""

    async def answer(call: ModelCall) -> Any:
        return [assistant_message("ok", item_id=f"msg-{len(call.input)}")]

    return ScriptedModel([ModelStep.respond(answer)] * 2500)


async def open_manager(
    store: MemoryStore, **options: Any
) -> tuple[SessionManager, str, Agent[Any]]:
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    manager = SessionManager(store, agents, **options)
    (await manager.initialize()).unwrap()
    agent = Agent(name="Helper", model=echo_model())
    return manager, agents.register(agent), agent


async def test_initialize_reads_no_session() -> None:
    store = SpyStore()
    await fill(store, "0f0e0d0c-0b0a-4909-8807-060504030201", sessions=30, turns=2)
    manager, _, _ = await open_manager(store)
    try:
        assert (store.reads, store.scans, manager.cached_sessions) == ([], 0, 0)
    finally:
        await manager.close()


async def test_the_cache_keeps_at_most_cache_size_sessions_most_recent_first() -> None:
    store = SpyStore()
    manager, agent_id, _ = await open_manager(store, cache_size=3)
    try:
        ids = [(await manager.create_session(agent_id, f"s{n}")).unwrap().id for n in range(5)]
        assert manager.cached_sessions == 3
        store.reads.clear()
        # The two oldest left the cache; using one reads it again, whole.
        again = (await manager.get_session(ids[0])).unwrap()
        assert again.id == ids[0]
        assert store.reads == [(ids[0], None)]
        assert manager.cached_sessions == 3
    finally:
        await manager.close()


async def test_an_evicted_session_continues_its_conversation_exactly() -> None:
    store = SpyStore()
    manager, agent_id, agent = await open_manager(store, cache_size=1)
    try:
        first = (await manager.create_session(agent_id, "first")).unwrap().id
        other = (await manager.create_session(agent_id, "other")).unwrap().id
        for text in ("one", "two"):
            (await manager.send_message(first, text)).unwrap()
            (await manager.send_message(other, text)).unwrap()
        stored = await store.get_session(first)
        assert stored is not None
        assert [i.text for i in stored.messages()] == ["one", "ok", "two", "ok"]
        # The model saw the whole conversation each time, although the cache held one
        # session: the second call on `first` had 3 items of input (one, ok, two).
        model = agent.model
        assert isinstance(model, ScriptedModel)
        assert [len(call.input) for call in model.calls] == [1, 1, 3, 3]
    finally:
        await manager.close()


async def test_a_turn_with_a_last_items_window_reads_only_the_tail() -> None:
    store = SpyStore()
    manager, agent_id, agent = await open_manager(store, window=LastItems(4))
    try:
        [session_id] = await fill(store, agent_id, sessions=1, turns=50)
        store.reads.clear()
        (await manager.send_message(session_id, "next")).unwrap()
        assert store.reads == [(session_id, 0), (session_id, 5)]
        model = agent.model
        assert isinstance(model, ScriptedModel)
        # The window's four items (one whole turn) and the new message.
        assert len(model.calls[0].input) == 5
        stored = await store.get_session(session_id)
        assert stored is not None and len(stored.history) == 202
        store.reads.clear()
        (await manager.send_message(session_id, "again")).unwrap()
        assert store.reads == []
        # The cached tail stays the size it was read at, turn after turn.
        for n in range(5):
            (await manager.send_message(session_id, f"more {n}")).unwrap()
        entry = manager._cache.get(session_id)
        assert entry is not None and not entry.complete
        assert len(entry.session.history) == 5
        assert store.reads == []
    finally:
        await manager.close()


async def test_a_token_budget_reads_more_of_the_tail_until_the_budget_is_spent() -> None:
    store = SpyStore()
    manager, agent_id, _ = await open_manager(store, window=TokenBudget(2_000))
    try:
        [session_id] = await fill(store, agent_id, sessions=1, turns=100)
        store.reads.clear()
        (await manager.send_message(session_id, "next")).unwrap()
        lasts = [last for _, last in store.reads]
        assert lasts[0] == 0
        assert all(last is not None and last < 400 for last in lasts)
        assert lasts[1:] == sorted(lasts[1:])
    finally:
        await manager.close()


async def test_recent_messages_of_an_uncached_session_read_only_the_tail() -> None:
    store = SpyStore()
    manager, agent_id, _ = await open_manager(store)
    try:
        [session_id] = await fill(store, agent_id, sessions=1, turns=30)
        store.reads.clear()
        recent = (await manager.get_recent_messages(session_id, limit=6)).unwrap()
        stored = await store.get_session(session_id)
        assert stored is not None
        assert recent == stored.history[-6:]
        assert store.reads[0] == (session_id, 6)
        assert manager.cached_sessions == 0
    finally:
        await manager.close()


async def test_listing_pages_through_every_session_via_the_store_index() -> None:
    store = SpyStore()
    manager, agent_id, _ = await open_manager(store)
    try:
        made = [(await manager.create_session(agent_id, f"s{n}")).unwrap() for n in range(7)]
        store.reads.clear()
        seen: list[str] = []
        cursor: str | None = None
        while True:
            page = (await manager.list_sessions(limit=3, cursor=cursor)).unwrap()
            assert all(
                isinstance(s, SessionHeader) and not hasattr(s, "history") for s in page.sessions
            )
            seen.extend(s.id for s in page.sessions)
            if (cursor := page.next_cursor) is None:
                break
        expected = sorted(made, key=lambda s: (s.context.last_activity, s.id), reverse=True)
        assert seen == [s.id for s in expected]
        assert store.reads == []
    finally:
        await manager.close()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"cursor": "bogus"}, "cursor"),
        ({"status": "archived"}, "status"),
        ({"user_id": ""}, "user_id"),
    ],
)
async def test_bad_listing_arguments_answer_validation_error(
    options: dict[str, Any], field: str
) -> None:
    manager, _, _ = await open_manager(MemoryStore())
    try:
        result = await manager.list_sessions(**options)
        assert result.error is not None
        assert result.error.code is ErrorCode.VALIDATION_ERROR
        assert result.error.details["field"] == field
    finally:
        await manager.close()


async def test_a_replayed_history_is_the_same_from_the_cache_and_from_the_store() -> None:
    store = SpyStore()
    manager, agent_id, agent = await open_manager(store)
    try:
        session_id = (await manager.create_session(agent_id, "Chat")).unwrap().id
        for text in ("one", "two"):
            (await manager.send_message(session_id, text)).unwrap()
        (await manager.refresh()).unwrap()
        (await manager.send_message(session_id, "three")).unwrap()
        (await manager.send_message(session_id, "four")).unwrap()
        model = agent.model
        assert isinstance(model, ScriptedModel)
        third, fourth = model.calls[2].input, model.calls[3].input
        assert fourth[: len(third)] == third
        assert [m.get("content") for m in fourth if m.get("role") == "user"] == [
            "one",
            "two",
            "three",
            "four",
        ]
    finally:
        await manager.close()


async def test_check_reports_progress_and_caches_nothing() -> None:
    store = SpyStore()
    manager, agent_id, _ = await open_manager(store)
    try:
        await fill(store, agent_id, sessions=4, turns=1)
        seen: list[tuple[int, int]] = []
        report = (await manager.check(progress=lambda n, total: seen.append((n, total)))).unwrap()
        assert (report.sessions, report.corrupt) == (4, [])
        assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert manager.cached_sessions == 0
    finally:
        await manager.close()


@pytest.mark.parametrize("kind", ["memory", "file", "sqlite", "postgres", "redis"])
async def test_a_thousand_sessions_at_once_answer_every_turn(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind in ("postgres", "redis"):
        request.applymarker(pytest.mark.services)
    async with open_harness(kind, tmp_path, request) as h:
        agent = Agent(name="Echo", model=echo_model())
        agent_id = h.agents.register(agent)
        ids = [(await h.manager.create_session(agent_id, f"s{n}")).unwrap().id for n in range(1000)]
        errors: list[str] = []

        async def talk(session_id: str) -> None:
            for text in ("hello", "again"):
                result = await h.manager.send_message(session_id, text)
                if result.error is not None:
                    errors.append(f"{result.error.code.value}: {result.error.message}")

        async with anyio.create_task_group() as group:
            for session_id in ids:
                group.start_soon(talk, session_id)
        assert errors == []
        sample = await h.store.get_session(ids[-1])
        assert sample is not None
        assert [m.text for m in sample.history if isinstance(m, MessageItem)] == [
            "hello",
            "ok",
            "again",
            "ok",
        ]
