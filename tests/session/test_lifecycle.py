"""Session lifecycle through ``SessionManager``: create, get, list, update, delete, recent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from chatruntime import ErrorCode, SessionManager, SessionPage
from chatruntime.models import MessageItem, new_id
from support.managers import Harness, open_harness

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "file"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(str(request.param), tmp_path, request) as harness:
        yield harness


async def test_created_session_has_the_original_defaults(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "First chat")).unwrap()
    assert (session.agent_id, session.name, session.status, session.history) == (
        h.agent.id,
        "First chat",
        "active",
        [],
    )
    assert session.created_at == session.updated_at == session.context.last_activity
    assert (session.revision, session.schema_version, session.user_id, session.metadata) == (
        0,
        1,
        None,
        {},
    )
    assert (await h.manager.get_session(session.id)).unwrap() == session
    assert await h.store.get_session(session.id) == session


async def test_user_and_metadata_are_kept(h: Harness) -> None:
    session = (
        await h.manager.create_session(h.agent.id, "Chat", user_id="alice", metadata={"k": [1]})
    ).unwrap()
    stored = await h.store.get_session(session.id)
    assert stored is not None
    assert (stored.user_id, stored.metadata) == ("alice", {"k": [1]})


async def test_returned_sessions_are_copies(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    session.name = "changed by caller"
    session.history.append(MessageItem(role="user", content="sneaky"))
    again = (await h.manager.get_session(session.id)).unwrap()
    assert (again.name, again.history) == ("Chat", [])


async def test_list_is_most_recent_activity_first_and_filters(h: Harness) -> None:
    other_agent = (await h.agents.create_agent("Other")).unwrap()
    first = (await h.manager.create_session(h.agent.id, "first", user_id="alice")).unwrap()
    await anyio.sleep(0.003)
    second = (await h.manager.create_session(other_agent.id, "second", user_id="bob")).unwrap()
    await anyio.sleep(0.003)
    third = (await h.manager.create_session(h.agent.id, "third", user_id="alice")).unwrap()

    def ids(page: SessionPage) -> list[str]:
        return [s.id for s in page.sessions]

    assert ids((await h.manager.list_sessions()).unwrap()) == [third.id, second.id, first.id]
    assert ids((await h.manager.get_sessions_by_agent(h.agent.id)).unwrap()) == [
        third.id,
        first.id,
    ]
    assert ids((await h.manager.list_sessions(user_id="bob")).unwrap()) == [second.id]
    assert (
        ids((await h.manager.list_sessions(agent_id=other_agent.id, user_id="alice")).unwrap())
        == []
    )


async def test_update_renames_and_pauses_and_bumps_revision(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    renamed = (await h.manager.update_session(session.id, name="Renamed")).unwrap()
    paused = (
        await h.manager.update_session(session.id, status="paused", metadata={"a": 1})
    ).unwrap()
    assert (renamed.name, renamed.revision) == ("Renamed", 1)
    assert (paused.name, paused.status, paused.metadata, paused.revision) == (
        "Renamed",
        "paused",
        {"a": 1},
        2,
    )
    assert await h.store.get_session(session.id) == paused
    assert paused.updated_at >= session.updated_at


async def test_delete_removes_from_cache_and_store(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    assert (await h.manager.delete_session(session.id)).success
    gone = await h.manager.get_session(session.id)
    assert gone.error is not None and gone.error.code is ErrorCode.SESSION_NOT_FOUND
    assert await h.store.get_session(session.id) is None
    again = await h.manager.delete_session(session.id)
    assert again.error is not None and again.error.code is ErrorCode.SESSION_NOT_FOUND
    assert len(h.manager._locks) == 0


async def test_recent_messages_are_the_last_items(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    current = await h.manager._lookup(session.id)
    items = [MessageItem(role="user", content=f"m{i}") for i in range(60)]
    await h.store.write_session(h.manager._next_header(current.session), items, expected_revision=0)
    default = (await h.manager.get_recent_messages(session.id)).unwrap()
    three = (await h.manager.get_recent_messages(session.id, limit=3)).unwrap()
    assert [i.text for i in default if isinstance(i, MessageItem)] == [
        f"m{i}" for i in range(10, 60)
    ]
    assert [i.text for i in three if isinstance(i, MessageItem)] == ["m57", "m58", "m59"]


async def test_a_session_created_by_another_manager_is_found(h: Harness) -> None:
    other = SessionManager(h.store, h.agents)
    (await other.initialize()).unwrap()
    session = (await other.create_session(h.agent.id, "From elsewhere")).unwrap()
    assert (await h.manager.get_session(session.id)).unwrap() == session


async def test_an_update_after_another_process_wrote_reloads_first(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    other = SessionManager(h.store, h.agents)
    (await other.initialize()).unwrap()
    (await other.update_session(session.id, metadata={"by": "other"})).unwrap()
    renamed = (await h.manager.update_session(session.id, name="Mine")).unwrap()
    assert (renamed.name, renamed.metadata, renamed.revision) == ("Mine", {"by": "other"}, 2)


async def test_refresh_shows_what_another_process_created_changed_and_deleted(
    h: Harness,
) -> None:
    kept = (await h.manager.create_session(h.agent.id, "Kept")).unwrap()
    doomed = (await h.manager.create_session(h.agent.id, "Doomed")).unwrap()
    other = SessionManager(h.store, h.agents)
    (await other.initialize()).unwrap()
    created = (await other.create_session(h.agent.id, "Created elsewhere")).unwrap()
    (await other.update_session(kept.id, name="Renamed elsewhere")).unwrap()
    (await other.delete_session(doomed.id)).unwrap()

    assert (await h.manager.refresh()).unwrap() is None

    assert h.manager.cached_sessions == 0
    listed = {s.id: s.name for s in (await h.manager.list_sessions()).unwrap().sessions}
    assert listed == {kept.id: "Renamed elsewhere", created.id: "Created elsewhere"}
    assert (await h.manager.get_session(kept.id)).unwrap().name == "Renamed elsewhere"
    gone = await h.manager.get_session(doomed.id)
    assert gone.error is not None and gone.error.code is ErrorCode.SESSION_NOT_FOUND


async def test_misuse_before_initialize_and_after_close_raises() -> None:
    from chatruntime import AgentManager, MemoryStore

    store = MemoryStore()
    manager = SessionManager(store, AgentManager(store))
    from chatruntime import UsageError

    with pytest.raises(UsageError, match="not initialized"):
        await manager.get_session(new_id())
    (await manager.initialize()).unwrap()
    await manager.close()
    with pytest.raises(UsageError, match="closed"):
        await manager.list_sessions()
    with pytest.raises(UsageError, match="cannot reopen"):
        await manager.initialize()
