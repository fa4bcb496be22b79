"""The store contract: every ``SessionStore`` behaves like this, whatever it keeps data in.

Runs once per store kind (see ``conftest.py``). A store that differs on purpose says so in
``DIFFERENCES`` below, as a strict expected failure with its reason, never by skipping.
"""

from __future__ import annotations

import anyio
import pytest

from chatruntime.models import (
    BusyError,
    ChatSession,
    ConflictError,
    SessionContext,
    new_id,
)
from chatruntime.stores import SessionStore
from support.factories import agent_spec, bumped, header, turn_items

pytestmark = pytest.mark.anyio

DIFFERENCES: dict[tuple[str, str], str] = {
    # ("test name", "store kind"): "why this store differs on purpose",
}


@pytest.fixture(autouse=True)
def _expected_differences(request: pytest.FixtureRequest, store_kind: str) -> None:
    reason = DIFFERENCES.get((request.function.__name__, store_kind))
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


# -- agents ---------------------------------------------------------------------------------


async def test_saved_agent_reads_back_equal(store: SessionStore) -> None:
    spec = agent_spec(tools=["lookup"], model="gpt-4.1-mini")
    await store.save_agent(spec)
    assert await store.get_agent(spec.id) == spec


async def test_saving_an_agent_again_replaces_it(store: SessionStore) -> None:
    spec = agent_spec()
    await store.save_agent(spec)
    renamed = spec.model_copy(update={"name": "Renamed", "updated_at": spec.updated_at + 1})
    await store.save_agent(renamed)
    assert await store.get_agent(spec.id) == renamed
    assert [a.id for a in await store.list_agents()] == [spec.id]


async def test_list_agents_is_oldest_first(store: SessionStore) -> None:
    older = agent_spec(created_at=1, name="A")
    newer = agent_spec(created_at=2, name="B")
    await store.save_agent(newer)
    await store.save_agent(older)
    assert [a.id for a in await store.list_agents()] == [older.id, newer.id]


async def test_deleted_agent_is_gone(store: SessionStore) -> None:
    spec = agent_spec()
    await store.save_agent(spec)
    assert await store.delete_agent(spec.id) is True
    assert await store.get_agent(spec.id) is None
    assert await store.delete_agent(spec.id) is False


async def test_unknown_agent_is_none(store: SessionStore) -> None:
    assert await store.get_agent(new_id()) is None


# -- sessions -------------------------------------------------------------------------------


async def test_created_session_reads_back_equal(store: SessionStore) -> None:
    h = header(user_id="user-1", metadata={"topic": "weather", "n": 1})
    await store.write_session(h, [], expected_revision=None)
    loaded = await store.get_session(h.id)
    assert loaded == ChatSession.from_parts(h, [])
    assert await store.get_revision(h.id) == 0


async def test_creating_an_existing_session_conflicts_and_keeps_it(store: SessionStore) -> None:
    h = header()
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    with pytest.raises(ConflictError):
        await store.write_session(
            h.model_copy(update={"name": "Other"}), [], expected_revision=None
        )
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


async def test_appends_accumulate_in_order(store: SessionStore) -> None:
    h = header()
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h, context=SessionContext(total_messages=4, last_activity=h.updated_at + 5))
    await store.write_session(h1, second, expected_revision=0)
    loaded = await store.get_session(h.id)
    assert loaded == ChatSession.from_parts(h1, first + second)
    assert await store.get_revision(h.id) == 1


async def test_header_only_write_keeps_history(store: SessionStore) -> None:
    h = header()
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    renamed = bumped(h, name="Renamed", status="paused", metadata={"k": "v"})
    await store.write_session(renamed, [], expected_revision=0)
    assert await store.get_session(h.id) == ChatSession.from_parts(renamed, items)


async def test_stale_write_conflicts_and_changes_nothing(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, turn_items(2), expected_revision=0)
    before = await store.get_session(h.id)
    with pytest.raises(ConflictError):
        await store.write_session(bumped(h, name="Stale"), turn_items(3), expected_revision=0)
    assert await store.get_session(h.id) == before


async def test_update_of_missing_session_conflicts(store: SessionStore) -> None:
    h = header()
    with pytest.raises(ConflictError):
        await store.write_session(bumped(h), turn_items(1), expected_revision=0)
    assert await store.get_session(h.id) is None


async def test_unknown_session_is_none(store: SessionStore) -> None:
    assert await store.get_session(new_id()) is None
    assert await store.get_revision(new_id()) is None


