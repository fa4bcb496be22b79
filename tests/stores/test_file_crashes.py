"""``FileStore`` after its process is killed or its call cancelled (issue #8): what a SIGKILL
leaves is cleared by the next store to open the folder, the ``.json`` is the whole record
again once that store closes, and a cancelled call never keeps a session's lease."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from chatruntime.models import ChatSession, MessageItem
from chatruntime.stores import FileStore, _file_sessions
from support.factories import bumped, header, turn_items

pytestmark = pytest.mark.anyio

SID = "0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def agent_folder(root: Path) -> Path:
    return root / "sessions" / AID


def texts(session: ChatSession | None) -> list[str]:
    assert session is not None
    return [item.text for item in session.history if isinstance(item, MessageItem)]


def snapshot_texts(root: Path) -> list[str]:
    """The messages of the ``.json`` alone, as a reader that ignores journals sees them."""
    snapshot = ChatSession.model_validate_json((agent_folder(root) / f"{SID}.json").read_bytes())
    return texts(snapshot)


async def run_until_killed(root: Path, script: str) -> None:
    """Run ``script`` (which writes to ``root``, then is SIGKILLed) in a fresh interpreter."""
    process = await anyio.run_process(
        [sys.executable, "-c", script, str(root), str(TESTS)], check=False
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()


PROLOGUE = f"""
import os, signal, sys, anyio
sys.path.insert(0, sys.argv[2])
from chatruntime.stores import FileStore
from support.factories import bumped, header, turn_items

h0 = header(id="{SID}", agent_id="{AID}")
h1 = bumped(h0)
h2 = bumped(h1)
"""

KILLED_IN_A_FOLD = (
    PROLOGUE
    + """
async def main() -> None:
    store = FileStore(sys.argv[1], fold_min_bytes=0, fold_ratio=0)  # every append folds
    await store.write_session(h0, turn_items(1), expected_revision=None)
    replace = os.replace

    def killed_before_the_rename(source, target):
        os.kill(os.getpid(), signal.SIGKILL)

    os.replace = killed_before_the_rename
    await store.write_session(h1, turn_items(2), expected_revision=0)

anyio.run(main)
"""
)

KILLED_AFTER_TWO_TURNS = (
    PROLOGUE
    + """
async def main() -> None:
    store = FileStore(sys.argv[1])
    await store.write_session(h0, [], expected_revision=None)
    await store.write_session(h1, turn_items(1), expected_revision=0)
    await store.write_session(h2, turn_items(2), expected_revision=1)
    os.kill(os.getpid(), signal.SIGKILL)

