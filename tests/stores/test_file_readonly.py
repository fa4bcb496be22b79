"""A ``FileStore`` on a folder it may not write (issue #8): opened with ``read_only=True``, or
found read-only because its lock file cannot be created (``EACCES``, ``EROFS``), it reads,
lists and counts as usual, changes nothing on disk, and answers every change with a
``StorageError`` that says why.

The tests run as root, whom permissions do not stop: a read-only file system is simulated
where the store meets it, at the operating system's answer to opening ``sessions.lock``.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from chatruntime.models import ChatSession, Checkpoint, StorageError
from chatruntime.stores import FileStore
from support.factories import T0, agent_spec, bumped, header, turn_items

pytestmark = pytest.mark.anyio

AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


async def fill(root: Path) -> tuple[list[ChatSession], Checkpoint]:
    """Two sessions (one with a journal left unfolded), an agent and a checkpoint."""
    writer = FileStore(root)
    await writer.save_agent(agent_spec(id=AID))
    first = header(agent_id=AID, user_id="alice", expires_at=T0 + 5)
    second = header(agent_id=AID, user_id="bob")
    await writer.write_session(first, turn_items(1), expected_revision=None)
    await writer.write_session(second, turn_items(2), expected_revision=None)
    checkpoint = Checkpoint(
        id="6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
        session_id=first.id,
        created_at=T0,
        header=first,
        item_count=4,
        shared_count=4,
    )
    await writer.save_checkpoint(checkpoint)
    await writer.close()
    reopened = FileStore(root)
    await reopened.write_session(bumped(first), turn_items(3), expected_revision=0)
    await reopened.close()  # folded: the .json files are whole
    sessions = [
        ChatSession.from_parts(bumped(first), []),
        ChatSession.from_parts(second, []),
    ]
    return sessions, checkpoint


def files_of(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` with its bytes and mtime: what a read-only store must keep."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


async def check_reads(
    store: FileStore, sessions: list[ChatSession], checkpoint: Checkpoint
) -> None:
    first, second = sessions
    loaded = await store.get_session(first.id)
    assert loaded is not None
    assert loaded.header() == first.header()
    assert [item.text for item in loaded.messages()] == [
        "question 1",
        "answer 1",
        "question 3",
        "answer 3",
    ]
    tail = await store.get_session(second.id, last=1)
    assert tail is not None and [item.text for item in tail.messages()] == ["answer 2"]
    assert await store.get_revision(first.id) == 1
    page = await store.list_sessions()
    assert sorted(h.id for h in page.sessions) == sorted([first.id, second.id])
    assert [h.id for h in (await store.list_sessions(user_id="alice")).sessions] == [first.id]
    assert await store.count_sessions() == 2
    assert await store.count_sessions(user_id="bob") == 1
    assert await store.count_sessions(live_at=T0 + 5) == 1
    assert await store.expired_sessions(T0 + 5) == [first.id]
    assert await store.list_checkpoints(first.id) == [checkpoint]
    assert await store.get_checkpoint(first.id, checkpoint.id) == checkpoint
    assert [spec.id for spec in await store.list_agents()] == [AID]
    assert (await store.get_agent(AID)) is not None
    assert [found.id async for found in store.scan_sessions()] == sorted([first.id, second.id])


def changes(
    store: FileStore, sessions: list[ChatSession], checkpoint: Checkpoint
) -> dict[str, Callable[[], Awaitable[Any]]]:
    first = sessions[0]
    later = bumped(first.header())

    async def lease() -> None:
        async with store.lease(first.id):
            pass

    return {
        f"write session {first.id}": lambda: store.write_session(
            later, turn_items(4), expected_revision=1
        ),
        f"write session {first.id} ": lambda: store.write_session(
            later, [], expected_revision=1, keep=0
        ),
        f"delete session {first.id}": lambda: store.delete_session(first.id),
        f"save agent {AID}": lambda: store.save_agent(agent_spec(id=AID, name="Renamed")),
        f"delete agent {AID}": lambda: store.delete_agent(AID),
        f"save a checkpoint of session {first.id}": lambda: store.save_checkpoint(checkpoint),
        f"delete a checkpoint of session {first.id}": lambda: store.delete_checkpoint(
            first.id, checkpoint.id
        ),
        f"clear the checkpoints of session {first.id}": lambda: store.clear_checkpoints(first.id),
        f"take the lease of session {first.id}": lease,
    }


async def check_refusals(
    store: FileStore, root: Path, sessions: list[ChatSession], checkpoint: Checkpoint, why: str
) -> None:
    for action, change in changes(store, sessions, checkpoint).items():
        with pytest.raises(StorageError) as raised:
            await change()
        assert raised.value.message == (
            f"cannot {action.strip()}: the file store {root} is open read-only ({why})"
        )
        assert raised.value.details == {"path": str(root), "reason": why}


async def test_a_store_opened_read_only_reads_lists_and_counts(root: Path) -> None:
    sessions, checkpoint = await fill(root)
    before = files_of(root)

    store = FileStore(root, read_only=True)
    await store.initialize()
    assert store.read_only == "it was opened with read_only=True"
    await check_reads(store, sessions, checkpoint)
    await store.close()
    assert files_of(root) == before


async def test_a_store_opened_read_only_refuses_every_change_and_changes_nothing(
    root: Path,
) -> None:
    sessions, checkpoint = await fill(root)
    before = files_of(root)

    store = FileStore(root, read_only=True)
    await check_refusals(store, root, sessions, checkpoint, "it was opened with read_only=True")
    await check_reads(store, sessions, checkpoint)
    await store.close()
    assert files_of(root) == before


async def test_a_read_only_store_needs_neither_lock_file_nor_index(root: Path) -> None:
    # As a copy of the sessions alone (a backup, a read-only mount of them) would be.
    sessions, checkpoint = await fill(root)
    for name in ("sessions.lock", "index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
        (root / name).unlink(missing_ok=True)
    before = files_of(root)

    store = FileStore(root, read_only=True)
    await check_reads(store, sessions, checkpoint)
    await store.close()
    assert files_of(root) == before
    assert sorted(os.listdir(root)) == ["agents", "sessions"]


async def test_a_read_only_store_on_a_missing_folder_is_empty_and_creates_nothing(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "absent", read_only=True)
    await store.initialize()
    assert (await store.list_sessions()).sessions == []
    assert await store.count_sessions() == 0
    assert await store.get_session("0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f") is None
    await store.close()
    assert os.listdir(tmp_path) == []


@pytest.fixture(params=[errno.EACCES, errno.EROFS], ids=["EACCES", "EROFS"])
def lock_file_denied(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, root: Path
) -> str:
    """``root``'s ``sessions.lock`` cannot be opened for writing, as on a folder of another
    user or a read-only file system; the reason the store then gives (its error's message)."""
    code = request.param
    real_open = os.open
    denied = os.path.realpath(root / "sessions.lock")

    def denying_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path) == denied and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying_open)
    return f"cannot open lock file {denied}: {os.strerror(code)}"


