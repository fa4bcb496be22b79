"""The store contract: every ``SessionStore`` behaves like this, whatever it keeps data in.

Runs once per store kind of the registry in ``tests/support/stores.py``. A store that differs
on purpose says so in ``DIFFERENCES`` below, as a strict expected failure with its reason,
never by skipping.
"""

from __future__ import annotations

import anyio
import pytest

from chatruntime.models import (
    BusyError,
    ChatSession,
    ConflictError,
    CorruptDataError,
    ErrorCode,
    InvalidInputError,
    SessionContext,
    SessionHeader,
    new_id,
)
from chatruntime.stores import CorruptRecord, SessionStore, load_all
from support.factories import T0, agent_spec, bumped, header, turn_items
from support.stores import damage_session, damageable_store_params

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
    assert [s.id for s in (await load_all(store)).sessions] == []


async def test_deleted_session_id_can_be_created_afresh(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.delete_session(h.id)
    await store.write_session(h, [], expected_revision=None)
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert loaded.history == []


async def test_scan_returns_every_session_with_history(store: SessionStore) -> None:
    a = header(name="A")
    b = header(name="B", user_id="u")
    first, second = turn_items(1), turn_items(2)
    await store.write_session(a, first, expected_revision=None)
    await store.write_session(b, [], expected_revision=None)
    a1 = bumped(a)
    await store.write_session(a1, second, expected_revision=0)
    report = await load_all(store)
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


# -- write rules ----------------------------------------------------------------------------


async def test_a_write_must_step_the_revision_by_one(store: SessionStore) -> None:
    h, items = header(), turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    with pytest.raises(InvalidInputError):
        await store.write_session(
            h.model_copy(update={"revision": 2}), turn_items(2), expected_revision=0
        )
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


async def test_a_write_cannot_move_a_session_to_another_agent(store: SessionStore) -> None:
    h, items = header(), turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    with pytest.raises(InvalidInputError):
        await store.write_session(bumped(h, agent_id=new_id()), [], expected_revision=0)
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)
    page = await store.list_sessions(agent_id=h.agent_id)
    assert [s.id for s in page.sessions] == [h.id]


# -- listing --------------------------------------------------------------------------------


def _at(millis: int, **overrides: object) -> SessionHeader:
    return header(context=SessionContext(last_activity=millis), **overrides)


async def _create(store: SessionStore, *headers: SessionHeader) -> None:
    for h in headers:
        await store.write_session(h, turn_items(1), expected_revision=None)


async def test_listing_is_headers_most_recent_activity_first(store: SessionStore) -> None:
    old, new, middle = _at(T0 + 1), _at(T0 + 3), _at(T0 + 2)
    await _create(store, old, new, middle)
    page = await store.list_sessions()
    assert page.sessions == [new, middle, old]
    assert page.next_cursor is None
    assert all(not hasattr(s, "history") for s in page.sessions)


async def test_listing_of_an_empty_store_is_an_empty_last_page(store: SessionStore) -> None:
    page = await store.list_sessions()
    assert (page.sessions, page.next_cursor) == ([], None)
    assert await store.count_sessions() == 0


async def test_equal_activity_times_are_ordered_by_id_descending(store: SessionStore) -> None:
    same = [_at(T0) for _ in range(5)]
    await _create(store, *same)
    page = await store.list_sessions()
    assert [s.id for s in page.sessions] == sorted((h.id for h in same), reverse=True)


async def test_pages_walk_every_session_once_in_order(store: SessionStore) -> None:
    # Ten sessions over four distinct times, so pages end inside runs of equal times.
    made = [_at(T0 + i % 4) for i in range(10)]
    await _create(store, *made)
    expected = sorted(made, key=lambda h: (h.context.last_activity, h.id), reverse=True)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_sessions(limit=3, cursor=cursor)
        pages += 1
        seen.extend(s.id for s in page.sessions)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [h.id for h in expected]
    assert pages == 4


async def test_a_page_exactly_full_has_no_next_cursor(store: SessionStore) -> None:
    await _create(store, _at(T0 + 1), _at(T0 + 2))
    page = await store.list_sessions(limit=2)
    assert len(page.sessions) == 2
    assert page.next_cursor is None


async def test_listing_filters_by_agent_user_and_status(store: SessionStore) -> None:
    agent = new_id()
    mine = _at(T0 + 5, agent_id=agent, user_id="alice")
    mine_paused = _at(T0 + 4, agent_id=agent, user_id="alice", status="paused")
    bobs = _at(T0 + 3, agent_id=agent, user_id="bob")
    other_agent = _at(T0 + 2, user_id="alice")
    await _create(store, mine, mine_paused, bobs, other_agent)

    async def ids(**filters: object) -> list[str]:
        return [s.id for s in (await store.list_sessions(**filters)).sessions]  # type: ignore[arg-type]

    assert await ids(agent_id=agent) == [mine.id, mine_paused.id, bobs.id]
    assert await ids(user_id="alice") == [mine.id, mine_paused.id, other_agent.id]
    assert await ids(status="paused") == [mine_paused.id]
    assert await ids(agent_id=agent, user_id="alice", status="active") == [mine.id]
    assert await ids(user_id="carol") == []