async def test_deleted_session_is_gone(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    assert await store.delete_session(h.id) is True
    assert await store.get_session(h.id) is None
    assert await store.delete_session(h.id) is False
    assert [s.id for s in (await store.load_sessions()).sessions] == []


async def test_deleted_session_id_can_be_created_afresh(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.delete_session(h.id)
    await store.write_session(h, [], expected_revision=None)
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert loaded.history == []


async def test_load_sessions_returns_every_session_with_history(store: SessionStore) -> None:
    a = header(name="A")
    b = header(name="B", user_id="u")
    first, second = turn_items(1), turn_items(2)
    await store.write_session(a, first, expected_revision=None)
    await store.write_session(b, [], expected_revision=None)
    a1 = bumped(a)
    await store.write_session(a1, second, expected_revision=0)
    report = await store.load_sessions()
    assert report.corrupt == []
    by_id = {s.id: s for s in report.sessions}
    assert by_id == {
        a.id: ChatSession.from_parts(a1, first + second),
        b.id: ChatSession.from_parts(b, []),
    }


async def test_history_items_round_trip_exactly(store: SessionStore) -> None:
    h = header()
    items = turn_items(7)
    await store.write_session(h, items, expected_revision=None)
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert loaded.history == items


async def test_returned_records_are_copies(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    loaded = await store.get_session(h.id)
    assert loaded is not None
    loaded.history.clear()
    loaded.name = "mutated"
    again = await store.get_session(h.id)
    assert again is not None
    assert again.name == "First chat"
    assert len(again.history) == 4


async def test_unicode_and_large_content_survive(store: SessionStore) -> None:
    from chatruntime.models import MessageItem

    h = header(name="我的第一次对话")
    big = "Ωmega 🚀 " * 20_000
    items = [MessageItem(role="user", content=big)]
    await store.write_session(h, items, expected_revision=None)
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert loaded.name == "我的第一次对话"
    assert loaded.history == items


async def test_a_turn_of_thousands_of_items_round_trips_in_order(store: SessionStore) -> None:
    # Past the sizes where stores batch: Lua's unpack() limit, SQL's bound-parameter limit.
    from chatruntime.models import MessageItem

    h = header()
    items = [MessageItem(role="user", content=f"item {n}") for n in range(2_500)]
    await store.write_session(h, items[:1], expected_revision=None)
    await store.write_session(bumped(h), items[1:], expected_revision=0)
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert loaded.history == items


async def test_nul_and_control_characters_survive(store: SessionStore) -> None:
    # Whatever a user types or a model emits is stored: PostgreSQL's jsonb, for one, refuses
    # \u0000, and a raw control character is not valid inside a JSON string.
    from chatruntime.models import MessageItem

    text = "nul \x00, bell \x07, escape \x1b, separator \u2028, end"
    h = header(metadata={"note": text}, state={"raw": text})
    items = [MessageItem(role="user", content=text)]
    await store.write_session(h, items, expected_revision=None)
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


# -- leases ---------------------------------------------------------------------------------


async def test_lease_excludes_a_second_holder_until_released(store: SessionStore) -> None:
    session_id = new_id()
    order: list[str] = []

    async def second() -> None:
        async with store.lease(session_id, timeout=5):
            order.append("second")

    async with anyio.create_task_group() as tg:
        async with store.lease(session_id, timeout=5):
            tg.start_soon(second)
            await anyio.sleep(0.2)
            order.append("first done")
    assert order == ["first done", "second"]


async def test_lease_not_granted_in_time_is_busy(store: SessionStore) -> None:
    session_id = new_id()
    outcome: list[BusyError] = []

    async def contender() -> None:
        try:
            async with store.lease(session_id, timeout=0.3):
                pytest.fail("the lease was granted while another holder had it")
        except BusyError as error:
            outcome.append(error)

    async with store.lease(session_id, timeout=5), anyio.create_task_group() as tg:
        tg.start_soon(contender)
    assert [e.details["session_id"] for e in outcome] == [session_id]


async def test_leases_of_different_sessions_are_independent(store: SessionStore) -> None:
    with anyio.fail_after(5):
        async with store.lease(new_id(), timeout=1), store.lease(new_id(), timeout=1):
            pass


async def test_lease_is_released_when_the_body_raises(store: SessionStore) -> None:
    session_id = new_id()
    with pytest.raises(RuntimeError):
        async with store.lease(session_id, timeout=1):
            raise RuntimeError("turn failed")
    with anyio.fail_after(5):
        async with store.lease(session_id, timeout=1):
            pass


async def test_lease_is_released_when_the_body_is_cancelled(store: SessionStore) -> None:
    session_id = new_id()
    with anyio.move_on_after(0.2) as scope:
        async with store.lease(session_id, timeout=1):
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    with anyio.fail_after(5):
        async with store.lease(session_id, timeout=1):
            pass