async def test_a_folder_whose_lock_file_cannot_be_written_is_opened_read_only(
    tmp_path: Path, root: Path, lock_file_denied: str
) -> None:
    sessions, checkpoint = await fill_elsewhere(tmp_path, root)
    before = files_of(root)

    store = FileStore(root)
    await store.initialize()
    assert store.read_only == lock_file_denied
    await check_reads(store, sessions, checkpoint)
    await check_refusals(store, root, sessions, checkpoint, lock_file_denied)
    await store.close()
    assert files_of(root) == before


async def test_read_only_false_fails_where_the_lock_file_cannot_be_written(
    tmp_path: Path, root: Path, lock_file_denied: str
) -> None:
    await fill_elsewhere(tmp_path, root)
    store = FileStore(root, read_only=False)
    with pytest.raises(StorageError) as raised:
        await store.initialize()
    assert raised.value.message == lock_file_denied
    assert store.read_only is None


async def fill_elsewhere(tmp_path: Path, root: Path) -> tuple[list[ChatSession], Checkpoint]:
    """:func:`fill` a folder this process may write, then copy it to ``root``: a store of
    this process keeps its lock file open once it has opened it, so the folder it wrote
    could never show a denied lock file to it."""
    source = tmp_path / "written"
    filled = await fill(source)
    shutil.copytree(source, root)
    return filled
