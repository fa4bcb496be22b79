"""``max_sessions`` and ``max_sessions_per_user`` cap the live sessions: creating past one
answers ``LIMIT_EXCEEDED``, exactly, even when many creations race; expired sessions do not
count (on every store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from chatruntime import ErrorCode, Result
from support.lifetime import open_lab
from support.stores import store_params

pytestmark = pytest.mark.anyio

TTL = 60.0


def limit_of(result: Result[Any]) -> tuple[ErrorCode, Any]:
    assert result.error is not None, result
    return result.error.code, result.error.details.get("limit")


@pytest.mark.parametrize("kind", store_params())
async def test_creating_past_max_sessions_is_refused_until_one_goes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_lab(kind, tmp_path, request, ttl=TTL, max_sessions=3) as lab:
        m = lab.manager
        first = (await m.create_session(lab.agent.id, "1", user_id="alice")).unwrap()
        (await m.create_session(lab.agent.id, "2", user_id="bob")).unwrap()
        (await m.create_session(lab.agent.id, "3")).unwrap()
        refused = await m.create_session(lab.agent.id, "4")
        assert limit_of(refused) == (ErrorCode.LIMIT_EXCEEDED, "max_sessions")
        assert refused.error is not None
        assert refused.error.message == (
            "cannot create another session: the store holds its limit of 3 "
            "(delete or let some expire first)"
        )
        assert await lab.store.count_sessions() == 3
        (await m.delete_session(first.id)).unwrap()
        fourth = (await m.create_session(lab.agent.id, "4")).unwrap()
        assert limit_of(await m.fork_session(fourth.id)) == (
            ErrorCode.LIMIT_EXCEEDED,
            "max_sessions",
        )


@pytest.mark.parametrize("kind", store_params())
async def test_expired_sessions_do_not_count_towards_the_limits(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_lab(
        kind, tmp_path, request, ttl=TTL, max_sessions=2, max_sessions_per_user=1
    ) as lab:
        m = lab.manager
        (await m.create_session(lab.agent.id, "old", user_id="alice")).unwrap()
        (await m.create_session(lab.agent.id, "old")).unwrap()
        assert limit_of(await m.create_session(lab.agent.id, "x")) == (
            ErrorCode.LIMIT_EXCEEDED,
            "max_sessions",
        )
        lab.clock.advance(TTL)
        (await m.create_session(lab.agent.id, "new", user_id="alice")).unwrap()
        (await m.create_session(lab.agent.id, "new")).unwrap()
        assert await lab.store.count_sessions() == 4  # stored until cleaned up


@pytest.mark.parametrize("kind", store_params())
async def test_each_user_has_at_most_max_sessions_per_user(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_lab(kind, tmp_path, request, max_sessions_per_user=2) as lab:
        alice = lab.manager.for_user("alice")
        for n in range(2):
            (await alice.create_session(lab.agent.id, f"a{n}")).unwrap()
        refused = await alice.create_session(lab.agent.id, "a2")
        assert limit_of(refused) == (ErrorCode.LIMIT_EXCEEDED, "max_sessions_per_user")
        assert refused.error is not None and "alice" not in refused.error.message
        (await lab.manager.for_user("bob").create_session(lab.agent.id, "b")).unwrap()
        # Sessions without a user are not anyone's: the per-user cap does not apply.
        for n in range(3):
            (await lab.manager.create_session(lab.agent.id, f"n{n}")).unwrap()
        assert (await alice.get_active_session_count()).unwrap() == 2


@pytest.mark.parametrize("kind", store_params())
async def test_racing_creations_stop_exactly_at_the_limits(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_lab(kind, tmp_path, request, max_sessions=7, max_sessions_per_user=3) as lab:
        # Two managers on one store: each with its own cache, both racing.
        other = lab.open_manager(max_sessions=7, max_sessions_per_user=3)
        (await other.initialize()).unwrap()
        results: list[tuple[str, Result[Any]]] = []

        async def create(manager: Any, user: str, n: int) -> None:
            results.append((user, await manager.create_session(lab.agent.id, f"{n}", user)))

        async with anyio.create_task_group() as tg:
            for n in range(24):
                user = ("alice", "bob", "carol")[n % 3]
                tg.start_soon(create, (lab.manager, other)[n % 2], user, n)

        created = [user for user, result in results if result.success]
        refused = {limit_of(result) for _, result in results if not result.success}
        assert len(created) == 7
        assert all(created.count(user) <= 3 for user in ("alice", "bob", "carol"))
        assert refused <= {
            (ErrorCode.LIMIT_EXCEEDED, "max_sessions"),
            (ErrorCode.LIMIT_EXCEEDED, "max_sessions_per_user"),
        }
        assert await lab.store.count_sessions() == 7
        for user in ("alice", "bob", "carol"):
            assert await lab.store.count_sessions(user_id=user) == created.count(user)


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_sessions", 0), ("max_sessions", 1.5), ("max_sessions_per_user", -1)],
)
def test_a_limit_must_be_a_positive_integer(option: str, value: Any) -> None:
    from chatruntime import AgentManager, MemoryStore, SessionManager

    store = MemoryStore()
    with pytest.raises(ValueError, match=f"{option} must be an integer of at least 1"):
        SessionManager(store, AgentManager(store), **{option: value})
