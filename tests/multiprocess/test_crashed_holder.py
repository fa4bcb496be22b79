"""A worker killed with SIGKILL mid-turn: its lease ends and another worker goes on.

The holder's model call never returns (a long offline-model delay), so the holder sits
mid-turn with the session's lease when the test kills it. A second worker has been waiting
for that lease all along; it must get it (at once for the file store, whose OS lock dies with
its holder; after the lease's short ttl for the others) and find the session exactly as it
was before the killed turn.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import anyio
import pytest
from worker import HOLDING, READY, SENDING
from worker_processes import SharedStore, open_fresh_store, open_manager, worker_group

from chatruntime import BusyError, MessageItem

pytestmark = pytest.mark.anyio

LEASE_TTL = 2.0
"""Seconds a lease outlives a killed holder on the stores whose leases expire."""
HOLD_FOREVER = 3600.0
STARTUP_TIMEOUT = 120.0
FOLLOW_TIMEOUT = 60.0
SETTLE = 0.5
"""Seconds to let the waiting worker get well into its wait for the lease."""


async def test_lease_of_a_killed_holder_ends_and_another_worker_continues_the_session(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    agent_id = str(uuid.uuid4())
    async with open_manager(shared_store, agent_id, lease_ttl=LEASE_TTL) as manager:
        session_id = (await manager.create_session(agent_id, "Interrupted")).unwrap().id
        for content in ("before-1", "before-2"):
            assert (await manager.send_message(session_id, content)).success
        before = (await manager.get_session(session_id)).unwrap()
        assert before.revision == 2

        common = [*shared_store.worker_arguments(), "--agent-id", agent_id]
        common += ["--sessions", session_id, "--messages", "1", "--lease-ttl", str(LEASE_TTL)]
        async with worker_group(tmp_path / "workers") as group:
            holder = await group.start(
                "holder",
                *common,
                "--worker",
                "0",
                "--delay",
                str(HOLD_FOREVER),
                "--announce-holding",
            )
            follower = await group.start(
                "follower",
                *common,
                "--worker",
                "1",
                "--lease-timeout",
                str(FOLLOW_TIMEOUT),
                "--wait-for-go",
            )
            await holder.wait_for_line(HOLDING, STARTUP_TIMEOUT)
            await follower.wait_for_line(READY, STARTUP_TIMEOUT)
            with pytest.raises(BusyError):
                async with manager.store.lease(session_id, ttl=LEASE_TTL, timeout=0.2):
                    pass

            await follower.go()
            await follower.wait_for_line(f"{SENDING} w1-m00", STARTUP_TIMEOUT)
            await anyio.sleep(SETTLE)
            assert follower.process.returncode is None, follower.describe()

            killed_at = time.monotonic()
            assert await holder.kill() == -signal.SIGKILL, holder.describe()
            assert await follower.wait(FOLLOW_TIMEOUT) == 0, follower.describe()

        assert follower.stderr() == "", follower.describe()
        [send] = follower.result()["sends"]
        assert send["ok"], send
        assert send["reply"] == "[offline] You said: w1-m00 (turn 3)"
        assert send["started"] < killed_at < send["finished"], (
            "the follower did not wait for the killed holder's lease"
        )

    async with open_fresh_store(shared_store) as store:
        after = await store.get_session(session_id)
        # The lease is free again: neither the killed holder nor the follower keeps it.
        async with store.lease(session_id, ttl=LEASE_TTL, timeout=0.2):
            pass
    assert after is not None
    assert after.history[: len(before.history)] == before.history
    new_items = after.history[len(before.history) :]
    assert [(item.role, item.text) for item in new_items if isinstance(item, MessageItem)] == [
        ("user", "w1-m00"),
        ("assistant", "[offline] You said: w1-m00 (turn 3)"),
    ]
    assert len(new_items) == 2, new_items
    assert (after.revision, after.context.total_turns, after.context.total_messages) == (3, 3, 6)
