"""Checkpoints remember a session (history, statistics, state) without copying its history;
a restore rewinds to one and can itself be undone; no checkpoint ever loses an item (on every
store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime import ChatSession, ErrorCode, Result, StateModule
from chatruntime.models import HistoryItem, new_id
from support.lifetime import Lab, open_lab
from support.stores import store_params

pytestmark = pytest.mark.anyio


@pytest.fixture(params=store_params())
async def lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lab]:
    async with open_lab(request.param, tmp_path, request) as opened:
        yield opened


class Counter(StateModule):
    def __init__(self, value: int = 0) -> None:
        super().__init__()
        self.value = value
        self.register_state("value")


def code_of(result: Result[Any]) -> ErrorCode:
    assert result.error is not None, result
    return result.error.code


def texts(history: list[HistoryItem]) -> list[str]:
    return [getattr(item, "text", item.type) for item in history]


async def chat(lab: Lab, session_id: str, *messages: str) -> ChatSession:
    for message in messages:
        (await lab.manager.send_message(session_id, message)).unwrap()
    return (await lab.manager.get_session(session_id)).unwrap()


# -- saving and reading -----------------------------------------------------------------------


async def test_a_checkpoint_records_the_session_and_shares_its_history(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat", metadata={"tier": "gold"})).unwrap()
    now = await chat(lab, session.id, "one", "two")
    (await m.save_session_state(session.id, counter=Counter(3))).unwrap()
    now = (await m.get_session(session.id)).unwrap()

    saved = (await m.save_checkpoint(session.id, "after two", {"turn": 2})).unwrap()
    assert (saved.session_id, saved.label, saved.data, saved.kind) == (
        session.id,
        "after two",
        {"turn": 2},
        "manual",
    )
    assert saved.created_at == lab.clock.now
    assert saved.header == now.header()
    assert saved.header.state == {"counter": {"value": 3}}
    assert (saved.item_count, saved.shared_count, saved.items) == (4, 4, [])
    assert (await m.get_checkpoint(session.id, saved.id)).unwrap() == saved
    assert await lab.store.get_checkpoint(session.id, saved.id) == saved
    history = (await m.get_checkpoint_history(session.id, saved.id)).unwrap()
    assert history == now.history
    # Saving a checkpoint writes nothing to the session.
    assert (await m.get_session(session.id)).unwrap().revision == now.revision


async def test_checkpoints_list_newest_first_even_when_saved_in_one_millisecond(
    lab: Lab,
) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    # The clock does not move: each checkpoint still gets a later created_at than the last.
    saved = [(await m.save_checkpoint(session.id, f"c{n}")).unwrap() for n in range(5)]
    listed = (await m.list_checkpoints(session.id)).unwrap()
    assert [c.label for c in listed] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.created_at for c in saved] == [lab.clock.now + n for n in range(5)]
    assert (await m.get_latest_checkpoint(session.id)).unwrap() == saved[-1]
    lab.clock.advance(0.001)
    later = (await m.save_checkpoint(session.id, "later")).unwrap()
    assert later.created_at == lab.clock.now + 4  # still after c4, whatever the clock says
    assert (await m.get_latest_checkpoint(session.id)).unwrap().id == later.id


async def test_deleting_and_clearing_checkpoints(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    first, second, third = [(await m.save_checkpoint(session.id)).unwrap() for _ in range(3)]
    assert (await m.delete_checkpoint(session.id, second.id)).unwrap() is None
    deleted_again = await m.delete_checkpoint(session.id, second.id)
    assert deleted_again.error is not None
    assert (deleted_again.error.code, deleted_again.error.message) == (
        ErrorCode.CHECKPOINT_NOT_FOUND,
        f"session {session.id} has no checkpoint {second.id}",
    )
    assert [c.id for c in (await m.list_checkpoints(session.id)).unwrap()] == [third.id, first.id]
    assert (await m.clear_checkpoints(session.id)).unwrap() == 2
    assert (await m.clear_checkpoints(session.id)).unwrap() == 0
    assert (await m.list_checkpoints(session.id)).unwrap() == []
    latest = await m.get_latest_checkpoint(session.id)
    assert latest.error is not None
    assert (latest.error.code, latest.error.message) == (
        ErrorCode.CHECKPOINT_NOT_FOUND,
        f"session {session.id} has no checkpoints; save one first",
    )


async def test_a_missing_checkpoint_is_checkpoint_not_found_everywhere(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    other = (await m.create_session(lab.agent.id, "Other")).unwrap()
    elsewhere = (await m.save_checkpoint(other.id)).unwrap()
    for missing in (new_id(), elsewhere.id):  # unknown, or another session's
        assert code_of(await m.get_checkpoint(session.id, missing)) is (
            ErrorCode.CHECKPOINT_NOT_FOUND
        )
        assert code_of(await m.get_checkpoint_history(session.id, missing)) is (
            ErrorCode.CHECKPOINT_NOT_FOUND
        )
        assert code_of(await m.restore_checkpoint(session.id, missing)) is (
            ErrorCode.CHECKPOINT_NOT_FOUND
        )
        assert code_of(await m.fork_session(session.id, missing)) is (
            ErrorCode.CHECKPOINT_NOT_FOUND
        )
        assert code_of(await m.delete_checkpoint(session.id, missing)) is (
            ErrorCode.CHECKPOINT_NOT_FOUND
        )
    assert code_of(await m.get_checkpoint(session.id, "not-an-id")) is ErrorCode.VALIDATION_ERROR
    assert (await m.list_checkpoints(other.id)).unwrap() == [elsewhere]


@pytest.mark.parametrize(
    ("label", "data", "field"),
    [
        ("", None, "label"),
        (" ", None, "label"),
        ("x" * 201, None, "label"),
        ("two\nlines", None, "label"),
        (None, {"when": {1, 2}}, "data"),
        (None, {1: "int key"}, "data"),
        (None, {"nan": float("nan")}, "data"),
        (None, ["not", "a", "dict"], "data"),
    ],
)
async def test_a_bad_label_or_data_is_a_validation_error_and_saves_nothing(
    lab: Lab, label: Any, data: Any, field: str
) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
    result = await lab.manager.save_checkpoint(session.id, label, data)
    assert result.error is not None
    assert (result.error.code, result.error.details.get("field")) == (
        ErrorCode.VALIDATION_ERROR,
        field,
    )
    assert await lab.store.list_checkpoints(session.id) == []


async def test_another_users_checkpoints_are_out_of_reach(lab: Lab) -> None:
    alice = lab.manager.for_user("alice")
    bob = lab.manager.for_user("bob")
    session = (await alice.create_session(lab.agent.id, "Alice's")).unwrap()
    saved = (await alice.save_checkpoint(session.id, "mine")).unwrap()
    calls = [
        bob.save_checkpoint(session.id),
        bob.get_checkpoint(session.id, saved.id),
        bob.get_latest_checkpoint(session.id),
        bob.list_checkpoints(session.id),
        bob.get_checkpoint_history(session.id, saved.id),
        bob.delete_checkpoint(session.id, saved.id),
        bob.clear_checkpoints(session.id),
        bob.restore_checkpoint(session.id, saved.id),
        bob.fork_session(session.id),
    ]
    for call in calls:
        result = await call
        assert result.error is not None
        assert (result.error.code, result.error.message) == (
            ErrorCode.SESSION_NOT_FOUND,
            f"no session has id {session.id}",
        )
    assert [c.id for c in (await alice.list_checkpoints(session.id)).unwrap()] == [saved.id]


async def test_deleting_a_session_deletes_its_checkpoints(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
    for _ in range(3):
        (await lab.manager.save_checkpoint(session.id)).unwrap()
    (await lab.manager.delete_session(session.id)).unwrap()
    assert await lab.store.list_checkpoints(session.id) == []


# -- storage ------------------------------------------------------------------------------------


async def test_ten_checkpoints_of_a_long_session_store_no_copy_of_its_history(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Long")).unwrap()
    grown = await lab.grow(session.id, 1000)
    for n in range(10):
        (await lab.manager.save_checkpoint(session.id, f"c{n}")).unwrap()
    stored = await lab.store.list_checkpoints(session.id)
    assert len(stored) == 10
    assert all((c.items, c.shared_count, c.item_count) == ([], 1000, 1000) for c in stored)
    # A checkpoint's record is a header, not a history: a small fraction of the history.
    history_size = sum(len(item.model_dump_json()) for item in grown.history)
    assert all(len(c.model_dump_json()) * 50 < history_size for c in stored)
    latest = stored[0]
    assert (await lab.manager.get_checkpoint_history(session.id, latest.id)).unwrap() == (
        grown.history
    )


# -- restore ------------------------------------------------------------------------------------


async def test_restore_rewinds_everything_and_saves_the_state_before_it(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    (await m.save_session_state(session.id, counter=Counter(1))).unwrap()
    at_two = await chat(lab, session.id, "one", "two")
    saved = (await m.save_checkpoint(session.id, "at two")).unwrap()
    await chat(lab, session.id, "three")
    (await m.save_session_state(session.id, counter=Counter(9))).unwrap()
    (await m.update_session(session.id, name="Renamed", status="paused")).unwrap()
    before = (await m.get_session(session.id)).unwrap()

    restored = (await m.restore_checkpoint(session.id, saved.id)).unwrap()
    assert restored.history == at_two.history
    assert (restored.name, restored.status, restored.state) == (
        "Chat",
        "active",
        {"counter": {"value": 1}},
    )
    assert restored.context.model_dump(exclude={"last_activity"}) == (
        at_two.context.model_dump(exclude={"last_activity"})
    )
    assert restored.revision == before.revision + 1
    assert (await m.get_session(session.id)).unwrap() == restored
    stored = await lab.store.get_session(session.id)
    assert stored is not None
    assert (stored.history, stored.revision) == (at_two.history, restored.revision)
    loaded = Counter()
    (await m.load_session_state(session.id, counter=loaded)).unwrap()
    assert loaded.value == 1

    undo = (await m.get_latest_checkpoint(session.id)).unwrap()
    assert (undo.kind, undo.label, undo.data) == (
        "restore",
        "before restore",
        {"restoredCheckpointId": saved.id},
    )
    assert undo.header == before.header()
    assert (await m.get_checkpoint_history(session.id, undo.id)).unwrap() == before.history

    undone = (await m.restore_checkpoint(session.id, undo.id)).unwrap()
    assert undone.history == before.history
    assert (undone.name, undone.status, undone.state) == (
        "Renamed",
        "paused",
        {"counter": {"value": 9}},
    )
    kinds = [c.kind for c in (await m.list_checkpoints(session.id)).unwrap()]
    assert kinds == ["restore", "restore", "manual"]


async def test_after_a_restore_every_checkpoint_still_reads_its_whole_history(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    histories: dict[str, list[HistoryItem]] = {}
    for message in ("one", "two", "three", "four"):
        now = await chat(lab, session.id, message)
        histories[(await m.save_checkpoint(session.id, message)).unwrap().id] = now.history
    first = next(iter(histories))

    (await m.restore_checkpoint(session.id, first)).unwrap()
    await chat(lab, session.id, "another way")  # the session grows a different branch
    for checkpoint in (await m.list_checkpoints(session.id)).unwrap():
        if checkpoint.id in histories:
            read = (await m.get_checkpoint_history(session.id, checkpoint.id)).unwrap()
            assert read == histories[checkpoint.id], checkpoint.label
            assert checkpoint.shared_count <= 2  # the items past the restore were moved
    # Restoring the newest of the old branch brings all of it back, item for item.
    last = list(histories)[-1]
    restored = (await m.restore_checkpoint(session.id, last)).unwrap()
    assert restored.history == histories[last]
    assert texts(restored.history)[::2] == ["one", "two", "three", "four"]


async def test_a_restore_of_a_long_session_keeps_the_older_checkpoints_exact(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Long")).unwrap()
    early = await lab.grow(session.id, 100)
    at_100 = (await m.save_checkpoint(session.id, "100")).unwrap()
    full = await lab.grow(session.id, 900)
    at_1000 = [(await m.save_checkpoint(session.id, f"1000-{n}")).unwrap() for n in range(3)]

    (await m.restore_checkpoint(session.id, at_100.id)).unwrap()
    stored = await lab.store.get_session(session.id)
    assert stored is not None and stored.history == early.history
    for checkpoint in at_1000:
        kept = await lab.store.get_checkpoint(session.id, checkpoint.id)
        assert kept is not None and (kept.shared_count, len(kept.items)) == (100, 900)
        history = (await m.get_checkpoint_history(session.id, checkpoint.id)).unwrap()
        assert history == full.history
    restored = (await m.restore_checkpoint(session.id, at_1000[1].id)).unwrap()
    assert restored.history == full.history


async def test_a_turn_after_a_restore_continues_from_the_restored_history(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    await chat(lab, session.id, "one")
    saved = (await m.save_checkpoint(session.id)).unwrap()
    await chat(lab, session.id, "two", "three")
    (await m.restore_checkpoint(session.id, saved.id)).unwrap()
    after = await chat(lab, session.id, "two again")
    assert texts(after.history) == [
        "one",
        "[offline] You said: one (turn 1)",
        "two again",
        "[offline] You said: two again (turn 2)",
    ]
    # A manager that never saw the session reads the same.
    fresh = lab.open_manager()
    (await fresh.initialize()).unwrap()
    assert (await fresh.get_session(session.id)).unwrap().history == after.history


async def test_removing_items_through_the_sdk_session_takes_none_from_a_checkpoint(
    lab: Lab,
) -> None:
    from chatruntime.session._sdk_session import ChatruntimeSession

    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    before = await chat(lab, session.id, "one", "two")
    saved = (await m.save_checkpoint(session.id)).unwrap()
    sdk = ChatruntimeSession(m, session.id)
    assert await sdk.pop_item() is not None
    assert (await m.get_checkpoint_history(session.id, saved.id)).unwrap() == before.history
    kept = await lab.store.get_checkpoint(session.id, saved.id)
    assert kept is not None and (kept.shared_count, len(kept.items)) == (3, 1)
    await sdk.clear_session()
    assert (await m.get_session(session.id)).unwrap().history == []
    assert (await m.get_checkpoint_history(session.id, saved.id)).unwrap() == before.history
    restored = (await m.restore_checkpoint(session.id, saved.id)).unwrap()
    assert restored.history == before.history
