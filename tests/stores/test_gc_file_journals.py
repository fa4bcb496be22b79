"""``FileStore.fold_journals`` (``chatruntime admin gc``): every journal in the folder is folded
into its ``.json``, those of a process killed with SIGKILL included, each under its session's
lock; a session whose lease someone holds is skipped without waiting; damaged sessions and
read-only stores are left as they are."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from chatruntime.models import ChatSession, MessageItem, StorageError
from chatruntime.stores import FileStore, _file_sessions

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).resolve().parents[1]
A1 = "a1a1a1a1-0000-4000-8000-000000000001"
A2 = "a2a2a2a2-0000-4000-8000-000000000002"
S1 = "51515151-0000-4000-8000-000000000001"
S2 = "52525252-0000-4000-8000-000000000002"
S3 = "53535353-0000-4000-8000-000000000003"
S4 = "54545454-0000-4000-8000-000000000004"
PLAN = [(S1, A1, 2), (S2, A1, 3), (S3, A2, 1), (S4, A2, 0)]
"""(session, agent, updates after its creation): S4 was created and never updated, so it has
no journal; the others have one line per update."""

WRITER = """
import json, os, signal, sys, anyio
sys.path.insert(0, sys.argv[2])
from chatruntime.stores import FileStore
from support.factories import bumped, header, turn_items

async def main() -> None:
    store = FileStore(sys.argv[1])
    for session_id, agent_id, updates in json.loads(sys.argv[3]):
        h = header(id=session_id, agent_id=agent_id)
        await store.write_session(h, turn_items(0), expected_revision=None)
        for n in range(1, updates + 1):
            h = bumped(h)
            await store.write_session(h, turn_items(n), expected_revision=n - 1)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(): the journals stay

anyio.run(main)
"""

HOLDER = """
import sys, anyio
sys.path.insert(0, sys.argv[2])
from chatruntime.stores import FileStore

async def main() -> None:
    store = FileStore(sys.argv[1])
    async with store.lease(sys.argv[3], timeout=5):
        print("held", flush=True)
        await anyio.sleep(3600)  # until the test kills it

anyio.run(main)
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


