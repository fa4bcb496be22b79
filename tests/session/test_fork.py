"""A fork starts a new session from another one, as it is now or as it was at a checkpoint,
and the two never mix afterwards (on every store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime import ChatSession, ErrorCode, Result, StateModule
from chatruntime.models import HistoryItem
from support.lifetime import Lab, open_lab
from support.stores import store_params

pytestmark = pytest.mark.anyio

TTL = 60.0


@pytest.fixture(params=store_params())
async def lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lab]:
    async with open_lab(request.param, tmp_path, request, ttl=TTL) as opened:
        yield opened


class Counter(StateModule):
    def __init__(self, value: int = 0) -> None:
        super().__init__()
        self.value = value
        self.register_state("value")


def texts(history: list[HistoryItem]) -> list[str]:
    return [getattr(item, "text", item.type) for item in history]


async def chat(lab: Lab, session_id: str, *messages: str) -> ChatSession:
    for message in messages:
        (await lab.manager.send_message(session_id, message)).unwrap()
    return (await lab.manager.get_session(session_id)).unwrap()


def code_of(result: Result[Any]) -> ErrorCode:
    assert result.error is not None, result
    return result.error.code


async def test_a_fork_from_now_copies_the_session_into_a_new_one(lab: Lab) -> None:
    m = lab.manager
    session = (
        await m.create_session(lab.agent.id, "Trip", user_id="alice", metadata={"tier": "gold"})
    ).unwrap()
    (await m.save_session_state(session.id, counter=Counter(5))).unwrap()
    (await m.save_checkpoint(session.id)).unwrap()
    source = await chat(lab, session.id, "one", "two")
    (await m.update_session(session.id, status="completed")).unwrap()
    lab.clock.advance(TTL / 2)

    fork = (await m.fork_session(session.id)).unwrap()
    assert fork.id != session.id
    assert (fork.agent_id, fork.user_id, fork.name, fork.status, fork.revision) == (
        lab.agent.id,
        "alice",
        "Trip (fork)",
        "active",
        0,
    )
    assert fork.history == source.history
    assert (fork.metadata, fork.state) == ({"tier": "gold"}, {"counter": {"value": 5}})
    assert fork.context.model_dump(exclude={"last_activity"}) == (
        source.context.model_dump(exclude={"last_activity"})
    )
    assert fork.expires_at == lab.clock.now + 60_000
    assert await lab.store.get_session(fork.id) == fork
    assert (await m.list_checkpoints(fork.id)).unwrap() == []  # checkpoints stay behind
    assert (await m.get_active_session_count("alice")).unwrap() == 2


async def test_a_fork_from_a_checkpoint_starts_where_the_checkpoint_was(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Quiz")).unwrap()
    (await m.save_session_state(session.id, counter=Counter(1))).unwrap()
    at_one = await chat(lab, session.id, "one")
    saved = (await m.save_checkpoint(session.id, "after one")).unwrap()
    await chat(lab, session.id, "two")
    (await m.save_session_state(session.id, counter=Counter(2))).unwrap()

    fork = (await m.fork_session(session.id, saved.id, "Second try")).unwrap()
    assert (fork.name, fork.history, fork.state) == (
        "Second try",
        at_one.history,
        {"counter": {"value": 1}},
    )
    loaded = Counter()
    (await m.load_session_state(fork.id, counter=loaded)).unwrap()
    assert loaded.value == 1


async def test_a_fork_and_its_source_stay_independent(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    await chat(lab, session.id, "shared")
    saved = (await m.save_checkpoint(session.id)).unwrap()
    fork = (await m.fork_session(session.id, saved.id)).unwrap()

    await chat(lab, fork.id, "only in the fork")
    await chat(lab, session.id, "only in the source")
    (await m.update_session(fork.id, name="Fork renamed")).unwrap()
    (await m.restore_checkpoint(session.id, saved.id)).unwrap()  # rewinding the source...
    (await m.delete_session(session.id)).unwrap()  # ...or deleting it leaves the fork be

    kept = (await m.get_session(fork.id)).unwrap()
    assert kept.name == "Fork renamed"
    assert texts(kept.history) == [
        "shared",
        "[offline] You said: shared (turn 1)",
        "only in the fork",
        "[offline] You said: only in the fork (turn 2)",
    ]
    fresh = lab.open_manager()
    (await fresh.initialize()).unwrap()
    assert (await fresh.get_session(fork.id)).unwrap().history == kept.history


async def test_a_fork_of_a_long_session_copies_every_item(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Long")).unwrap()
    grown = await lab.grow(session.id, 400)
    saved = (await lab.manager.save_checkpoint(session.id)).unwrap()
    await lab.grow(session.id, 100)
    fork = (await lab.manager.fork_session(session.id, saved.id)).unwrap()
    stored = await lab.store.get_session(fork.id)
    assert stored is not None and stored.history == grown.history


async def test_a_fork_needs_a_good_name_and_an_existing_checkpoint(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "x" * 100)).unwrap()
    named = await m.fork_session(session.id, name="")
    assert code_of(named) is ErrorCode.VALIDATION_ERROR
    assert code_of(await m.fork_session(session.id, "not-an-id")) is ErrorCode.VALIDATION_ERROR
    fork = (await m.fork_session(session.id)).unwrap()
    assert fork.name == "x" * 93 + " (fork)"  # the default name fits the 100 characters
    assert await lab.store.count_sessions() == 2
