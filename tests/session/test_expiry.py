"""Sessions expire after ``ttl`` without activity: every write moves the expiry, an expired
session answers ``SESSION_EXPIRED`` to every call naming it, and cleanup removes them (on
every store, with a clock the test moves: nothing here sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from chatruntime import Err, Error, ErrorCode, Result, StateModule
from chatruntime.models import new_id
from support.lifetime import Lab, open_lab
from support.stores import store_params

pytestmark = pytest.mark.anyio

TTL = 60.0
TTL_MS = 60_000


@pytest.fixture(params=store_params())
async def lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lab]:
    async with open_lab(request.param, tmp_path, request, ttl=TTL) as opened:
        yield opened


class Notes(StateModule):
    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.register_state("notes")


def code_of(result: Result[Any]) -> ErrorCode:
    assert result.error is not None, result
    return result.error.code


async def test_a_new_session_expires_ttl_after_it_was_created(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
    assert session.expires_at == lab.clock.now + TTL_MS
    stored = await lab.store.get_session(session.id)
    assert stored is not None and stored.expires_at == lab.clock.now + TTL_MS


async def test_every_write_moves_the_expiry(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    writes: list[Callable[[], Awaitable[Result[Any]]]] = [
        lambda: m.send_message(session.id, "hello"),
        lambda: m.update_session(session.id, name="Renamed"),
        lambda: m.refresh_session(session.id),
        lambda: m.save_session_state(session.id, notes=Notes()),
    ]
    for write in writes:
        lab.clock.advance(TTL - 1)  # a second before it would expire
        (await write()).unwrap()
        stored = await lab.store.get_session(session.id, last=0)
        assert stored is not None and stored.expires_at == lab.clock.now + TTL_MS
    lab.clock.advance(TTL - 1)
    assert (await m.get_session(session.id)).unwrap().name == "Renamed"


async def test_reads_and_checkpoints_do_not_move_the_expiry(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    lab.clock.advance(TTL / 2)
    (await m.get_session(session.id)).unwrap()
    (await m.save_checkpoint(session.id)).unwrap()
    (await m.get_recent_messages(session.id)).unwrap()
    lab.clock.advance(TTL / 2)
    assert code_of(await m.get_session(session.id)) is ErrorCode.SESSION_EXPIRED


async def test_a_session_expires_at_expires_at_exactly(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
    lab.clock.advance(TTL - 0.001)
    assert (await lab.manager.get_session(session.id)).success
    lab.clock.advance(0.001)
    assert code_of(await lab.manager.get_session(session.id)) is ErrorCode.SESSION_EXPIRED


async def test_an_expired_session_answers_session_expired_to_every_call(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat", user_id="alice")).unwrap()
    (await m.send_message(session.id, "hello")).unwrap()
    checkpoint = (await m.save_checkpoint(session.id, "one")).unwrap()
    (await m.save_session_state(session.id, notes=Notes())).unwrap()
    lab.clock.advance(TTL)
    sid, cid = session.id, checkpoint.id

    async def streamed() -> Result[Any]:
        events = [event async for event in m.stream_message(sid, "hi")]
        assert len(events) == 1 and isinstance(events[0], Error)
        return Err(events[0].error)

    calls: dict[str, Callable[[], Awaitable[Result[Any]]]] = {
        "get_session": lambda: m.get_session(sid),
        "session_exists": lambda: m.session_exists(sid),
        "get_recent_messages": lambda: m.get_recent_messages(sid),
        "update_session": lambda: m.update_session(sid, name="New"),
        "send_message": lambda: m.send_message(sid, "hello again"),
        "stream_message": streamed,
        "refresh_session": lambda: m.refresh_session(sid),
        "delete_session": lambda: m.delete_session(sid),
        "save_checkpoint": lambda: m.save_checkpoint(sid),
        "get_checkpoint": lambda: m.get_checkpoint(sid, cid),
        "get_latest_checkpoint": lambda: m.get_latest_checkpoint(sid),
        "list_checkpoints": lambda: m.list_checkpoints(sid),
        "get_checkpoint_history": lambda: m.get_checkpoint_history(sid, cid),
        "delete_checkpoint": lambda: m.delete_checkpoint(sid, cid),
        "clear_checkpoints": lambda: m.clear_checkpoints(sid),
        "restore_checkpoint": lambda: m.restore_checkpoint(sid, cid),
        "fork_session": lambda: m.fork_session(sid),
        "save_session_state": lambda: m.save_session_state(sid, notes=Notes()),
        "load_session_state": lambda: m.load_session_state(sid, notes=Notes()),
        "as alice": lambda: m.for_user("alice").get_session(sid),
    }
    before = await lab.store.get_session(sid)
    answers = {name: await call() for name, call in calls.items()}
    expired = {name: code_of(answer) for name, answer in answers.items()}
    assert expired == dict.fromkeys(calls, ErrorCode.SESSION_EXPIRED)
    assert answers["get_session"].error is not None
    assert answers["get_session"].error.message == (
        f"session {sid} expired after a time without activity; start a new session"
    )
    # Refused before any work: nothing was written, no checkpoint moved, nothing forked.
    assert await lab.store.get_session(sid) == before
    assert [c.id for c in await lab.store.list_checkpoints(sid)] == [cid]
    assert await lab.store.count_sessions() == 1


async def test_another_users_expired_session_is_not_found_worded_as_an_unknown_id(
    lab: Lab,
) -> None:
    mine = (await lab.manager.create_session(lab.agent.id, "Chat", user_id="alice")).unwrap()
    lab.clock.advance(TTL)
    bob = lab.manager.for_user("bob")
    guessed = await bob.get_session(mine.id)
    unknown = new_id()
    missing = await bob.get_session(unknown)
    assert guessed.error is not None and missing.error is not None
    assert (guessed.error.code, guessed.error.message) == (
        ErrorCode.SESSION_NOT_FOUND,
        f"no session has id {mine.id}",
    )
    assert missing.error.message == f"no session has id {unknown}"
    assert code_of(await bob.save_checkpoint(mine.id)) is ErrorCode.SESSION_NOT_FOUND
    assert code_of(await bob.refresh_session(mine.id)) is ErrorCode.SESSION_NOT_FOUND


async def test_cleanup_deletes_the_expired_sessions_and_counts_them(lab: Lab) -> None:
    m = lab.manager
    expiring = [(await m.create_session(lab.agent.id, f"old {n}")).unwrap() for n in range(3)]
    (await m.save_checkpoint(expiring[0].id)).unwrap()
    lab.clock.advance(TTL / 2)
    fresh = (await m.create_session(lab.agent.id, "fresh", user_id="alice")).unwrap()
    kept = expiring.pop()
    (await m.refresh_session(kept.id)).unwrap()
    lab.clock.advance(TTL / 2)

    assert (await m.cleanup_expired_sessions()).unwrap() == 2
    assert (await m.cleanup_expired_sessions()).unwrap() == 0
    for gone in expiring:
        assert code_of(await m.get_session(gone.id)) is ErrorCode.SESSION_NOT_FOUND
        assert await lab.store.get_session(gone.id) is None
    assert await lab.store.list_checkpoints(expiring[0].id) == []
    assert (await m.get_session(fresh.id)).success
    assert (await m.get_session(kept.id)).success
    assert await lab.store.count_sessions() == 2


async def test_cleanup_works_through_the_expired_in_batches(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("chatruntime.session._expiry.CLEANUP_BATCH", 2)
    for n in range(5):
        (await lab.manager.create_session(lab.agent.id, f"s{n}")).unwrap()
    lab.clock.advance(TTL)
    (await lab.manager.create_session(lab.agent.id, "live")).unwrap()
    assert (await lab.manager.cleanup_expired_sessions()).unwrap() == 5
    assert await lab.store.count_sessions() == 1


async def test_the_active_count_leaves_out_expired_sessions(lab: Lab) -> None:
    m = lab.manager
    for user in ("alice", "alice", "bob"):
        (await m.create_session(lab.agent.id, "old", user_id=user)).unwrap()
    lab.clock.advance(TTL / 2)
    (await m.create_session(lab.agent.id, "new", user_id="alice")).unwrap()
    (await m.create_session(lab.agent.id, "no user")).unwrap()
    assert (await m.get_active_session_count()).unwrap() == 5
    lab.clock.advance(TTL / 2)
    assert (await m.get_active_session_count()).unwrap() == 2
    assert (await m.get_active_session_count("alice")).unwrap() == 1
    assert (await m.get_active_session_count("bob")).unwrap() == 0
    # Stored until cleaned up, and counted by the store when asked for all.
    assert await lab.store.count_sessions() == 5


async def test_deleting_a_users_sessions_deletes_their_expired_ones_too(lab: Lab) -> None:
    m = lab.manager
    (await m.create_session(lab.agent.id, "old", user_id="alice")).unwrap()
    lab.clock.advance(TTL)
    (await m.create_session(lab.agent.id, "new", user_id="alice")).unwrap()
    assert (await m.delete_user_sessions("alice")).unwrap() == 2
    assert await lab.store.count_sessions() == 0


async def test_expiry_lives_in_the_session_so_every_manager_honours_it(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
    other = lab.open_manager()  # no ttl of its own
    (await other.initialize()).unwrap()
    (await other.update_session(session.id, name="Kept expiry")).unwrap()
    stored = await lab.store.get_session(session.id, last=0)
    assert stored is not None and stored.expires_at == session.expires_at
    lab.clock.advance(TTL)
    assert code_of(await other.get_session(session.id)) is ErrorCode.SESSION_EXPIRED


@pytest.mark.parametrize("kind", store_params("memory"))
async def test_without_a_ttl_sessions_never_expire(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_lab(kind, tmp_path, request) as lab:
        session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
        assert session.expires_at is None
        lab.clock.advance(10 * 365 * 24 * 3600)
        assert (await lab.manager.send_message(session.id, "still here")).success
        assert (await lab.manager.cleanup_expired_sessions()).unwrap() == 0
        assert (await lab.manager.get_session(session.id)).unwrap().expires_at is None


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "60"])
def test_a_ttl_must_be_positive_seconds(ttl: Any) -> None:
    from chatruntime import AgentManager, MemoryStore, SessionManager

    store = MemoryStore()
    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        SessionManager(store, AgentManager(store), ttl=ttl)