async def write_then_die(root: Path) -> None:
    """Write :data:`PLAN` from a fresh interpreter, which is then SIGKILLed."""
    process = await anyio.run_process(
        [sys.executable, "-c", WRITER, str(root), str(TESTS), json.dumps(PLAN)], check=False
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()


@asynccontextmanager
async def lease_held_elsewhere(root: Path, session_id: str) -> AsyncIterator[Process]:
    """Another process holding the session's lease until it is killed (yielded to kill)."""
    command = [sys.executable, "-c", HOLDER, str(root), str(TESTS), session_id]
    process = await anyio.open_process(command, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        said = b""
        with anyio.fail_after(30):
            while not said.endswith(b"\n"):
                said += await process.stdout.receive()
        assert said == b"held\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def journals(root: Path) -> list[str]:
    return sorted(path.name for path in (root / "sessions").glob("*/*.journal"))


def snapshot(root: Path, agent_id: str, session_id: str) -> ChatSession:
    """The session as its ``.json`` alone tells it (what a reader ignoring journals sees)."""
    path = root / "sessions" / agent_id / f"{session_id}.json"
    return ChatSession.model_validate_json(path.read_bytes())


def texts(session: ChatSession | None) -> list[str]:
    assert session is not None
    return [item.text for item in session.history if isinstance(item, MessageItem)]


def expected_texts(updates: int) -> list[str]:
    return [text for n in range(updates + 1) for text in (f"question {n}", f"answer {n}")]


@asynccontextmanager
async def opened(root: Path, **options: bool) -> AsyncIterator[FileStore]:
    store = FileStore(root, **options)
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


async def sessions_of(store: FileStore) -> dict[str, ChatSession]:
    found: dict[str, ChatSession] = {}
    for session_id, _, _ in PLAN:
        session = await store.get_session(session_id)
        assert session is not None
        found[session_id] = session
    return found


async def test_journals_left_by_a_killed_process_are_folded_and_read_back_identical(
    root: Path,
) -> None:
    await write_then_die(root)
    assert journals(root) == [f"{S1}.journal", f"{S2}.journal", f"{S3}.journal"]

    async with opened(root) as store:
        before = await sessions_of(store)
        assert [(s.revision, texts(s)) for s in before.values()] == [
            (updates, expected_texts(updates)) for _, _, updates in PLAN
        ]

        assert await store.fold_journals() == 3

        assert journals(root) == []
        assert await sessions_of(store) == before
        # The .json alone is the whole record again, in every agent's folder.
        assert {sid: snapshot(root, aid, sid) for sid, aid, _ in PLAN} == before
        assert await store.fold_journals() == 0


async def test_a_session_another_process_holds_is_skipped_and_folded_once_it_is_gone(
    root: Path,
) -> None:
    await write_then_die(root)
    async with opened(root) as store:
        before = await sessions_of(store)
        async with lease_held_elsewhere(root, S1) as holder:
            with anyio.fail_after(5):  # skipped, not waited for
                assert await store.fold_journals() == 2
            assert journals(root) == [f"{S1}.journal"]
            holder.send_signal(signal.SIGKILL)
            await holder.wait()

        assert await store.fold_journals() == 1
        assert journals(root) == []
        assert snapshot(root, A1, S1) == before[S1]
        assert await sessions_of(store) == before


async def test_a_session_leased_by_another_task_is_skipped_without_waiting(root: Path) -> None:
    await write_then_die(root)
    async with opened(root) as store:
        before = await sessions_of(store)
        leased, done = anyio.Event(), anyio.Event()

        async def turn() -> None:
            async with store.lease(S2, timeout=0):
                leased.set()
                await done.wait()

        async with anyio.create_task_group() as group:
            group.start_soon(turn)
            await leased.wait()
            with anyio.fail_after(5):
                assert await store.fold_journals() == 2
            assert journals(root) == [f"{S2}.journal"]
            done.set()

        assert await store.fold_journals() == 1
        assert journals(root) == []
        assert snapshot(root, A1, S2) == before[S2]


async def test_the_session_the_calling_task_holds_is_skipped(root: Path) -> None:
    await write_then_die(root)
    async with opened(root) as store, store.lease(S3, timeout=0):
        with anyio.fail_after(5):
            assert await store.fold_journals() == 2
        assert journals(root) == [f"{S3}.journal"]


async def test_a_damaged_session_keeps_its_files_and_the_others_are_folded(root: Path) -> None:
    await write_then_die(root)
    damaged = root / "sessions" / A1 / f"{S1}.json"
    damaged.write_bytes(b"{not json")
    journal = (root / "sessions" / A1 / f"{S1}.journal").read_bytes()

    async with opened(root) as store:
        assert await store.fold_journals() == 2

    assert journals(root) == [f"{S1}.journal"]
    assert damaged.read_bytes() == b"{not json"
    assert (root / "sessions" / A1 / f"{S1}.journal").read_bytes() == journal


async def test_a_read_only_store_folds_nothing_and_says_why(root: Path) -> None:
    await write_then_die(root)

    async with opened(root, read_only=True) as store:
        with pytest.raises(StorageError) as caught:
            await store.fold_journals()

    assert caught.value.message == (
        f"cannot fold the journals: the file store {root} is open read-only "
        "(it was opened with read_only=True)"
    )
    assert journals(root) == [f"{S1}.journal", f"{S2}.journal", f"{S3}.journal"]


async def test_a_fold_that_fails_leaves_its_journal_and_the_error_counts_the_others(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await write_then_die(root)
    fold = _file_sessions.SessionFiles.fold

    def disk_full_for_s2(files: _file_sessions.SessionFiles, session_id: str) -> bool:
        if session_id == S2:
            raise StorageError(f"cannot write the snapshot of {S2}: disk full", path="s2.json")
        return fold(files, session_id)

    monkeypatch.setattr(_file_sessions.SessionFiles, "fold", disk_full_for_s2)
    async with opened(root) as store:
        with pytest.raises(StorageError) as caught:
            await store.fold_journals()
        monkeypatch.undo()  # so that close() folds it

        assert (caught.value.message, caught.value.details) == (
            f"cannot write the snapshot of {S2}: disk full",
            {"path": "s2.json", "folded": 2},
        )
        assert journals(root) == [f"{S2}.journal"]
