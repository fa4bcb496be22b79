"""``FileStore`` beyond the contract for rewinding writes (``keep``), creation limits and the
expiry index: the files a rewind leaves, its crash safety, the creation lock across
processes, and expiry kept in the index's rebuilds."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatruntime.models import ChatSession, LimitExceededError, StorageError
from chatruntime.stores import CreateLimits, FileStore, _file_io, _file_sessions
from support.factories import T0, bumped, header, turn_items

pytestmark = pytest.mark.anyio

SID = "0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[FileStore]:
    opened = FileStore(root)
    await opened.initialize()
    yield opened
    await opened.close()


def snapshot_path(root: Path) -> Path:
    return root / "sessions" / AID / f"{SID}.json"


def journal_path(root: Path) -> Path:
    return root / "sessions" / AID / f"{SID}.journal"


async def three_turns(store: FileStore) -> tuple[Any, list[Any]]:
    """A session at revision 2 with a journal: turn 1 in the snapshot, turns 2, 3 after."""
    h = header(id=SID, agent_id=AID)
    items = [turn_items(n) for n in (1, 2, 3)]
    await store.write_session(h, items[0], expected_revision=None)
    await store.write_session(bumped(h), items[1], expected_revision=0)
    await store.write_session(bumped(bumped(h)), items[2], expected_revision=1)
    return bumped(bumped(h)), [item for turn in items for item in turn]


# -- rewinding --------------------------------------------------------------------------------


async def test_a_rewind_writes_the_json_anew_and_removes_the_journal(
    store: FileStore, root: Path
) -> None:
    h, items = await three_turns(store)
    assert journal_path(root).exists()
    rewound, appended = bumped(h), turn_items(9)
    await store.write_session(rewound, appended, expected_revision=2, keep=6)

    assert sorted(os.listdir(snapshot_path(root).parent)) == [f"{SID}.json"]
    on_disk = ChatSession.model_validate_json(snapshot_path(root).read_bytes())
    assert on_disk == ChatSession.from_parts(rewound, items[:6] + appended)


async def test_a_rewind_cut_short_before_removing_the_journal_reads_as_the_rewind(
    store: FileStore, root: Path
) -> None:
    h, items = await three_turns(store)
    journal = journal_path(root).read_bytes()
    rewound = bumped(h)
    await store.write_session(rewound, [], expected_revision=2, keep=2)
    journal_path(root).write_bytes(journal)  # its process died after the rename

    fresh = FileStore(root)
    assert await fresh.get_session(SID) == ChatSession.from_parts(rewound, items[:2])
    assert await fresh.get_session(SID, last=1) == ChatSession.from_parts(rewound, items[1:2])
    assert await fresh.get_revision(SID) == 3
    fourth = turn_items(4)
    await fresh.write_session(bumped(rewound), fourth, expected_revision=3)
    assert await fresh.get_session(SID) == ChatSession.from_parts(
        bumped(rewound), items[:2] + fourth
    )
    await fresh.close()


async def test_a_rewind_that_cannot_write_changes_nothing(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, items = await three_turns(store)
    files = {path.name: path.read_bytes() for path in snapshot_path(root).parent.iterdir()}

    def no_space(path: Path, data: bytes, **options: Any) -> Any:
        raise _file_io.storage_error("write", path, OSError(28, os.strerror(28)))

    monkeypatch.setattr(_file_sessions, "write_atomically", no_space)
    with pytest.raises(StorageError):
        await store.write_session(bumped(h), [], expected_revision=2, keep=0)
    monkeypatch.undo()

    assert {path.name: path.read_bytes() for path in snapshot_path(root).parent.iterdir()} == files
    assert await store.get_session(SID) == ChatSession.from_parts(h, items)
    assert (await store.list_sessions()).sessions == [h]


# -- creation limits --------------------------------------------------------------------------


CREATION_LOCK_HOLDER = """
import sys
from pathlib import Path
from chatruntime.stores._file_locks import CREATE, lock_file_for

locks = lock_file_for(Path(sys.argv[1]) / "sessions.lock")
locks.acquire(CREATE)
print("holding", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def creation_lock_holder(root: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the creation lock exclusively, as one checking limits does."""
    root.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", CREATION_LOCK_HOLDER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        assert process.stdout.readline() == "holding\n"
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()
        process.stdin.close()


async def test_creations_wait_for_a_creation_checking_limits_in_another_process(
    store: FileStore, creation_lock_holder: subprocess.Popen[str]
) -> None:
    created: list[str] = []

    async def create() -> None:
        h = header(agent_id=AID)
        await store.write_session(h, [], expected_revision=None)
        created.append(h.id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(create)
        await anyio.sleep(0.3)
        assert created == []  # its count must not change under the other process
        assert creation_lock_holder.stdin is not None
        creation_lock_holder.stdin.write("done\n")
        creation_lock_holder.stdin.flush()
    assert len(created) == 1


KILLED_BEFORE_ITS_INDEX_ROW = f"""
import os, signal, sys, anyio
sys.path.insert(0, sys.argv[2])
from chatruntime.stores import FileStore, _file_index
from support.factories import header

async def main() -> None:
    store = FileStore(sys.argv[1])
    await store.initialize()
    _file_index.SessionIndex.finish = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    await store.write_session(header(agent_id="{AID}"), [], expected_revision=None)

anyio.run(main)
"""


async def test_a_session_whose_writer_died_before_its_index_row_counts_towards_limits(
    root: Path,
) -> None:
    store = FileStore(root)
    await store.initialize()  # open already: the count must settle what died meanwhile
    process = await anyio.run_process(
        [sys.executable, "-c", KILLED_BEFORE_ITS_INDEX_ROW, str(root), str(TESTS)], check=False
    )
    assert process.returncode == -signal.SIGKILL
    [snapshot] = os.listdir(root / "sessions" / AID)  # created, never indexed

    with pytest.raises(LimitExceededError):
        await store.write_session(
            header(agent_id=AID),
            [],
            expected_revision=None,
            limits=CreateLimits(now=T0, max_sessions=1),
        )
    assert os.listdir(root / "sessions" / AID) == [snapshot]
    assert await store.count_sessions() == 1
    await store.close()


# -- the expiry index -----------------------------------------------------------------------


async def test_expiry_is_rebuilt_from_the_files(store: FileStore, root: Path) -> None:
    soon, later, never = (
        header(agent_id=AID, expires_at=T0 + 1),
        header(agent_id=AID, expires_at=T0 + 2, user_id="alice"),
        header(agent_id=AID),
    )
    for h in (soon, later, never):
        await store.write_session(h, [], expected_revision=None)
    await store.write_session(bumped(soon, expires_at=T0 + 3), [], expected_revision=0)
    await store.close()
    (root / "index.sqlite3").unlink()

    rebuilt = FileStore(root)
    assert await rebuilt.expired_sessions(T0 + 10) == [later.id, soon.id]
    assert await rebuilt.count_sessions(live_at=T0 + 2) == 2
    assert await rebuilt.count_sessions(user_id="alice", live_at=T0 + 1) == 1
    await rebuilt.close()


async def test_an_index_of_the_version_before_expiry_is_rebuilt(
    store: FileStore, root: Path
) -> None:
    h = header(agent_id=AID, expires_at=T0 + 1)
    await store.write_session(h, [], expected_revision=None)
    await store.close()
    with sqlite3.connect(root / "index.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 2")
    conn.close()

    reopened = FileStore(root)
    assert await reopened.expired_sessions(T0 + 1) == [h.id]
    with sqlite3.connect(root / "index.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()
    await reopened.close()
