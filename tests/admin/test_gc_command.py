"""``chatruntime admin gc`` on real stores left behind by processes killed with SIGKILL: it
deletes the expired sessions as before, folds the journals of a file store, drops the stale
lease rows of a SQL store, and says how many of each."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa

from chatruntime.admin import Problem, collect_garbage
from chatruntime.cli._admin import main
from chatruntime.models import ChatSession, StorageError, now_ms
from chatruntime.stores import FileStore, MemoryStore, SqlStore, _sql
from support.factories import T0, header

TESTS = Path(__file__).resolve().parents[1]
AGENT = "a1a1a1a1-0000-4000-8000-000000000001"
LIVE_JOURNALED = "51515151-0000-4000-8000-000000000001"
EXPIRED_JOURNALED = "52525252-0000-4000-8000-000000000002"
EXPIRED = "53535353-0000-4000-8000-000000000003"
LIVE_JOURNALED_TOO = "54545454-0000-4000-8000-000000000004"
LIVE = "55555555-0000-4000-8000-000000000005"
PLAN = [
    # (session, updates after its creation, expired)
    (LIVE_JOURNALED, 2, False),
    (EXPIRED_JOURNALED, 1, True),
    (EXPIRED, 0, True),
    (LIVE_JOURNALED_TOO, 1, False),
    (LIVE, 0, False),
]

FILE_WRITER = """
import json, os, signal, sys, anyio
sys.path.insert(0, sys.argv[2])
from chatruntime.stores import FileStore
from support.factories import T0, bumped, header, turn_items

async def main() -> None:
    store = FileStore(sys.argv[1])
    for session_id, updates, expired in json.loads(sys.argv[3]):
        h = header(id=session_id, agent_id=sys.argv[4], expires_at=T0 if expired else None)
        await store.write_session(h, turn_items(0), expected_revision=None)
        for n in range(1, updates + 1):
            h = bumped(h)
            await store.write_session(h, turn_items(n), expected_revision=n - 1)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(): the journals stay

anyio.run(main)
"""

LEASE_HOLDER = """
import os, signal, sys, anyio
from chatruntime.stores import SqlStore, _sql

async def main() -> None:
    _sql.FILE_LOCKS_AVAILABLE = False  # lease rows, as where file locks are missing
    store = SqlStore(sys.argv[1])
    await store.initialize()
    async with store.lease(sys.argv[2], ttl=0.5, timeout=10):
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding it: the row stays

anyio.run(main)
"""


def run_until_killed(*command: str) -> None:
    process = subprocess.run([sys.executable, "-c", *command], capture_output=True, check=False)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()


def read_sessions(root: Path) -> dict[str, ChatSession | None]:
    async def read() -> dict[str, ChatSession | None]:
        store = FileStore(root, read_only=True)
        await store.initialize()
        try:
            return {sid: await store.get_session(sid) for sid, _, _ in PLAN}
        finally:
            await store.close()

    return anyio.run(read)


def test_gc_on_a_file_store_deletes_the_expired_and_folds_the_journals_a_killed_process_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "files"
    run_until_killed(FILE_WRITER, str(root), str(TESTS), json.dumps(PLAN), AGENT)
    folder = root / "sessions" / AGENT
    before = read_sessions(root)
    assert sorted(path.name for path in folder.glob("*.journal")) == [
        f"{LIVE_JOURNALED}.journal",
        f"{EXPIRED_JOURNALED}.journal",
        f"{LIVE_JOURNALED_TOO}.journal",
    ]

    assert main(["gc", "--store", f"file://{root}", "--no-progress"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "deleted 2 expired sessions",
        "folded 2 journals",
        "note: stale leases: FileStore drops none on request (a lease not renewed ends by itself)",
    ]
    assert sorted(path.name for path in folder.iterdir()) == [
        f"{LIVE_JOURNALED}.json",
        f"{LIVE_JOURNALED_TOO}.json",
        f"{LIVE}.json",
    ]
    after = read_sessions(root)
    assert after == {**before, EXPIRED_JOURNALED: None, EXPIRED: None}
    for session_id in (LIVE_JOURNALED, LIVE_JOURNALED_TOO, LIVE):
        alone = ChatSession.model_validate_json((folder / f"{session_id}.json").read_bytes())
        assert alone == before[session_id]


def test_gc_on_sqlite_with_lease_rows_drops_the_row_a_killed_holder_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sql, "FILE_LOCKS_AVAILABLE", False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    session_id = LIVE
    run_until_killed(LEASE_HOLDER, url, session_id)
    [(left_by, ends_at)] = anyio.run(lease_rows, url)
    assert left_by == session_id
    time.sleep(max(0, ends_at - now_ms()) / 1000 + 0.05)

    assert main(["gc", "--store", url, "--no-progress"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "deleted 0 expired sessions",
        "dropped 1 stale lease",
        "note: journals: SqlStore keeps none",
    ]
    assert anyio.run(lease_rows, url) == []


async def lease_rows(url: str) -> list[tuple[str, int]]:
    store = SqlStore(url)
    await store.initialize()
    try:
        assert store.engine is not None
        statement = f"SELECT session_id, expires_at FROM {store.table_prefix}session_leases"
        async with store.engine.connect() as conn:
            return [(str(row[0]), int(row[1])) for row in await conn.execute(sa.text(statement))]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_fold_that_fails_is_a_problem_and_the_rest_of_gc_is_still_reported() -> None:
    class DiskFull(MemoryStore):
        async def fold_journals(self) -> int:
            raise StorageError("could not fold the journals of 2 sessions: disk full")

        async def drop_stale_leases(self, now: int) -> int:
            return 3

    store = DiskFull()
    await store.initialize()
    await store.write_session(header(expires_at=T0 - 1), [], expected_revision=None)

    report = await collect_garbage(store, now=T0)

    assert (report.expired_deleted, report.journals_folded, report.leases_dropped) == (1, None, 3)
    assert report.problems == [
        Problem("journals", "not done: could not fold the journals of 2 sessions: disk full")
    ]
    assert (report.notes, report.ok) == ([], False)