async def test_filtered_pages_walk_every_match_once(store: SessionStore) -> None:
    agent = new_id()
    matching = [_at(T0 + i % 3, agent_id=agent) for i in range(7)]
    others = [_at(T0 + i % 3) for i in range(7)]
    await _create(store, *matching, *others)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_sessions(agent_id=agent, limit=2, cursor=cursor)
        seen.extend(s.id for s in page.sessions)
        if (cursor := page.next_cursor) is None:
            break
    expected = sorted(matching, key=lambda h: (h.context.last_activity, h.id), reverse=True)
    assert seen == [h.id for h in expected]


async def test_a_write_moves_a_session_in_the_listing(store: SessionStore) -> None:
    first, second = _at(T0 + 1), _at(T0 + 2)
    await _create(store, first, second)
    later = bumped(first, context=SessionContext(last_activity=T0 + 9), name="Renamed")
    await store.write_session(later, turn_items(2), expected_revision=0)
    page = await store.list_sessions()
    assert page.sessions == [later, second]


async def test_deleted_sessions_leave_the_listing_and_the_count(store: SessionStore) -> None:
    kept, gone = _at(T0 + 1, user_id="u"), _at(T0 + 2, user_id="u")
    await _create(store, kept, gone)
    assert await store.count_sessions() == 2
    await store.delete_session(gone.id)
    assert [s.id for s in (await store.list_sessions(user_id="u")).sessions] == [kept.id]
    assert [s.id for s in (await store.list_sessions(agent_id=gone.agent_id)).sessions] == []
    assert await store.count_sessions() == 1


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"status": "archived"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": ""}, "cursor"),
    ],
)
async def test_bad_listing_arguments_are_refused(
    store: SessionStore, arguments: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        await store.list_sessions(**arguments)  # type: ignore[arg-type]
    assert raised.value.details["field"] == field


# -- tail reads -----------------------------------------------------------------------------


async def test_last_items_are_the_tail_of_the_history_in_order(store: SessionStore) -> None:
    h = header()
    items = turn_items(1) + turn_items(2)
    await store.write_session(h, items[:3], expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, items[3:], expected_revision=0)
    tail = await store.get_session(h.id, last=3)
    assert tail == ChatSession.from_parts(h1, items[-3:])
    assert await store.get_session(h.id, last=100) == ChatSession.from_parts(h1, items)
    assert await store.get_session(h.id, last=0) == ChatSession.from_parts(h1, [])


async def test_last_items_span_many_writes(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    items = []
    for n in range(1, 31):
        nxt, written = bumped(h), turn_items(n)
        await store.write_session(nxt, written, expected_revision=h.revision)
        items.extend(written)
        h = nxt
    tail = await store.get_session(h.id, last=50)
    assert tail is not None
    assert tail.history == items[-50:]
    assert tail.revision == 30


async def test_last_items_of_an_unknown_session_is_none(store: SessionStore) -> None:
    assert await store.get_session(new_id(), last=5) is None


# -- leases know the revision ---------------------------------------------------------------


async def test_a_lease_that_reads_the_revision_reads_the_stored_one(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    await store.write_session(bumped(h), turn_items(1), expected_revision=0)
    async with store.lease(h.id, timeout=5) as lease:
        assert lease.session_id == h.id
        if lease.revision_known:
            assert lease.revision == 1
    async with store.lease(new_id(), timeout=5) as lease:
        if lease.revision_known:
            assert lease.revision is None


async def test_a_write_under_a_lease_leaves_it_free_afterwards(store: SessionStore) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    async with store.lease(h.id, timeout=5) as lease:
        await store.write_session(bumped(h), turn_items(1), expected_revision=0, lease=lease)
    with anyio.fail_after(5):
        async with store.lease(h.id, timeout=1) as again:
            await store.write_session(
                bumped(bumped(h)), turn_items(2), expected_revision=1, lease=again
            )
    loaded = await store.get_session(h.id)
    assert loaded is not None
    assert (loaded.revision, len(loaded.history)) == (2, 8)


# -- damaged records ------------------------------------------------------------------------
# Run on the kinds that can hold one (the registry's damage hook); a MemoryStore keeps
# validated models and cannot.

damageable = pytest.mark.parametrize("store_kind", damageable_store_params())


@damageable
async def test_an_unreadable_session_is_corrupt_data_when_read(
    store: SessionStore, store_kind: str
) -> None:
    h = header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await damage_session(store_kind, store, h.id)

    with pytest.raises(CorruptDataError) as whole:
        await store.get_session(h.id)
    with pytest.raises(CorruptDataError) as tail:
        await store.get_session(h.id, last=1)

    assert whole.value.code == ErrorCode.CORRUPT_DATA
    assert whole.value.details["session_id"] == tail.value.details["session_id"] == h.id
    assert whole.value.details["reason"] == tail.value.details["reason"] != ""


@damageable
async def test_a_scan_reports_an_unreadable_session_and_reads_the_others(
    store: SessionStore, store_kind: str
) -> None:
    good, bad, items = header(name="Good"), header(name="Bad"), turn_items(1)
    await store.write_session(good, items, expected_revision=None)
    await store.write_session(bad, turn_items(2), expected_revision=None)
    await damage_session(store_kind, store, bad.id)

    found = [record async for record in store.scan_sessions()]

    assert [r for r in found if isinstance(r, ChatSession)] == [ChatSession.from_parts(good, items)]
    [corrupt] = [r for r in found if isinstance(r, CorruptRecord)]
    with pytest.raises(CorruptDataError) as read:
        await store.get_session(bad.id)
    assert (corrupt.session_id, corrupt.reason) == (bad.id, read.value.details["reason"])
    assert corrupt.location != ""
