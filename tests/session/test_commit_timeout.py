"""A caller's timeout holds even when the store stalls while a turn is being written: the call
returns within a small margin with ``OUTCOME_UNKNOWN`` (the write goes on and may land), and a
retry with the same ``idempotency_key`` then gets the stored reply instead of a second turn."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import pytest

from chatruntime import AgentManager, ErrorCode, HistoryItem, MemoryStore, SessionManager
from chatruntime.models import SessionHeader
from chatruntime.session import COMMIT_GRACE
from chatruntime.stores import CreateLimits, Lease

pytestmark = pytest.mark.anyio


class StallingStore(MemoryStore):
    """A memory store whose next session update stalls for ``stall`` seconds before it is
    written, as a database that stops answering mid-commit and comes back."""

    def __init__(self) -> None:
        super().__init__()
        self.stall = 0.0
        self.written = anyio.Event()

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
        lease: Lease | None = None,
        keep: int | None = None,
        limits: CreateLimits | None = None,
    ) -> None:
        if expected_revision is not None and self.stall:
            stall, self.stall = self.stall, 0.0
            await anyio.sleep(stall)
            await super().write_session(
                header, new_items, expected_revision=expected_revision, lease=lease, keep=keep
            )
            self.written.set()
            return
        await super().write_session(
            header,
            new_items,
            expected_revision=expected_revision,
            lease=lease,
            keep=keep,
            limits=limits,
        )


async def test_a_stalled_commit_answers_outcome_unknown_within_the_grace() -> None:
    store = StallingStore()
    agents = AgentManager(store)
    async with SessionManager(store, agents) as manager:
        agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
        session = (await manager.create_session(agent.id, "chat")).unwrap()
        store.stall = 3.0
        started = time.monotonic()
        result = await manager.send_message(
            session.id, "Hello", timeout=0.5, idempotency_key="retry-me"
        )
        took = time.monotonic() - started
        assert result.error is not None
        assert result.error.code == ErrorCode.OUTCOME_UNKNOWN
        assert result.error.message == (
            f"session {session.id}: the store did not confirm the turn within the timeout "
            "(0.5s); it may still be stored: send it again with the same idempotency_key"
        )
        assert took < 0.5 + COMMIT_GRACE + 0.5
        with anyio.fail_after(10):
            await store.written.wait()
        again = (
            await manager.send_message(session.id, "Hello", idempotency_key="retry-me")
        ).unwrap()
        assert again.content == "[offline] You said: Hello (turn 1)"
        stored = (await manager.get_session(session.id)).unwrap()
        assert stored.context.total_turns == 1


async def test_close_waits_for_a_commit_still_running() -> None:
    store = StallingStore()
    agents = AgentManager(store)
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
    session = (await manager.create_session(agent.id, "chat")).unwrap()
    store.stall = 1.5
    result = await manager.send_message(session.id, "Hello", timeout=0.2)
    assert result.error is not None and result.error.code == ErrorCode.OUTCOME_UNKNOWN
    await manager.close()
    assert store.written.is_set()
    stored = await store.get_session(session.id)
    assert stored is not None and stored.context.total_turns == 1
