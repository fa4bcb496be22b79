"""The store contract, part three: counting and expiry, rewinding writes, creation limits,
checkpoints, and the header fields users, expiry and idempotency rely on.

Runs once per store kind of the registry in ``tests/support/stores.py`` (the ``store``
fixture of ``tests/stores/conftest.py``), like ``test_contract.py``. The race across processes
runs on the kinds several processes can share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from chatruntime.models import (
    ChatSession,
    Checkpoint,
    ConflictError,
    ErrorCode,
    ErrorOutput,
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    InvalidInputError,
    ItemUsage,
    LimitExceededError,
    MessageItem,
    ProviderItem,
    ReasoningItem,
    SessionContext,
    SessionHeader,
    TextOutput,
    TurnKey,
    new_id,
)
from chatruntime.stores import CreateLimits, SessionStore, load_all
from support.factories import T0, bumped, header, turn_items
from support.racing_processes import race_creations, shared_store_location
from support.stores import store_params

pytestmark = pytest.mark.anyio


async def _create(store: SessionStore, *headers: SessionHeader) -> None:
    for h in headers:
        await store.write_session(h, turn_items(1), expected_revision=None)


async def _expiring(store: SessionStore, *times: int | None, **overrides: Any) -> list[str]:
    """Create one session per expiry time (``None``: never expires); their ids, in order."""
    made = [header(expires_at=at, **overrides) for at in times]
    await _create(store, *made)
    return [h.id for h in made]


# -- counting -------------------------------------------------------------------------------


async def test_count_sessions_counts_every_stored_session(store: SessionStore) -> None:
    assert await store.count_sessions() == 0
    await _create(store, header(), header(user_id="alice"), header(expires_at=T0 - 1))
    assert await store.count_sessions() == 3


async def test_count_sessions_of_a_user_counts_only_theirs(store: SessionStore) -> None:
    await _create(
        store,
        header(user_id="alice"),
        header(user_id="alice"),
        header(user_id="bob"),
        header(),
    )
    assert await store.count_sessions(user_id="alice") == 2
    assert await store.count_sessions(user_id="bob") == 1
    assert await store.count_sessions(user_id="carol") == 0
    assert await store.count_sessions() == 4


async def test_count_sessions_live_at_leaves_out_the_expired(store: SessionStore) -> None:
    await _expiring(store, T0 - 1, T0, T0 + 1, None)
    # Expired means expires_at <= the time: the session expiring at T0 is gone at T0.
    assert await store.count_sessions(live_at=T0 - 2) == 4
    assert await store.count_sessions(live_at=T0 - 1) == 3
    assert await store.count_sessions(live_at=T0) == 2
    assert await store.count_sessions(live_at=T0 + 1) == 1
    assert await store.count_sessions() == 4


async def test_count_sessions_of_a_user_live_at_a_time(store: SessionStore) -> None:
    await _expiring(store, T0 + 5, T0, None, user_id="alice")
    await _expiring(store, T0 + 5, None, user_id="bob")
    await _expiring(store, None)
    assert await store.count_sessions(user_id="alice", live_at=T0) == 2
    assert await store.count_sessions(user_id="alice", live_at=T0 + 5) == 1
    assert await store.count_sessions(user_id="bob", live_at=T0 + 5) == 1
    assert await store.count_sessions(user_id="carol", live_at=T0) == 0


async def test_counts_follow_updates_and_deletes(store: SessionStore) -> None:
    h = header(user_id="alice", expires_at=T0 + 1)
    other = header(user_id="alice")
    await _create(store, h, other)
    assert await store.count_sessions(user_id="alice", live_at=T0 + 1) == 1
    await store.write_session(bumped(h, expires_at=T0 + 10), [], expected_revision=0)
    assert await store.count_sessions(user_id="alice", live_at=T0 + 1) == 2
    await store.delete_session(other.id)
    assert await store.count_sessions(user_id="alice", live_at=T0 + 1) == 1
    assert await store.count_sessions(user_id="alice") == 1
    assert await store.count_sessions() == 1


# -- expiry index ---------------------------------------------------------------------------


async def test_expired_sessions_are_listed_earliest_expiry_first(store: SessionStore) -> None:
    third, first, _later, _never, second = await _expiring(
        store, T0 + 3, T0 + 1, T0 + 10, None, T0 + 2
    )
    assert await store.expired_sessions(T0 + 5) == [first, second, third]


async def test_a_session_expiring_exactly_now_is_expired(store: SessionStore) -> None:
    [session_id] = await _expiring(store, T0)
    assert await store.expired_sessions(T0 - 1) == []
    assert await store.expired_sessions(T0) == [session_id]


async def test_expired_sessions_returns_at_most_limit_ids(store: SessionStore) -> None:
    ids = await _expiring(store, *(T0 + n for n in range(1, 6)))
    assert await store.expired_sessions(T0 + 10, limit=2) == ids[:2]
    assert await store.expired_sessions(T0 + 10, limit=5) == ids
    assert await store.expired_sessions(T0 + 10, limit=100) == ids
    assert await store.expired_sessions(T0 + 10) == ids


async def test_sessions_without_expiry_are_never_expired(store: SessionStore) -> None:
    await _expiring(store, None, None)
    assert await store.expired_sessions(T0 + 10**12) == []


async def test_an_update_moving_expiry_later_takes_a_session_out(store: SessionStore) -> None:
    h, stays = header(expires_at=T0 + 1), header(expires_at=T0 + 2)
    await _create(store, h, stays)
    assert await store.expired_sessions(T0 + 5) == [h.id, stays.id]

    later = bumped(h, expires_at=T0 + 100)
    await store.write_session(later, turn_items(2), expected_revision=0)
    assert await store.expired_sessions(T0 + 5) == [stays.id]
    assert await store.expired_sessions(T0 + 100) == [stays.id, h.id]

    await store.write_session(bumped(later, expires_at=None), [], expected_revision=1)
    assert await store.expired_sessions(T0 + 10**12) == [stays.id]


async def test_an_update_moving_expiry_earlier_brings_a_session_in(store: SessionStore) -> None:
    h = header()
    await _create(store, h)
    assert await store.expired_sessions(T0 + 5) == []
    await store.write_session(bumped(h, expires_at=T0 + 5), [], expected_revision=0)
    assert await store.expired_sessions(T0 + 5) == [h.id]


async def test_a_deleted_session_is_no_longer_expired(store: SessionStore) -> None:
    gone, kept = await _expiring(store, T0 + 1, T0 + 2)
    assert await store.delete_session(gone) is True
    assert await store.expired_sessions(T0 + 5) == [kept]


# -- rewinding writes (keep) ----------------------------------------------------------------


async def _session_of_turns(store: SessionStore, turns: int) -> tuple[SessionHeader, list[Any]]:
    """A stored session whose history is ``turns`` turns of four items each, at revision 0."""
    h = header()
    items = [item for n in range(1, turns + 1) for item in turn_items(n)]
    await store.write_session(h, items, expected_revision=None)
    return h, items


async def test_keep_drops_the_items_after_the_first_n_and_appends(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 3)
    rewound, appended = bumped(h, name="Rewound"), turn_items(9)
    await store.write_session(rewound, appended, expected_revision=0, keep=4)
    assert await store.get_session(h.id) == ChatSession.from_parts(rewound, items[:4] + appended)
    assert await store.get_revision(h.id) == 1


async def test_keep_zero_replaces_the_whole_history(store: SessionStore) -> None:
    h, _ = await _session_of_turns(store, 2)
    rewound, appended = bumped(h), turn_items(9)
    await store.write_session(rewound, appended, expected_revision=0, keep=0)
    assert await store.get_session(h.id) == ChatSession.from_parts(rewound, appended)


async def test_keep_zero_without_new_items_empties_the_history(store: SessionStore) -> None:
    h, _ = await _session_of_turns(store, 2)
    await store.write_session(bumped(h), [], expected_revision=0, keep=0)
    assert await store.get_session(h.id) == ChatSession.from_parts(bumped(h), [])
    assert await store.get_session(h.id, last=5) == ChatSession.from_parts(bumped(h), [])


async def test_keep_of_every_stored_item_drops_nothing(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 2)
    appended = turn_items(3)
    await store.write_session(bumped(h), appended, expected_revision=0, keep=8)
    assert await store.get_session(h.id) == ChatSession.from_parts(bumped(h), items + appended)


async def test_keep_more_than_stored_is_invalid_and_changes_nothing(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 2)
    with pytest.raises(InvalidInputError) as raised:
        await store.write_session(
            bumped(h, name="Too far"), turn_items(3), expected_revision=0, keep=9
        )
    assert raised.value.code == ErrorCode.VALIDATION_ERROR
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)
    assert await store.get_revision(h.id) == 0


async def test_negative_keep_is_invalid_and_changes_nothing(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 1)
    with pytest.raises(InvalidInputError):
        await store.write_session(bumped(h), [], expected_revision=0, keep=-1)
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


async def test_keep_on_create_is_invalid_and_stores_nothing(store: SessionStore) -> None:
    h = header()
    with pytest.raises(InvalidInputError):
        await store.write_session(h, turn_items(1), expected_revision=None, keep=0)
    assert await store.get_session(h.id) is None
    assert await store.count_sessions() == 0


async def test_keep_still_steps_the_revision_by_one(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 2)
    skipping = h.model_copy(update={"revision": 2})
    with pytest.raises(InvalidInputError):
        await store.write_session(skipping, turn_items(3), expected_revision=0, keep=4)
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


async def test_keep_on_a_stale_revision_conflicts_and_drops_nothing(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 2)
    h1, more = bumped(h), turn_items(3)
    await store.write_session(h1, more, expected_revision=0)
    with pytest.raises(ConflictError) as raised:
        await store.write_session(
            bumped(h, name="Stale"), turn_items(4), expected_revision=0, keep=0
        )
    assert raised.value.code == ErrorCode.CONFLICT
    assert await store.get_session(h.id) == ChatSession.from_parts(h1, items + more)
    assert await store.get_session(h.id, last=2) == ChatSession.from_parts(h1, more[-2:])


async def test_keep_on_a_missing_session_conflicts(store: SessionStore) -> None:
    h = header()
    with pytest.raises(ConflictError):
        await store.write_session(bumped(h), turn_items(1), expected_revision=0, keep=0)
    assert await store.get_session(h.id) is None


async def test_tail_reads_after_a_keep_see_the_rewound_history(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 3)
    h1, appended = bumped(h), turn_items(7)
    await store.write_session(h1, appended, expected_revision=0, keep=6)
    rewound = items[:6] + appended
    assert await store.get_session(h.id, last=3) == ChatSession.from_parts(h1, rewound[-3:])
    # Across the point where the kept items meet the appended ones.
    assert await store.get_session(h.id, last=6) == ChatSession.from_parts(h1, rewound[-6:])
    assert await store.get_session(h.id, last=100) == ChatSession.from_parts(h1, rewound)
    assert await store.get_session(h.id, last=0) == ChatSession.from_parts(h1, [])


async def test_appends_after_a_keep_continue_the_rewound_history(store: SessionStore) -> None:
    h, items = await _session_of_turns(store, 3)
    h1, h2, h3 = bumped(h), bumped(bumped(h)), bumped(bumped(bumped(h)))
    eighth, ninth = turn_items(8), turn_items(9)
    await store.write_session(h1, [], expected_revision=0, keep=5)
    await store.write_session(h2, eighth, expected_revision=1)
    await store.write_session(h3, ninth, expected_revision=2, keep=7)
    expected = items[:5] + eighth[:2] + ninth
    assert await store.get_session(h.id) == ChatSession.from_parts(h3, expected)
    assert await store.get_session(h.id, last=5) == ChatSession.from_parts(h3, expected[-5:])
    report = await load_all(store)
    assert report.sessions == [ChatSession.from_parts(h3, expected)]


# -- creation limits ------------------------------------------------------------------------


async def _create_limited(store: SessionStore, limits: CreateLimits, **overrides: Any) -> str:
    h = header(**overrides)
    await store.write_session(h, [], expected_revision=None, limits=limits)
    return h.id


async def test_max_sessions_refuses_the_creation_past_it(store: SessionStore) -> None:
    limits = CreateLimits(now=T0, max_sessions=3)
    made = [await _create_limited(store, limits) for _ in range(3)]
    refused = header()
    with pytest.raises(LimitExceededError) as raised:
        await store.write_session(refused, turn_items(1), expected_revision=None, limits=limits)
    assert raised.value.code == ErrorCode.LIMIT_EXCEEDED
    assert raised.value.details["limit"] == "max_sessions"
    assert await store.get_session(refused.id) is None
    assert await store.count_sessions() == 3
    assert sorted(s.id for s in (await store.list_sessions()).sessions) == sorted(made)


async def test_max_sessions_counts_sessions_created_without_limits(store: SessionStore) -> None:
    await _create(store, header(), header(user_id="alice"))
    with pytest.raises(LimitExceededError):
        await _create_limited(store, CreateLimits(now=T0, max_sessions=2))
    await _create_limited(store, CreateLimits(now=T0, max_sessions=3))
    assert await store.count_sessions() == 3


async def test_max_sessions_per_user_leaves_other_users_alone(store: SessionStore) -> None:
    limits = CreateLimits(now=T0, max_sessions_per_user=2)
    await _create_limited(store, limits, user_id="alice")
    await _create_limited(store, limits, user_id="alice")
    with pytest.raises(LimitExceededError) as raised:
        await _create_limited(store, limits, user_id="alice")
    assert raised.value.details["limit"] == "max_sessions_per_user"
    await _create_limited(store, limits, user_id="bob")
    await _create_limited(store, limits, user_id="bob")
    assert await store.count_sessions(user_id="alice") == 2
    assert await store.count_sessions(user_id="bob") == 2


async def test_max_sessions_per_user_does_not_count_or_cap_sessions_without_user(
    store: SessionStore,
) -> None:
    limits = CreateLimits(now=T0, max_sessions_per_user=1)
    for _ in range(3):
        await _create_limited(store, limits)
    await _create_limited(store, limits, user_id="alice")
    with pytest.raises(LimitExceededError):
        await _create_limited(store, limits, user_id="alice")
    assert await store.count_sessions() == 4


async def test_both_limits_apply_together(store: SessionStore) -> None:
    limits = CreateLimits(now=T0, max_sessions=3, max_sessions_per_user=2)
    await _create_limited(store, limits, user_id="alice")
    await _create_limited(store, limits, user_id="alice")
    with pytest.raises(LimitExceededError) as per_user:
        await _create_limited(store, limits, user_id="alice")
    await _create_limited(store, limits, user_id="bob")
    with pytest.raises(LimitExceededError) as total:
        await _create_limited(store, limits, user_id="carol")
    assert (per_user.value.details["limit"], total.value.details["limit"]) == (
        "max_sessions_per_user",
        "max_sessions",
    )
    assert await store.count_sessions() == 3


async def test_expired_sessions_do_not_count_towards_max_sessions(store: SessionStore) -> None:
    # Expired at T0: expires_at at or before it. Live: later, or no expiry at all.
    await _expiring(store, T0 - 5, T0, T0 + 1)
    limits = CreateLimits(now=T0, max_sessions=2)
    await _create_limited(store, limits)
    with pytest.raises(LimitExceededError):
        await _create_limited(store, limits)
    assert await store.count_sessions() == 4
    assert await store.count_sessions(live_at=T0) == 2


async def test_expired_sessions_do_not_count_towards_a_users_limit(store: SessionStore) -> None:
    await _expiring(store, T0, T0 + 1, user_id="alice")
    limits = CreateLimits(now=T0, max_sessions_per_user=2)
    await _create_limited(store, limits, user_id="alice")
    with pytest.raises(LimitExceededError):
        await _create_limited(store, limits, user_id="alice")
    assert await store.count_sessions(user_id="alice") == 3


async def test_limits_on_an_update_are_invalid_and_change_nothing(store: SessionStore) -> None:
    h = header()
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    with pytest.raises(InvalidInputError):
        await store.write_session(
            bumped(h, name="Limited"),
            turn_items(2),
            expected_revision=0,
            limits=CreateLimits(now=T0, max_sessions=100),
        )
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)


async def test_racing_creations_stop_exactly_at_max_sessions(store: SessionStore) -> None:
    limits = CreateLimits(now=T0, max_sessions=5)
    created: list[str] = []
    refused: list[str] = []

    async def create() -> None:
        h = header()
        try:
            await store.write_session(h, turn_items(1), expected_revision=None, limits=limits)
        except LimitExceededError:
            refused.append(h.id)
        else:
            created.append(h.id)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(create)
    assert (len(created), len(refused)) == (5, 15)
    assert await store.count_sessions() == 5
    assert sorted(s.id for s in (await store.list_sessions()).sessions) == sorted(created)
    assert [await store.get_session(session_id) for session_id in refused] == [None] * 15


async def test_racing_creations_stop_exactly_at_a_users_limit(store: SessionStore) -> None:
    limits = CreateLimits(now=T0, max_sessions_per_user=3)
    outcomes: list[str] = []

    async def create(user_id: str) -> None:
        try:
            await _create_limited(store, limits, user_id=user_id)
        except LimitExceededError:
            outcomes.append(f"{user_id} refused")
        else:
            outcomes.append(f"{user_id} created")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(16):
                tg.start_soon(create, "alice" if n % 2 else "bob")
    assert sorted(outcomes) == sorted(
        ["alice created"] * 3 + ["alice refused"] * 5 + ["bob created"] * 3 + ["bob refused"] * 5
    )
    assert await store.count_sessions(user_id="alice") == 3
    assert await store.count_sessions(user_id="bob") == 3


@pytest.mark.parametrize("store_kind", store_params("file", "sqlite", "postgres", "redis"))
async def test_creations_racing_across_processes_stop_exactly_at_max_sessions(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with shared_store_location(store_kind, tmp_path, request) as location:
        outcomes = await race_creations(
            location,
            processes=4,
            sessions_each=10,
            max_sessions=13,
            now=T0,
            directory=tmp_path / "workers",
        )
        created = [session_id for outcome in outcomes for session_id in outcome.created]
        assert [outcome.errors for outcome in outcomes] == [[], [], [], []]
        assert (len(created), sum(outcome.refused for outcome in outcomes)) == (13, 27)

        store = location.open()
        await store.initialize()
        try:
            assert await store.count_sessions() == 13
            page = await store.list_sessions(limit=100)
            assert sorted(s.id for s in page.sessions) == sorted(created)
        finally:
            await store.close()


# -- checkpoints ----------------------------------------------------------------------------


def _every_item_type(session_agent: str) -> list[HistoryItem]:
    """One item of each history type, with the optional fields a replay needs filled in."""
    helper = new_id()
    return [
        MessageItem(role="user", content="Wie wird das Wetter? 🌦", timestamp=T0),
        MessageItem(
            role="assistant",
            content=[{"type": "output_text", "text": "Sonnig.", "annotations": []}],
            item_id="msg_1",
            status="completed",
            usage=ItemUsage(requests=1, input_tokens=12, output_tokens=3, total_tokens=15),
            output={"forecast": "sunny", "celsius": 21.5},
            agent_id=session_agent,
            timestamp=T0 + 1,
        ),
        FunctionCallItem(
            name="lookup",
            arguments='{"city": "Zürich"}',
            call_id="call_a",
            item_id="fc_1",
            status="completed",
            agent_id=session_agent,
            timestamp=T0 + 2,
        ),
        FunctionCallResultItem(
            name="lookup", call_id="call_a", output=TextOutput(text="21.5"), timestamp=T0 + 3
        ),
        FunctionCallResultItem(
            call_id="call_b", output=ErrorOutput(error="timed out"), timestamp=T0 + 4
        ),
        FunctionCallResultItem(
            call_id="call_c",
            output=[{"type": "input_text", "text": "part"}],
            status="incomplete",
            timestamp=T0 + 5,
        ),
        HandoffItem(
            from_agent_id=session_agent,
            to_agent_id=helper,
            reason="billing question",
            call_id="call_h",
            name="transfer_to_billing",
            arguments="{}",
            output='{"assistant": "Billing"}',
            item_id="fc_h",
            status="completed",
            timestamp=T0 + 6,
        ),
        ReasoningItem(
            item_id="rs_1",
            summary=[{"type": "summary_text", "text": "Checking the forecast."}],
            content=[{"type": "reasoning_text", "text": "raw thoughts"}],
            encrypted_content="gAAAAB-opaque",
            status="completed",
            agent_id=helper,
            provider_data={"model": "o4-mini", "effort": "low"},
            timestamp=T0 + 7,
        ),
        ProviderItem(
            item={
                "type": "web_search_call",
                "id": "ws_1",
                "status": "completed",
                "action": {"type": "search", "query": "weather Zürich"},
            },
            timestamp=T0 + 8,
        ),
    ]


def _rich_header(**overrides: Any) -> SessionHeader:
    """A header using every field a checkpoint or a session must keep exactly."""
    values: dict[str, Any] = {
        "user_id": "user_123",
        "status": "paused",
        "revision": 3,
        "metadata": {"topic": "weather", "tags": ["a", "b"]},
        "expires_at": T0 + 86_400_000,
        "state": {
            "agent": {"memory": {"facts": ["likes sun", "lives in Zürich"], "count": 2}},
            "toolkit": {"enabled": True, "limits": [1, 2.5, None], "name": "天气"},
        },
        "turn_keys": [
            TurnKey(key="req-1", item_id="item-1", item_count=4, created_at=T0),
            TurnKey(key="req-2 ✓", item_id="item-5", item_count=5, created_at=T0 + 9),
        ],
        "context": SessionContext(
            total_tokens=30,
            total_messages=4,
            total_function_calls=1,
            last_activity=T0 + 9,
            input_tokens=20,
            output_tokens=10,
            requests=2,
            total_turns=2,
        ),
    }
    values.update(overrides)
    return header(**values)


def _checkpoint(session: SessionHeader, **overrides: Any) -> Checkpoint:
    values: dict[str, Any] = {
        "id": new_id(),
        "session_id": session.id,
        "created_at": T0,
        "header": session,
        "item_count": 0,
        "shared_count": 0,
    }
    values.update(overrides)
    return Checkpoint(**values)


async def _stored_session(store: SessionStore, **overrides: Any) -> SessionHeader:
    h = header(**overrides)
    await store.write_session(h, turn_items(1) + turn_items(2), expected_revision=None)
    return h


async def test_a_checkpoint_reads_back_exactly(store: SessionStore) -> None:
    h = await _stored_session(store)
    own = _every_item_type(h.agent_id)
    saved = _checkpoint(
        h,
        label=None,
        created_at=T0 + 42,
        kind="restore",
        data={"note": "before the edit", "nested": {"n": [1, 2, {"x": None}]}, "ok": False},
        header=_rich_header(id=h.id, agent_id=h.agent_id),
        item_count=6 + len(own),
        shared_count=6,
        items=own,
    )
    await store.save_checkpoint(saved)
    loaded = await store.get_checkpoint(h.id, saved.id)
    assert loaded == saved
    assert loaded is not None
    assert loaded.label is None
    assert loaded.header.turn_keys == saved.header.turn_keys
    assert await store.list_checkpoints(h.id) == [saved]


async def test_a_checkpoint_of_a_session_that_is_not_stored_is_refused(
    store: SessionStore,
) -> None:
    missing = header()
    with pytest.raises(ConflictError, match=f"^session {missing.id} no longer exists$"):
        await store.save_checkpoint(_checkpoint(missing))
    assert await store.list_checkpoints(missing.id) == []


async def test_a_labelled_checkpoint_without_own_items_reads_back_exactly(
    store: SessionStore,
) -> None:
    h = await _stored_session(store)
    saved = _checkpoint(h, label="vor dem Umbau ✂", item_count=8, shared_count=8)
    await store.save_checkpoint(saved)
    assert await store.get_checkpoint(h.id, saved.id) == saved


async def test_nul_and_control_characters_survive_in_a_checkpoint(store: SessionStore) -> None:
    # PostgreSQL's jsonb refuses \u0000; a raw control character is not valid JSON text.
    h = await _stored_session(store)
    text = "nul \x00, bell \x07, escape \x1b, separator \u2028, end"
    saved = _checkpoint(
        h,
        label=f"label {text}",
        data={"raw": text},
        header=h.model_copy(update={"state": {"raw": text}, "metadata": {"note": text}}),
        item_count=1,
        items=[MessageItem(role="user", content=text, timestamp=T0)],
    )
    await store.save_checkpoint(saved)
    assert await store.get_checkpoint(h.id, saved.id) == saved


async def test_a_checkpoint_of_thousands_of_own_items_reads_back_in_order(
    store: SessionStore,
) -> None:
    # Past the sizes where stores batch: Lua's unpack() limit, SQL's bound-parameter limit.
    h = await _stored_session(store)
    own: list[HistoryItem] = [
        MessageItem(role="user", content=f"item {n}", timestamp=T0) for n in range(2_500)
    ]
    saved = _checkpoint(h, item_count=2_500, items=own)
    await store.save_checkpoint(saved)
    assert await store.get_checkpoint(h.id, saved.id) == saved


async def test_saving_a_checkpoint_again_replaces_it(store: SessionStore) -> None:
    h = await _stored_session(store)
    first = _checkpoint(h, label="first", item_count=1, items=turn_items(1)[:1])
    await store.save_checkpoint(first)
    second = first.model_copy(
        update={
            "label": None,
            "data": {"v": 2},
            "created_at": T0 + 5,
            "item_count": 8,
            "shared_count": 6,
            "items": turn_items(2)[2:],
        }
    )
    await store.save_checkpoint(second)
    assert await store.get_checkpoint(h.id, first.id) == second
    assert await store.list_checkpoints(h.id) == [second]


async def test_checkpoints_are_listed_newest_first(store: SessionStore) -> None:
    h = await _stored_session(store)
    old, new, middle = (_checkpoint(h, created_at=T0 + n) for n in (1, 3, 2))
    for checkpoint in (old, new, middle):
        await store.save_checkpoint(checkpoint)
    assert await store.list_checkpoints(h.id) == [new, middle, old]


async def test_checkpoints_taken_at_the_same_time_are_listed_by_id_descending(
    store: SessionStore,
) -> None:
    h = await _stored_session(store)
    same = [_checkpoint(h, created_at=T0 + 1) for _ in range(5)]
    older = _checkpoint(h, created_at=T0)
    newer = _checkpoint(h, created_at=T0 + 2)
    for checkpoint in (*same, older, newer):
        await store.save_checkpoint(checkpoint)
    listed = [found.id for found in await store.list_checkpoints(h.id)]
    assert listed == [newer.id, *sorted((c.id for c in same), reverse=True), older.id]


async def test_checkpoints_of_an_unknown_session_are_empty(store: SessionStore) -> None:
    h = await _stored_session(store)
    assert await store.list_checkpoints(h.id) == []
    assert await store.list_checkpoints(new_id()) == []
    assert await store.get_checkpoint(h.id, new_id()) is None
    assert await store.get_checkpoint(new_id(), new_id()) is None


async def test_a_deleted_checkpoint_is_gone(store: SessionStore) -> None:
    h = await _stored_session(store)
    gone, kept = _checkpoint(h, created_at=T0 + 1), _checkpoint(h, created_at=T0 + 2)
    await store.save_checkpoint(gone)
    await store.save_checkpoint(kept)
    assert await store.delete_checkpoint(h.id, gone.id) is True
    assert await store.get_checkpoint(h.id, gone.id) is None
    assert await store.list_checkpoints(h.id) == [kept]
    assert await store.delete_checkpoint(h.id, gone.id) is False
    assert await store.delete_checkpoint(h.id, new_id()) is False


async def test_clearing_checkpoints_counts_and_removes_them(store: SessionStore) -> None:
    h, other = await _stored_session(store), await _stored_session(store)
    for n in range(3):
        await store.save_checkpoint(_checkpoint(h, created_at=T0 + n))
    others = _checkpoint(other)
    await store.save_checkpoint(others)
    assert await store.clear_checkpoints(h.id) == 3
    assert await store.list_checkpoints(h.id) == []
    assert await store.clear_checkpoints(h.id) == 0
    assert await store.list_checkpoints(other.id) == [others]


async def test_deleting_a_session_deletes_its_checkpoints(store: SessionStore) -> None:
    h = await _stored_session(store)
    checkpoint = _checkpoint(h, item_count=2, items=turn_items(1)[:2])
    await store.save_checkpoint(checkpoint)
    assert await store.delete_session(h.id) is True
    assert await store.list_checkpoints(h.id) == []
    assert await store.get_checkpoint(h.id, checkpoint.id) is None
    # A new session under the same id starts without any.
    await store.write_session(h, [], expected_revision=None)
    assert await store.get_checkpoint(h.id, checkpoint.id) is None
    assert await store.list_checkpoints(h.id) == []
    assert await store.clear_checkpoints(h.id) == 0


async def test_checkpoints_of_one_session_are_invisible_from_another(
    store: SessionStore,
) -> None:
    mine, theirs = await _stored_session(store), await _stored_session(store)
    checkpoint = _checkpoint(mine)
    await store.save_checkpoint(checkpoint)
    assert await store.get_checkpoint(theirs.id, checkpoint.id) is None
    assert await store.list_checkpoints(theirs.id) == []
    assert await store.delete_checkpoint(theirs.id, checkpoint.id) is False
    assert await store.clear_checkpoints(theirs.id) == 0
    assert await store.list_checkpoints(mine.id) == [checkpoint]


async def test_session_writes_leave_its_checkpoints_alone(store: SessionStore) -> None:
    h = await _stored_session(store)
    checkpoint = _checkpoint(h, item_count=8, shared_count=4, items=turn_items(2))
    await store.save_checkpoint(checkpoint)
    h1 = bumped(h)
    await store.write_session(h1, turn_items(3), expected_revision=0, keep=4)
    await store.write_session(bumped(h1, name="Renamed"), [], expected_revision=1)
    assert await store.list_checkpoints(h.id) == [checkpoint]


async def test_returned_checkpoints_are_copies(store: SessionStore) -> None:
    h = await _stored_session(store)
    own = turn_items(1)[:1]
    saved = _checkpoint(h, data={"list": [1]}, item_count=1, items=own)
    await store.save_checkpoint(saved)
    loaded = await store.get_checkpoint(h.id, saved.id)
    assert loaded is not None
    loaded.data["list"].append(2)
    loaded.items.clear()
    saved.data["list"].append(3)
    assert await store.get_checkpoint(h.id, saved.id) == _checkpoint(
        h, id=saved.id, data={"list": [1]}, item_count=1, items=own
    )


# -- header fields: state, expiry, idempotency keys -----------------------------------------


async def test_state_expiry_and_turn_keys_round_trip_on_create(store: SessionStore) -> None:
    h = _rich_header(revision=0)
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)
    assert await store.get_session(h.id) == ChatSession.from_parts(h, items)
    assert await store.get_session(h.id, last=1) == ChatSession.from_parts(h, items[-1:])
    assert (await store.list_sessions()).sessions == [h]
    assert (await store.list_sessions(user_id="user_123")).sessions == [h]
    assert (await load_all(store)).sessions == [ChatSession.from_parts(h, items)]


async def test_state_expiry_and_turn_keys_round_trip_on_update(store: SessionStore) -> None:
    h = _rich_header(revision=0)
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    changed = bumped(
        h,
        expires_at=T0 + 172_800_000,
        state={"agent": {"memory": {"facts": []}}, "new": {"n": 1}},
        turn_keys=[
            *h.turn_keys,
            TurnKey(key="req-3", item_id="item-10", item_count=4, created_at=T0 + 20),
        ],
    )
    await store.write_session(changed, second, expected_revision=0)
    loaded = await store.get_session(h.id)
    assert loaded == ChatSession.from_parts(changed, first + second)
    assert (await store.list_sessions()).sessions == [changed]

    cleared = bumped(changed, expires_at=None, state={}, turn_keys=[])
    await store.write_session(cleared, [], expected_revision=1)
    assert await store.get_session(h.id, last=0) == ChatSession.from_parts(cleared, [])
    assert (await store.list_sessions()).sessions == [cleared]


async def test_nested_state_is_copied_on_the_way_in_and_out(store: SessionStore) -> None:
    # State modules are dicts of dicts: a copy of the top level alone would share them.
    h = _rich_header(revision=0)
    await store.write_session(h, [], expected_revision=None)
    h.state["agent"]["memory"]["facts"].append("written after the save")
    h.metadata["tags"].append("c")
    h.turn_keys[0].item_count = 99
    loaded = await store.get_session(h.id)
    assert loaded is not None
    loaded.state["toolkit"]["limits"].append("read and changed")
    [listed] = (await store.list_sessions()).sessions
    listed.state["agent"]["memory"]["count"] = 7

    again = await store.get_session(h.id)
    assert again is not None
    assert again.state == {
        "agent": {"memory": {"facts": ["likes sun", "lives in Zürich"], "count": 2}},
        "toolkit": {"enabled": True, "limits": [1, 2.5, None], "name": "天气"},
    }
    assert again.metadata == {"topic": "weather", "tags": ["a", "b"]}
    assert [key.item_count for key in again.turn_keys] == [4, 5]
