"""Worker processes sharing one store: every turn whole, in order, and never overlapping.

Four separate OS processes, each with its own store, agent manager and session manager, send
50 messages each to the same 5 sessions through one store of each shared kind. The offline
model answers ``[offline] You said: <content> (turn k)`` where k counts the user messages of
its input, so a stored k-th reply proves that turn's model input held every turn stored
before it: two turns of a session that overlapped would both say the same k.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from worker import READY
from worker_processes import SharedStore, Worker, open_fresh_store, open_manager, worker_group

from chatruntime import ChatSession, MessageItem
from chatruntime.stores import load_all

pytestmark = pytest.mark.anyio

WORKERS = 4
MESSAGES_PER_WORKER = 50
SESSIONS = 5
TURNS_PER_SESSION = WORKERS * MESSAGES_PER_WORKER // SESSIONS
STARTUP_TIMEOUT = 120.0
RUN_TIMEOUT = 240.0


async def test_four_workers_keep_every_session_complete_ordered_and_serial(
    shared_store: SharedStore, tmp_path: Path
) -> None:
    agent_id = str(uuid.uuid4())
    async with open_manager(shared_store, agent_id) as manager:
        session_ids = [
            (await manager.create_session(agent_id, f"Shared {n}")).unwrap().id
            for n in range(SESSIONS)
        ]

    async with worker_group(tmp_path / "workers") as group:
        workers = [
            await group.start(
                f"worker-{n}",
                *shared_store.worker_arguments(),
                "--agent-id",
                agent_id,
                "--sessions",
                ",".join(session_ids),
                "--messages",
                str(MESSAGES_PER_WORKER),
                "--worker",
                str(n),
                "--wait-for-go",
            )
            for n in range(WORKERS)
        ]
        for worker in workers:
            await worker.wait_for_line(READY, STARTUP_TIMEOUT)
        for worker in workers:
            await worker.go()
        deadline = time.monotonic() + RUN_TIMEOUT
        for worker in workers:
            await worker.wait(max(0.0, deadline - time.monotonic()))

    reports = [finished_cleanly(worker) for worker in workers]
    sends = [send for report in reports for send in report["sends"]]
    failed = [send for send in sends if not send["ok"]]
    assert failed == [], (
        f"{len(failed)} of {len(sends)} sends failed "
        f"({dict(Counter(send['error'] for send in failed))}), the first: {failed[0]}"
    )
    assert len(sends) == WORKERS * MESSAGES_PER_WORKER
    assert ran_concurrently(reports), "the workers did not send at the same time"

    async with open_fresh_store(shared_store) as store:
        loaded = await load_all(store)
        assert loaded.corrupt == []
        assert sorted(session.id for session in loaded.sessions) == sorted(session_ids)
        for session_id in session_ids:
            session = await store.get_session(session_id)
            assert session is not None, f"session {session_id} is gone"
            assert [s for s in loaded.sessions if s.id == session_id] == [session]
            check_session(session, reports)


def finished_cleanly(worker: Worker) -> dict[str, Any]:
    """The worker's report, after checking it exited 0 and printed nothing on stderr."""
    assert worker.process.returncode == 0, worker.describe()
    assert worker.stderr() == "", worker.describe()
    report = worker.result()
    n = report["worker"]
    assert [send["content"] for send in report["sends"]] == [
        f"w{n}-m{i:02d}" for i in range(MESSAGES_PER_WORKER)
    ], worker.describe()
    return report


def ran_concurrently(reports: list[dict[str, Any]]) -> bool:
    """Whether some moment lies between every worker's first and last send."""
    first_starts = [report["sends"][0]["started"] for report in reports]
    last_ends = [report["sends"][-1]["finished"] for report in reports]
    return bool(max(first_starts) < min(last_ends))


def check_session(session: ChatSession, reports: list[dict[str, Any]]) -> None:
    """The session holds exactly the turns sent to it: whole, unique, ordered, serial."""
    sent = [send for report in reports for send in report["sends"] if send["session"] == session.id]
    assert len(sent) == TURNS_PER_SESSION

    history = session.history
    assert all(isinstance(item, MessageItem) for item in history), [
        item.type for item in history if not isinstance(item, MessageItem)
    ]
    roles = [item.role for item in history if isinstance(item, MessageItem)]
    assert roles == ["user", "assistant"] * TURNS_PER_SESSION, f"{session.id}: {roles}"
    asked = [item.text for item in history[0::2] if isinstance(item, MessageItem)]
    answered = [item.text for item in history[1::2] if isinstance(item, MessageItem)]

    duplicated = [content for content, count in Counter(asked).items() if count > 1]
    assert duplicated == [], f"{session.id}: stored more than once: {duplicated}"
    assert sorted(asked) == sorted(send["content"] for send in sent), session.id

    assert answered == [
        f"[offline] You said: {content} (turn {turn})" for turn, content in enumerate(asked, 1)
    ], f"{session.id}: a turn's model input missed earlier turns (turns overlapped)"

    for report in reports:
        prefix = f"w{report['worker']}-"
        own = [send["content"] for send in report["sends"] if send["session"] == session.id]
        stored = [content for content in asked if content.startswith(prefix)]
        assert stored == own, f"{session.id}: worker {report['worker']}'s messages out of order"

    reply_of = dict(zip(asked, answered, strict=True))
    assert {send["content"]: send["reply"] for send in sent} == {
        send["content"]: reply_of[send["content"]] for send in sent
    }, f"{session.id}: a worker was told a reply other than the one stored"

    context = session.context
    assert (
        context.total_turns,
        context.total_messages,
        context.requests,
        context.total_function_calls,
        session.revision,
    ) == (
        TURNS_PER_SESSION,
        2 * TURNS_PER_SESSION,
        TURNS_PER_SESSION,
        0,
        TURNS_PER_SESSION,
    ), f"{session.id}: (turns, messages, requests, function calls, revision)"