anyio.run(main)
"""
)


async def test_a_temporary_snapshot_left_by_a_fold_killed_mid_way_is_removed_on_opening(
    root: Path,
) -> None:
    await run_until_killed(root, KILLED_IN_A_FOLD)
    leftover = agent_folder(root) / f".{SID}.json.tmp"
    assert leftover.exists()  # the fold wrote it, and died before renaming it
    assert sorted(os.listdir(agent_folder(root))) == [
        f".{SID}.json.tmp",
        f"{SID}.journal",
        f"{SID}.json",
    ]

    store = FileStore(root)
    await store.initialize()
    assert not leftover.exists()
    found = await store.get_session(SID)
    assert found is not None and found.revision == 1
    assert texts(found) == ["question 1", "answer 1", "question 2", "answer 2"]
    await store.close()
    assert sorted(os.listdir(agent_folder(root))) == [f"{SID}.json"]


async def test_after_a_kill_opening_and_closing_folds_the_journal_into_the_json(
    root: Path,
) -> None:
    await run_until_killed(root, KILLED_AFTER_TWO_TURNS)
    journal = agent_folder(root) / f"{SID}.journal"
    assert journal.exists()
    assert snapshot_texts(root) == []  # the killed process never folded

    store = FileStore(root)
    await store.initialize()
    await store.close()

    assert not journal.exists()
    assert snapshot_texts(root) == ["question 1", "answer 1", "question 2", "answer 2"]
    reopened = FileStore(root)
    assert (await reopened.get_session(SID)) == ChatSession.model_validate_json(
        (agent_folder(root) / f"{SID}.json").read_bytes()
    )
    await reopened.close()


async def test_a_journal_found_when_taking_a_lease_is_folded_on_close(root: Path) -> None:
    # The writer stays open (its process lives, so its sessions are not settled as a dead
    # process's); the journal is found by the lease alone.
    writer = FileStore(root)
    h = header(id=SID, agent_id=AID)
    first, second = turn_items(1), turn_items(2)
    await writer.write_session(h, first, expected_revision=None)
    await writer.write_session(bumped(h), second, expected_revision=0)

    other = FileStore(root)
    async with other.lease(SID) as lease:
        assert lease.revision == 1
    await other.close()

    assert not (agent_folder(root) / f"{SID}.journal").exists()
    assert snapshot_texts(root) == ["question 1", "answer 1", "question 2", "answer 2"]
    assert await writer.get_session(SID) == ChatSession.from_parts(bumped(h), first + second)
    await writer.close()


async def test_a_session_only_read_is_not_rewritten_on_close(root: Path) -> None:
    writer = FileStore(root)
    h = header(id=SID, agent_id=AID)
    await writer.write_session(h, turn_items(1), expected_revision=None)
    await writer.close()
    snapshot = agent_folder(root) / f"{SID}.json"
    before = snapshot.stat()

    reader = FileStore(root)
    async with reader.lease(SID):
        assert await reader.get_session(SID) is not None
    await reader.close()
    after = snapshot.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# -- cancelled calls ------------------------------------------------------------------------


class Gate:
    """Holds a worker thread inside a blocking store call until the test opens it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()

    def wrap(self, function: Any) -> Any:
        def held(*args: Any) -> Any:
            self.entered.set()
            self.open.wait(10)
            return function(*args)

        return held

    async def wait_entered(self) -> None:
        assert await anyio.to_thread.run_sync(self.entered.wait, 5)


async def test_a_lease_cancelled_while_its_thread_takes_the_lock_is_given_back(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(root)
    await store.write_session(header(id=SID, agent_id=AID), [], expected_revision=None)
    gate = Gate()
    monkeypatch.setattr(
        _file_sessions.SessionFiles,
        "try_lease",
        gate.wrap(_file_sessions.SessionFiles.try_lease),
    )
    bodies: list[str] = []

    async def hold() -> None:
        async with store.lease(SID, timeout=1):
            bodies.append("entered")
            await anyio.sleep(30)

    task = asyncio.get_running_loop().create_task(hold())
    await gate.wait_entered()
    task.cancel()  # raw, as asyncio.wait_for does: anyio's shields do not stop it
    await asyncio.sleep(0.05)
    assert not task.done()  # it waits for the thread's outcome: the lock it takes
    gate.open.set()
    await asyncio.wait([task])
    assert task.cancelled()
    assert bodies == ["entered"]
    monkeypatch.undo()

    async with store.lease(SID, timeout=0) as lease:  # free at once, not after the timeout
        assert lease.revision == 0
    await store.close()


async def test_a_write_cancelled_while_its_thread_writes_lands_whole_and_gives_the_lease_back(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(root)
    h = header(id=SID, agent_id=AID)
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    gate = Gate()
    monkeypatch.setattr(
        _file_sessions.SessionFiles, "append", gate.wrap(_file_sessions.SessionFiles.append)
    )

    async def turn() -> None:
        async with store.lease(SID, timeout=1) as lease:
            await store.write_session(bumped(h), second, expected_revision=0, lease=lease)

    task = asyncio.get_running_loop().create_task(turn())
    await gate.wait_entered()
    task.cancel()
    await asyncio.sleep(0.05)
    gate.open.set()
    await asyncio.wait([task])
    assert task.cancelled()
    monkeypatch.undo()

    assert await store.get_session(SID) == ChatSession.from_parts(bumped(h), first + second)
    async with store.lease(SID, timeout=0) as lease:
        assert lease.revision == 1
    await store.close()  # the journal the cancelled write left is folded
    assert not (agent_folder(root) / f"{SID}.journal").exists()
