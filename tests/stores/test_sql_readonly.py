"""A ``SqlStore`` on a SQLite database it may not write (issue #8): opened with
``read_only=True``, or found read-only because the database's folder is on a read-only file
system, it reads, lists, counts and scans exactly what was stored, creates and changes
nothing, and answers every change with a ``StorageError`` that says why.

We run as root, whom permissions do not stop: the read-only file system is real, a bind
mount of the database's folder remounted read-only (``mount`` needs that privilege; without
it those tests are skipped and say so).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent
from sqlalchemy.ext.asyncio import create_async_engine

from chatruntime import AgentManager, ErrorCode, OfflineModel, SessionManager
from chatruntime.models import Checkpoint, StorageError, StoreVersionError
from chatruntime.stores import SqlStore, _sql_readonly
from support.factories import T0, agent_spec, bumped, header, turn_items

pytestmark = pytest.mark.anyio

AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
FIRST = "0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
SECOND = "1c8e5a4f-2b3c-4d4e-9f0a-1b2c3d4e5f6a"
CHECKPOINT = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
OPTION = "it was opened with read_only=True"
TESTS = Path(__file__).resolve().parents[1]


def url_of(database: Path) -> str:
    return f"sqlite+aiosqlite:///{database}"


# -- what is stored, and what a store reads of it ---------------------------------------------


async def fill(database: Path) -> None:
    """An agent, two sessions (the first expiring, with a checkpoint, then one more turn)."""
    store = SqlStore(url_of(database))
    await store.initialize()
    try:
        await write_records(store)
    finally:
        await store.close()


async def write_records(store: SqlStore) -> None:
    await store.save_agent(agent_spec(id=AID))
    first = header(id=FIRST, agent_id=AID, user_id="alice", expires_at=T0 + 5)
    second = header(id=SECOND, agent_id=AID, user_id="bob", name="Second chat")
    await store.write_session(first, turn_items(1), expected_revision=None)
    await store.write_session(second, turn_items(2), expected_revision=None)
    await store.save_checkpoint(
        Checkpoint(
            id=CHECKPOINT,
            session_id=FIRST,
            created_at=T0,
            header=first,
            item_count=4,
            shared_count=4,
        )
    )
    await store.write_session(bumped(first), turn_items(3), expected_revision=0)


async def everything_read(store: SqlStore) -> dict[str, Any]:
    """What every read of the store answers about the records of :func:`fill`."""
    return {
        "first": await store.get_session(FIRST),
        "second": await store.get_session(SECOND),
        "tail": await store.get_session(SECOND, last=1),
        "revision": await store.get_revision(FIRST),
        "page": await store.list_sessions(),
        "alice": await store.list_sessions(user_id="alice"),
        "count": await store.count_sessions(),
        "bob's": await store.count_sessions(user_id="bob"),
        "live": await store.count_sessions(live_at=T0 + 5),
        "expired": await store.expired_sessions(T0 + 5),
        "checkpoints": await store.list_checkpoints(FIRST),
        "checkpoint": await store.get_checkpoint(FIRST, CHECKPOINT),
        "agents": await store.list_agents(),
        "agent": await store.get_agent(AID),
        "scan": [found async for found in store.scan_sessions()],
    }


@pytest.fixture
async def stored(tmp_path: Path) -> dict[str, Any]:
    """The reads of a writable store over ``tmp_path/db/chat.db`` once :func:`fill` is done;
    what every read-only store must answer."""
    database = tmp_path / "db" / "chat.db"
    await fill(database)
    store = SqlStore(url_of(database))
    await store.initialize()
    try:
        reads = await everything_read(store)
    finally:
        await store.close()
    # Not vacuous: the records are all there.
    assert [item.text for item in reads["first"].messages()] == [
        "question 1",
        "answer 1",
        "question 3",
        "answer 3",
    ]
    assert [item.text for item in reads["tail"].messages()] == ["answer 2"]
    assert (reads["revision"], reads["count"], reads["bob's"], reads["live"]) == (1, 2, 1, 1)
    assert reads["expired"] == [FIRST]
    assert [checkpoint.id for checkpoint in reads["checkpoints"]] == [CHECKPOINT]
    assert len(reads["scan"]) == 2 and [agent.id for agent in reads["agents"]] == [AID]
    return reads


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in ``folder`` with its bytes and mtime."""
    return {
        path.name: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


# -- changes, and how they are refused ---------------------------------------------------------


def changes(store: SqlStore) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every change a store offers, by what the refusal says was refused."""
    first = header(id=FIRST, agent_id=AID, user_id="alice", expires_at=T0 + 5, revision=1)
    new = header(agent_id=AID)
    checkpoint = Checkpoint(
        id="7a2f3e4d-5c6b-4a89-9706-b5c4d3e2f1a0",
        session_id=FIRST,
        created_at=T0 + 1,
        header=first,
        item_count=8,
        shared_count=8,
    )

    async def lease() -> None:
        async with store.lease(FIRST):
            pass

    return {
        f"writing session {FIRST}": lambda: store.write_session(
            bumped(first), turn_items(4), expected_revision=1
        ),
        f"writing session {FIRST} ": lambda: store.write_session(
            bumped(first), [], expected_revision=1, keep=0
        ),
        f"writing session {new.id}": lambda: store.write_session(
            new, turn_items(1), expected_revision=None
        ),
        f"deleting session {FIRST}": lambda: store.delete_session(FIRST),
        f"saving agent {AID}": lambda: store.save_agent(agent_spec(id=AID, name="Renamed")),
        f"deleting agent {AID}": lambda: store.delete_agent(AID),
        f"saving checkpoint {checkpoint.id} of session {FIRST}": lambda: store.save_checkpoint(
            checkpoint
        ),
        f"deleting checkpoint {CHECKPOINT} of session {FIRST}": lambda: store.delete_checkpoint(
            FIRST, CHECKPOINT
        ),
        f"deleting the checkpoints of session {FIRST}": lambda: store.clear_checkpoints(FIRST),
        f"taking the lease of session {FIRST}": lease,
        "dropping stale leases": lambda: store.drop_stale_leases(T0),
    }


async def check_refusals(store: SqlStore, database: Path, why: str) -> None:
    where = f"SQLite database {database}"
    for doing, change in changes(store).items():
        with pytest.raises(StorageError) as raised:
            await change()
        assert type(raised.value) is StorageError
        assert raised.value.message == (
            f"{where} is open read-only ({why}): refused {doing.strip()}"
        )
        assert raised.value.details == {"where": where, "reason": why, "read_only": True}


# -- read_only=True ---------------------------------------------------------------------------


async def test_read_only_true_reads_exactly_what_was_stored(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    database = tmp_path / "db" / "chat.db"
    store = SqlStore(url_of(database), read_only=True)
    assert store.read_only is None  # not open yet
    await store.initialize()
    try:
        assert store.read_only == OPTION
        assert await everything_read(store) == stored
    finally:
        await store.close()
    assert store.read_only is None


async def test_read_only_true_refuses_every_change_and_changes_nothing(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    database = tmp_path / "db" / "chat.db"
    # A reader needs no lock file: none is created.
    (tmp_path / "db" / "chat.db-leases").unlink()
    before = files_of(tmp_path / "db")
    assert list(before) == ["chat.db"]

    store = SqlStore(url_of(database), read_only=True)
    await store.initialize()
    try:
        await check_refusals(store, database, OPTION)
        assert await everything_read(store) == stored
    finally:
        await store.close()
    after = files_of(tmp_path / "db")
    assert after["chat.db"] == before["chat.db"]
    # SQLite's own files of a WAL reader may appear; its -wal holds nothing.
    assert set(after) <= {"chat.db", "chat.db-wal", "chat.db-shm"}
    assert after.get("chat.db-wal", (b"", 0))[0] == b""


async def test_read_only_true_sees_what_a_writer_commits_while_it_is_open(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    database = tmp_path / "db" / "chat.db"
    reader = SqlStore(url_of(database), read_only=True)
    writer = SqlStore(url_of(database))
    await reader.initialize()
    await writer.initialize()
    try:
        await writer.delete_session(SECOND)
        assert await reader.get_session(SECOND) is None
        assert await reader.count_sessions() == 1
    finally:
        await reader.close()
        await writer.close()


async def test_a_uri_url_that_opens_the_file_read_only_makes_the_store_read_only(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    database = tmp_path / "db" / "chat.db"
    store = SqlStore(f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true")
    await store.initialize()
    try:
        assert store.read_only == "its URL opens it with mode=ro"
        assert await everything_read(store) == stored
        with pytest.raises(StorageError, match=r"is open read-only \(its URL opens it with"):
            await store.delete_session(FIRST)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("read_only", "why"), [(True, OPTION), (None, "its URL opens it with mode=ro")]
)
async def test_an_engine_of_your_own_that_opens_the_file_read_only_makes_a_read_only_store(
    tmp_path: Path, stored: dict[str, Any], read_only: bool | None, why: str
) -> None:
    database = tmp_path / "db" / "chat.db"
    engine = create_async_engine(f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true")
    store = SqlStore(engine=engine, read_only=read_only)
    await store.initialize()
    try:
        assert store.read_only == why
        assert await everything_read(store) == stored
        await check_refusals(store, Path(f"file:{database}"), why)
    finally:
        await store.close()
        await engine.dispose()


async def test_read_only_true_without_a_database_file_fails_and_creates_nothing(
    tmp_path: Path,
) -> None:
    database = tmp_path / "absent" / "chat.db"
    store = SqlStore(url_of(database), read_only=True)
    with pytest.raises(StorageError) as raised:
        await store.initialize()
    assert raised.value.message == (
        f"cannot open SQLite database {database} read-only ({OPTION}): "
        f"there is no database file at {database}"
    )
    assert not (tmp_path / "absent").exists()


async def test_a_schema_of_another_version_is_not_migrated_read_only(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    database = tmp_path / "db" / "chat.db"
    where = f"SQLite database {database}"

    def set_version(version: str) -> dict[str, tuple[bytes, int]]:
        with sqlite3.connect(database) as connection:
            connection.execute(
                "UPDATE chatruntime_meta SET value = ? WHERE key = 'schema_version'", (version,)
            )
        connection.close()
        return files_of(tmp_path / "db")

    before = set_version("2")
    store = SqlStore(url_of(database), read_only=True)
    with pytest.raises(StorageError) as older:
        await store.initialize()
    await store.close()
    assert type(older.value) is StorageError
    assert older.value.message == (
        f"{where} has schema version 2, which this chatruntime upgrades to 3 when it opens the "
        "database, but a store open read-only cannot: open it once where it can be written, "
        "or read it with the chatruntime that wrote it"
    )
    assert files_of(tmp_path / "db")["chat.db"] == before["chat.db"]

    set_version("4")
    with pytest.raises(StoreVersionError) as newer:
        await store.initialize()
    await store.close()
    assert newer.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert newer.value.message.startswith("database schema version 4 is newer than")

    other = SqlStore(url_of(database), read_only=True, table_prefix="other_")
    with pytest.raises(StorageError) as empty:
        await other.initialize()
    await other.close()
    assert empty.value.message == (
        f"{where} holds no chatruntime tables (prefix 'other_'), and a store open read-only "
        "cannot create them"
    )


@pytest.mark.parametrize(
    ("url", "read_only", "message"),
    [
        (
            "postgresql+asyncpg://app@localhost/chat",
            True,
            "read_only applies to SQLite only: on PostgreSQL, connect as a user who may only read",
        ),
        (
            "postgresql+asyncpg://app@localhost/chat",
            False,
            "read_only applies to SQLite only: on PostgreSQL, connect as a user who may only read",
        ),
        (
            "sqlite+aiosqlite://",
            True,
            "read_only=True needs a SQLite database file: an in-memory database is private to "
            "its store and starts empty",
        ),
        (
            "sqlite+aiosqlite:///file:/srv/chat.db?mode=ro&uri=true",
            False,
            "read_only=False contradicts the URL: its URL opens it with mode=ro",
        ),
        ("sqlite+aiosqlite:///chat.db", "yes", "read_only must be True, False or None, got 'yes'"),
    ],
)
def test_read_only_is_refused_where_it_cannot_apply(url: str, read_only: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        SqlStore(url, read_only=read_only)
    assert str(raised.value) == message


async def test_read_only_is_refused_for_a_postgresql_engine() -> None:
    engine = create_async_engine("postgresql+asyncpg://app@localhost/chat")
    store = SqlStore(engine=engine, read_only=True)
    with pytest.raises(ValueError, match="read_only applies to SQLite only"):
        await store.initialize()
    await engine.dispose()


async def test_a_database_file_this_process_may_not_write_opens_read_only(
    tmp_path: Path, stored: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root may write any file; another user could not write this one (EACCES).
    database = tmp_path / "db" / "chat.db"
    real_access = os.access

    def access(path: Any, mode: int, **options: Any) -> bool:
        if os.fspath(path) == str(database) and mode & os.W_OK:
            return False
        return real_access(path, mode, **options)

    monkeypatch.setattr(os, "access", access)
    store = SqlStore(url_of(database))
    await store.initialize()
    try:
        why = f"{database} cannot be written by this process"
        assert store.read_only == why
        assert await everything_read(store) == stored
        await check_refusals(store, database, why)
    finally:
        await store.close()


# -- a read-only file system ------------------------------------------------------------------


@contextmanager
def read_only_view(folder: Path) -> Iterator[Path]:
    """``folder`` as seen through a read-only bind mount (unmounted on leaving)."""
    view = Path(tempfile.mkdtemp(prefix="read-only-view-", dir=folder.parent))
    commands = [
        ["mount", "--bind", str(folder), str(view)],
        ["mount", "-o", "remount,bind,ro", str(view)],
    ]
    mounted = False
    try:
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                pytest.skip(
                    "this test needs a read-only bind mount, and this process may not mount "
                    f"(run it as root): {' '.join(command)}: {done.stderr.strip()}"
                )
            mounted = True
        yield view
    finally:
        if mounted and subprocess.run(["umount", str(view)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(view)], check=True)
        view.rmdir()


async def test_a_database_on_a_read_only_file_system_opens_read_only(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    folder = tmp_path / "db"
    before = files_of(folder)
    assert sorted(before) == ["chat.db", "chat.db-leases"]  # the writer left no -wal
    with read_only_view(folder) as view:
        database = view / "chat.db"
        why = f"its folder {view} is on a read-only file system"
        store = SqlStore(url_of(database))
        await store.initialize()
        try:
            assert store.read_only == why
            assert await everything_read(store) == stored
            await check_refusals(store, database, why)
            assert await everything_read(store) == stored
        finally:
            await store.close()
    assert files_of(folder) == before


async def test_read_only_false_on_a_read_only_file_system_fails_to_open(
    tmp_path: Path, stored: dict[str, Any]
) -> None:
    with read_only_view(tmp_path / "db") as view:
        store = SqlStore(url_of(view / "chat.db"), read_only=False)
        with pytest.raises(StorageError) as raised:
            await store.initialize()
        await store.close()
    assert raised.value.message == (
        f"cannot connect to SQLite database {view / 'chat.db'}: unable to open database file"
    )
    assert store.read_only is None


async def test_sqlites_own_refusal_to_write_opens_the_database_read_only(
    tmp_path: Path, stored: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checks that miss what SQLite then meets (say, a security module's refusal).
    monkeypatch.setattr(_sql_readonly, "_unwritable", lambda path: None)
    with read_only_view(tmp_path / "db") as view:
        store = SqlStore(url_of(view / "chat.db"))
        await store.initialize()
        try:
            assert store.read_only == "SQLite cannot write it: unable to open database file"
            assert await everything_read(store) == stored
            with pytest.raises(StorageError, match="is open read-only"):
                await store.delete_session(FIRST)
        finally:
            await store.close()


CRASHING_WRITER = """
import os, signal, sys, anyio
sys.path.insert(0, sys.argv[2])
from chatruntime.stores import SqlStore
from test_sql_readonly import write_records

async def main():
    store = SqlStore(f"sqlite+aiosqlite:///{sys.argv[1]}")
    await store.initialize()
    await write_records(store)
    os.kill(os.getpid(), signal.SIGKILL)  # before close(): the commits stay in the -wal

anyio.run(main)
"""


async def crash_a_writer(database: Path) -> None:
    """Fill ``database`` in a process killed before it closes the store."""
    process = await anyio.run_process(
        [sys.executable, "-c", CRASHING_WRITER, str(database), str(Path(__file__).parent)],
        check=False,
        env={"PYTHONPATH": str(TESTS)},
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    assert (database.parent / "chat.db-wal").stat().st_size > 0


async def test_a_read_only_file_system_shows_the_commits_a_crashed_writer_left_in_its_wal(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "crashed"
    folder.mkdir()
    await crash_a_writer(folder / "chat.db")
    before = files_of(folder)
    shutil.copytree(folder, tmp_path / "copy")
    with read_only_view(folder) as view:
        store = SqlStore(url_of(view / "chat.db"))
        await store.initialize()
        try:
            assert store.read_only == f"its folder {view} is on a read-only file system"
            reads = await everything_read(store)
        finally:
            await store.close()
    assert files_of(folder) == before
    # What a writer, which folds the -wal into the database first, reads of the same files.
    writer = SqlStore(url_of(tmp_path / "copy" / "chat.db"))
    await writer.initialize()
    try:
        assert reads == await everything_read(writer)
    finally:
        await writer.close()
    assert [item.text for item in reads["first"].messages()][-1] == "answer 3"
    assert (reads["count"], len(reads["checkpoints"]), len(reads["agents"])) == (2, 1, 1)


async def test_a_wal_without_its_shm_on_a_read_only_file_system_is_refused(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "crashed"
    folder.mkdir()
    await crash_a_writer(folder / "chat.db")
    (folder / "chat.db-shm").unlink()
    with read_only_view(folder) as view:
        database = view / "chat.db"
        store = SqlStore(url_of(database))
        with pytest.raises(StorageError) as raised:
            await store.initialize()
        await store.close()
    assert raised.value.message == (
        f"cannot open SQLite database {database} read-only: {database}-wal holds commits not "
        f"yet in the database file, and SQLite cannot read them without {database}-shm, which "
        "is missing and cannot be created in a folder that cannot be written; open the "
        "database once where it can be written (or copy the database and its -wal file to "
        "such a place)"
    )


# -- the manager ------------------------------------------------------------------------------


def manager_over(store: SqlStore) -> SessionManager:
    agents = AgentManager(store)
    agents.register(Agent(name="Helper", model=OfflineModel()), agent_id=AID)
    return SessionManager(store, agents)


async def test_a_manager_over_a_read_only_file_system_reads_and_answers_storage_error(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "db"
    writer = manager_over(SqlStore(url_of(folder / "chat.db")))
    (await writer.initialize()).unwrap()
    session_id = (await writer.create_session(AID, "Read me")).unwrap().id
    for text in ("hello", "again"):
        (await writer.send_message(session_id, text)).unwrap()
    written = (await writer.get_session(session_id)).unwrap()
    await writer.close()
    before = files_of(folder)

    with read_only_view(folder) as view:
        store = SqlStore(url_of(view / "chat.db"))
        reader = manager_over(store)
        (await reader.initialize()).unwrap()
        try:
            assert (await reader.get_session(session_id)).unwrap() == written
            page = (await reader.list_sessions()).unwrap()
            assert [found.id for found in page.sessions] == [session_id]
            sent = await reader.send_message(session_id, "more")
            created = await reader.create_session(AID, "New")
            assert (await reader.get_session(session_id)).unwrap() == written
        finally:
            await reader.close()
    assert sent.error is not None and sent.error.code is ErrorCode.STORAGE_ERROR
    assert "is open read-only" in sent.error.message
    assert created.error is not None and created.error.code is ErrorCode.STORAGE_ERROR
    assert "is open read-only" in created.error.message
    assert files_of(folder) == before
