"""Sessions belong to users: a caller that names a user never sees, changes, sends to or
deletes another user's session, and cannot even learn that it exists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime import Err, Error, ErrorCode, Result
from chatruntime.models import new_id
from support.managers import Harness, open_harness
from support.stores import damage_session, damageable_store_params, store_params

pytestmark = pytest.mark.anyio


@pytest.fixture(params=store_params())
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(request.param, tmp_path, request) as harness:
        yield harness


def not_found(result: Result[Any]) -> tuple[ErrorCode, str]:
    assert result.error is not None, result
    return result.error.code, result.error.message


async def test_another_users_session_answers_exactly_as_an_unknown_id(h: Harness) -> None:
    alice = h.manager.for_user("alice")
    bob = h.manager.for_user("bob")
    mine = (await alice.create_session(h.agent.id, "Alice's")).unwrap()
    unknown = new_id()

    async def streamed(session_id: str) -> Result[Any]:
        events = [event async for event in bob.stream_message(session_id, "hi")]
        assert len(events) == 1 and isinstance(events[0], Error)
        return Err(events[0].error)

    for call in (
        lambda sid: bob.get_session(sid),
        lambda sid: bob.update_session(sid, name="Mine now"),
        lambda sid: bob.get_recent_messages(sid),
        lambda sid: bob.send_message(sid, "hello"),
        streamed,
        lambda sid: bob.delete_session(sid),
    ):
        guessed = not_found(await call(mine.id))
        missing = not_found(await call(unknown))
        assert guessed == (ErrorCode.SESSION_NOT_FOUND, f"no session has id {mine.id}")
        assert missing == (ErrorCode.SESSION_NOT_FOUND, f"no session has id {unknown}")
        assert "alice" not in guessed[1]
    assert (await bob.session_exists(mine.id)).unwrap() is False
    assert (await alice.session_exists(mine.id)).unwrap() is True
    assert await h.store.get_session(mine.id) == mine


async def test_a_user_sees_and_changes_only_their_own_sessions(h: Harness) -> None:
    alice = h.manager.for_user("alice")
    bob = h.manager.for_user("bob")
    first = (await alice.create_session(h.agent.id, "one")).unwrap()
    (await bob.create_session(h.agent.id, "bob's")).unwrap()
    second = (await alice.create_session(h.agent.id, "two")).unwrap()
    assert first.user_id == "alice"
    page = (await alice.list_sessions()).unwrap()
    assert [s.id for s in page.sessions] == [
        s.id
        for s in sorted(
            [first, second], key=lambda s: (s.context.last_activity, s.id), reverse=True
        )
    ]
    by_user = (await h.manager.get_sessions_by_user("alice")).unwrap()
    assert by_user == page
    reply = (await alice.send_message(first.id, "Hello")).unwrap()
    assert reply.content.startswith("[offline]")
    renamed = (await alice.update_session(first.id, name="renamed")).unwrap()
    assert (renamed.name, renamed.user_id) == ("renamed", "alice")
    recent = (await alice.get_recent_messages(first.id, limit=2)).unwrap()
    assert [item.type for item in recent] == ["message", "message"]
    assert (await alice.get_active_session_count()).unwrap() == 2
    assert (await bob.get_active_session_count()).unwrap() == 1
    assert (await h.manager.get_active_session_count()).unwrap() == 3


async def test_deleting_a_users_sessions_counts_them_and_spares_the_others(h: Harness) -> None:
    alice = h.manager.for_user("alice")
    bob = h.manager.for_user("bob")
    for n in range(3):
        (await alice.create_session(h.agent.id, f"a{n}")).unwrap()
    kept = (await bob.create_session(h.agent.id, "b")).unwrap()
    assert (await h.manager.delete_user_sessions("alice")).unwrap() == 3
    assert (await h.manager.delete_user_sessions("alice")).unwrap() == 0
    assert (await alice.list_sessions()).unwrap().sessions == []
    assert [s.id for s in (await bob.list_sessions()).unwrap().sessions] == [kept.id]


async def test_deleting_an_agents_sessions_counts_them_and_spares_the_others(h: Harness) -> None:
    other = (await h.agents.create_agent("Other", "Be brief.")).unwrap()
    for n in range(2):
        (await h.manager.create_session(h.agent.id, f"s{n}")).unwrap()
    kept = (await h.manager.create_session(other.id, "kept")).unwrap()
    assert (await h.manager.delete_agent_sessions(h.agent.id)).unwrap() == 2
    remaining = (await h.manager.list_sessions()).unwrap().sessions
    assert [s.id for s in remaining] == [kept.id]


@pytest.mark.parametrize("user_id", ["", " ", "a\x00b", "x" * 257, "\ud800"])
async def test_a_bad_user_id_is_a_validation_error(h: Harness, user_id: str) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    result = await h.manager.get_session(session.id, user_id=user_id)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.details == {"field": "user_id"}


@pytest.mark.parametrize("kind", damageable_store_params())
async def test_a_damaged_session_of_a_user_answers_corrupt_data_to_its_owner_only(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_harness(kind, tmp_path, request) as h:
        alice = h.manager.for_user("alice")
        mine = (await alice.create_session(h.agent.id, "Alice's")).unwrap()
        await damage_session(kind, h.store, mine.id)
        (await h.manager.refresh()).unwrap()
        result = await alice.get_session(mine.id)
        assert result.error is not None
        assert result.error.code == ErrorCode.CORRUPT_DATA
        assert mine.id in result.error.message
