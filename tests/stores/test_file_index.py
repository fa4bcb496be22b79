"""``FileStore``'s listing index (``index.sqlite3``) and its locks (``sessions.lock``): what
they cost a turn, how the index follows the files, and when it is rebuilt from them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime.models import ChatSession, SessionContext, SessionHeader, new_id
from chatruntime.stores import FileStore, _file_index, _file_io
from support.factories import T0, bumped, header, turn_items

pytestmark = pytest.mark.anyio

AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[FileStore]:
    opened = FileStore(root)
    await opened.initialize()
    yield opened
    await opened.close()


def session_header(n: int, **overrides: object) -> SessionHeader:
    """A header whose last activity orders it: higher ``n`` is listed first."""
    values: dict[str, object] = {
        "agent_id": AID,
        "name": f"Chat {n}",
        "context": SessionContext(last_activity=T0 + n),
    }
    values.update(overrides)
    return header(**values)


async def create(store: FileStore, count: int) -> list[SessionHeader]:
    headers = [session_header(n) for n in range(count)]
    for h in headers:
        await store.write_session(h, turn_items(0), expected_revision=None)
    return headers


async def listed(store: FileStore, **filters: object) -> list[tuple[str, str, int]]:
    page = await store.list_sessions(limit=1000, **filters)  # type: ignore[arg-type]
    return [(h.id, h.name, h.revision) for h in page.sessions]


def rows(root: Path) -> list[tuple[str, str | None, int | None]]:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        return conn.execute("SELECT id, status, revision FROM sessions ORDER BY id").fetchall()


def execute(root: Path, sql: str, *values: object) -> None:
    conn = sqlite3.connect(root / "index.sqlite3")
    with conn:
        conn.execute(sql, values)
    conn.close()


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def remove_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / 'index.sqlite3'}{suffix}").unlink(missing_ok=True)


def expected(headers: list[SessionHeader]) -> list[tuple[str, str, int]]:
    ordered = sorted(headers, key=lambda h: (h.context.last_activity, h.id), reverse=True)
    return [(h.id, h.name, h.revision) for h in ordered]


class FileReads:
    """Counts the bytes ``FileStore`` reads from files with ``pread`` (not SQLite's reads)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        real = _file_io.os.pread

        def spy(fd: int, size: int, offset: int) -> bytes:
            data = real(fd, size, offset)
            self.bytes += len(data)
            return data

        monkeypatch.setattr(_file_io.os, "pread", spy)


# -- listing ------------------------------------------------------------------------------------


async def test_listing_and_counting_read_the_index_not_the_session_files(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = await create(store, 5)
    reads = FileReads(monkeypatch)

    assert await listed(store) == expected(headers)
    assert await store.count_sessions() == 5
    assert reads.bytes == 0


async def test_a_session_written_by_another_store_is_listed_at_once(
    store: FileStore, root: Path
) -> None:
    [h] = await create(store, 1)
    other = FileStore(root)
    h1 = bumped(h, name="Renamed", context=SessionContext(last_activity=T0 + 100))
    await other.write_session(h1, turn_items(1), expected_revision=0)

    assert await listed(store) == [(h.id, "Renamed", 1)]


LISTINGS = [
    # (filters, the index the page walks)
    ({}, "sessions_by_activity"),
    ({"agent_id": AID}, "sessions_by_agent"),
    ({"user_id": "user-1"}, "sessions_by_user"),
    ({"status": "archived"}, "sessions_by_status"),
    ({"agent_id": AID, "status": "archived"}, "sessions_by_agent"),
    ({"user_id": "user-1", "status": "archived"}, "sessions_by_user"),
    ({"agent_id": AID, "user_id": "user-1"}, "sessions_by_user"),
    ({"agent_id": AID, "user_id": "user-1", "status": "archived"}, "sessions_by_user"),
]


def page_sql(filters: dict[str, str], below: tuple[int, str] | None) -> tuple[str, list[object]]:
    return _file_index.page_query(
        agent_id=filters.get("agent_id"),
        user_id=filters.get("user_id"),
        status=filters.get("status"),  # type: ignore[arg-type]
        below=below,
        limit=51,
    )


@pytest.mark.parametrize(("filters", "index"), LISTINGS)
@pytest.mark.parametrize("below", [None, (T0 + 500, "5" * 8 + "-0000-4000-8000-" + "0" * 12)])
async def test_a_listing_page_walks_one_index_from_its_cursor_without_sorting(
    store: FileStore, root: Path, filters: dict[str, str], index: str, below: object
) -> None:
    sql, values = page_sql(filters, below)  # type: ignore[arg-type]
    with sqlite3.connect(root / "index.sqlite3") as conn:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", values)]
    conn.close()

    assert len(plan) == 1, plan
    assert plan[0].startswith(f"SEARCH sessions USING INDEX {index} (") or (
        not filters and below is None and plan[0] == f"SCAN sessions USING INDEX {index}"
    ), plan
    assert ("(last_activity,id)<(?,?)" in plan[0]) == (below is not None), plan


async def test_a_page_deep_in_a_listing_costs_what_the_first_page_costs(
    store: FileStore, root: Path
) -> None:
    """Keyset paging: a page far down 20,000 sessions does the work of the first one."""
    agents = [new_id() for _ in range(4)]
    with sqlite3.connect(root / "index.sqlite3") as conn:
        conn.executemany(
            "INSERT INTO sessions (id, agent_id, user_id, status, last_activity, revision, "
            "header) VALUES (?, ?, ?, 'active', ?, 0, '{}')",
            [
                (new_id(), agents[n % 4], f"user-{n % 10}" if n % 2 else None, T0 + n)
                for n in range(20_000)
            ],
        )
    conn.close()

    def steps(filters: dict[str, str], below: tuple[int, str] | None) -> tuple[int, int]:
        """Rows of the page and SQLite's virtual machine steps to read them."""
        sql, values = page_sql(filters, below)
        counted = [0]

        def count() -> int:
            counted[0] += 1
            return 0

        with sqlite3.connect(root / "index.sqlite3") as conn:
            conn.set_progress_handler(count, 1)
            got = conn.execute(sql, values).fetchall()
        conn.close()
        return len(got), counted[0]

    def position_at(filters: dict[str, str], offset: int) -> tuple[int, str]:
        sql, values = page_sql(filters, None)
        sql = sql.replace("SELECT header", "SELECT last_activity, id")
        with sqlite3.connect(root / "index.sqlite3") as conn:
            found = conn.execute(
                sql.replace("LIMIT ?", "LIMIT 1 OFFSET ?"), [*values[:-1], offset]
            ).fetchone()
        conn.close()
        return int(found[0]), str(found[1])

    for filters in ({}, {"agent_id": agents[1]}, {"user_id": "user-3"}, {"status": "active"}):
        first_rows, first_steps = steps(filters, None)
        for offset in (200, 1500):
            deep_rows, deep_steps = steps(filters, position_at(filters, offset))

            assert (first_rows, deep_rows) == (51, 51)
            assert deep_steps <= 2 * first_steps, (filters, offset, first_steps, deep_steps)


# -- rebuilding ---------------------------------------------------------------------------------


async def test_a_missing_index_is_built_from_the_files(root: Path) -> None:
    first = FileStore(root)
    headers = await create(first, 3)
    await first.close()
    remove_index(root)

    again = FileStore(root)
    assert await listed(again) == expected(headers)
    assert await again.count_sessions() == 3


async def test_an_index_of_another_version_is_rebuilt(root: Path) -> None:
    first = FileStore(root)
    headers = await create(first, 2)
    await first.close()
    execute(root, "DELETE FROM sessions")
    execute(root, "PRAGMA user_version = 99")

    again = FileStore(root)
    assert await listed(again) == expected(headers)
    with sqlite3.connect(root / "index.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (_file_index.INDEX_VERSION,)


async def test_an_unreadable_index_is_replaced(root: Path) -> None:
    first = FileStore(root)
    headers = await create(first, 2)
    await first.close()
    (root / "index.sqlite3").write_bytes(b"not a database, " * 512)

    again = FileStore(root)
    assert await listed(again) == expected(headers)


async def test_an_index_the_machine_stopped_with_is_rebuilt(root: Path) -> None:
    """Left open (no close) by a store of an earlier boot: its last commits may be lost."""
    first = FileStore(root)
    headers = await create(first, 2)
    execute(root, "DELETE FROM sessions WHERE id = ?", headers[0].id)  # a lost commit
    execute(root, "UPDATE meta SET value = 'an earlier boot' WHERE key = 'boot'")

    again = FileStore(root)
    assert await listed(again) == expected(headers)


async def test_opening_does_not_rebuild_an_index_closed_cleanly(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FileStore(root)
    await create(first, 2)
    await first.close()
    execute(root, "UPDATE meta SET value = 'an earlier boot' WHERE key = 'boot'")

    def no_scan(self: object) -> object:
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(_file_index.SessionIndex, "_rebuild", no_scan)
    again = FileStore(root)
    await again.initialize()
    assert await again.count_sessions() == 2


async def test_the_last_store_to_close_marks_the_index_clean(root: Path) -> None:
    first, second = FileStore(root), FileStore(root)
    await first.initialize()
    await second.initialize()

    def clean() -> str:
        with sqlite3.connect(root / "index.sqlite3") as conn:
            return str(conn.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()[0])

    assert clean() == "0"
    await first.close()
    assert clean() == "0"
    await second.close()
    assert clean() == "1"


# -- the index follows the files ----------------------------------------------------------------


async def test_a_stale_row_is_rewritten_when_its_session_is_read(
    store: FileStore, root: Path
) -> None:
    [h] = await create(store, 1)
    h1 = bumped(h, name="Renamed")
    await store.write_session(h1, [], expected_revision=0)
    execute(root, "UPDATE sessions SET revision = 0, header = NULL WHERE id = ?", h.id)
    fresh = FileStore(root)
    assert await listed(fresh) == []

    assert (await fresh.get_session(h.id, last=1)) is not None

    assert await listed(fresh) == [(h.id, "Renamed", 1)]


async def test_a_session_deleted_by_hand_leaves_the_listing_once_read(
    store: FileStore, root: Path
) -> None:
    [h] = await create(store, 1)
    (root / "sessions" / AID / f"{h.id}.json").unlink()
    fresh = FileStore(root)

    assert await fresh.get_session(h.id) is None

    assert await listed(fresh) == []
    assert await fresh.count_sessions() == 0


DYING_WRITER = """
import os, sys, anyio
from chatruntime.models import ChatSession, HISTORY_ADAPTER
from chatruntime.stores import FileStore, _file_index

async def main() -> None:
    store = FileStore(sys.argv[1])
    # The files change, then the process dies before the index hears of it.
    _file_index.SessionIndex.finish = lambda *args: False
    for line in sys.stdin:
        session = ChatSession.model_validate_json(line)
        expected = session.revision - 1 if session.revision else None
        await store.write_session(session, session.history, expected_revision=expected)
    os._exit(0)

anyio.run(main)
"""


def write_and_die(root: Path, *sessions: ChatSession) -> None:
    """Write ``sessions`` (header and new items) from another process that dies before
    writing their index rows, as a process killed at that point would."""
    lines = "".join(session.model_dump_json(by_alias=True) + "\n" for session in sessions)
    done = subprocess.run(
        [sys.executable, "-c", DYING_WRITER, str(root)],
        input=lines,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def pending_entries(root: Path) -> int:
    with sqlite3.connect(root / "index.sqlite3") as conn:
        count = int(conn.execute("SELECT count(*) FROM pending").fetchone()[0])
    conn.close()
    return count


async def test_a_change_whose_writer_died_before_the_index_is_settled_by_the_next_listing(
    store: FileStore, root: Path
) -> None:
    [h] = await create(store, 1)
    h1 = bumped(h, name="Renamed")
    created = session_header(9)
    write_and_die(
        root, ChatSession.from_parts(h1, turn_items(1)), ChatSession.from_parts(created, [])
    )
    assert sorted(row[0] for row in rows(root)) == [h.id]
    assert pending_entries(root) == 3  # this store's for its create, the dead writer's two

    assert await listed(store) == [(created.id, created.name, 0), (h.id, "Renamed", 1)]
    assert pending_entries(root) == 1


async def test_the_entries_of_a_live_writer_are_left_to_it(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session another store keeps changing is listed from its row: no file is read."""
    writer = FileStore(root)
    [h] = await create(writer, 1)
    await writer.write_session(bumped(h), turn_items(1), expected_revision=0)
    assert pending_entries(root) == 1
    reads = FileReads(monkeypatch)

    assert await listed(store) == [(h.id, h.name, 1)]
    assert reads.bytes == 0
    assert pending_entries(root) == 1
    await writer.close()


async def test_turns_after_the_first_commit_the_index_once(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    [h] = await create(store, 1)
    commits: list[int] = []
    real = _file_index.SessionIndex._batched

    def counted(index: _file_index.SessionIndex, apply: Any) -> None:
        commits.append(1)
        real(index, apply)

    monkeypatch.setattr(_file_index.SessionIndex, "_batched", counted)
    for n in range(1, 4):
        await store.write_session(
            h.model_copy(update={"revision": n}), turn_items(n), expected_revision=n - 1
        )

    assert len(commits) == 3


async def test_closing_a_store_removes_its_pending_entries(root: Path) -> None:
    store = FileStore(root)
    headers = await create(store, 3)
    await store.write_session(bumped(headers[0]), turn_items(1), expected_revision=0)
    assert pending_entries(root) == 3

    await store.close()

    assert pending_entries(root) == 0


async def test_a_damaged_session_is_counted_but_not_listed_after_a_rebuild(
    root: Path,
) -> None:
    first = FileStore(root)
    good, damaged = await create(first, 2)
    await first.close()
    (root / "sessions" / AID / f"{damaged.id}.json").write_bytes(b'{"id": "')
    remove_index(root)

    again = FileStore(root)
    assert await again.count_sessions() == 2
    assert await listed(again) == [(good.id, good.name, 0)]


# -- leases and turns ---------------------------------------------------------------------------


async def test_a_lease_carries_the_stored_revision(store: FileStore) -> None:
    [h] = await create(store, 1)
    await store.write_session(bumped(h), [], expected_revision=0)

    async with store.lease(h.id) as lease:
        assert (lease.session_id, lease.revision_known, lease.revision) == (h.id, True, 1)
    async with store.lease(new_id()) as lease:
        assert (lease.revision_known, lease.revision) == (True, None)


async def test_a_write_under_the_lease_gives_it_back_at_once(store: FileStore, root: Path) -> None:
    [h] = await create(store, 1)
    other = FileStore(root)

    async with store.lease(h.id) as lease:
        await store.write_session(bumped(h), [], expected_revision=0, lease=lease)
        assert lease.released is True
        async with other.lease(h.id, timeout=0) as taken:
            assert taken.revision == 1


async def test_another_stores_lease_is_not_given_back_by_a_write(
    store: FileStore, root: Path
) -> None:
    [h] = await create(store, 1)
    other = FileStore(root)

    async with other.lease(h.id) as lease:
        await store.write_session(bumped(h), [], expected_revision=0, lease=lease)
        assert lease.released is False


async def test_a_turn_syncs_one_file_and_creates_none(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [h] = await create(store, 1)
    await store.write_session(bumped(h), turn_items(1), expected_revision=0)  # the journal exists
    files_before = files_under(root)
    synced: list[int] = []
    real_fsync = _file_io.os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(_file_io.os, "fsync", spy)
    async with store.lease(h.id) as lease:
        assert lease.revision == 1
        await store.write_session(
            h.model_copy(update={"revision": 2}), turn_items(2), expected_revision=1, lease=lease
        )

    assert len(synced) == 1
    assert files_under(root) == files_before
    assert (root / "sessions.lock").stat().st_size == 0


async def test_opening_a_store_reads_no_session(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = FileStore(root)
    await create(first, 20)
    await first.close()
    reads = FileReads(monkeypatch)

    again = FileStore(root)
    await again.initialize()

    assert reads.bytes == 0
    assert await again.count_sessions() == 20


async def test_a_session_keeps_listing_after_its_agent_folder_is_searched(
    store: FileStore, root: Path
) -> None:
    """A session's file copied in by hand (unknown to the index) is found by id and listed."""
    [h] = await create(store, 1)
    stray = session_header(5, agent_id=new_id())
    other_root = root.parent / "other"
    other = FileStore(other_root)
    await other.write_session(stray, [], expected_revision=None)
    await other.close()
    (root / "sessions" / stray.agent_id).mkdir()
    os.replace(
        other_root / "sessions" / stray.agent_id / f"{stray.id}.json",
        root / "sessions" / stray.agent_id / f"{stray.id}.json",
    )
    assert await listed(store) == [(h.id, h.name, 0)]

    found = await store.get_session(stray.id)

    assert found == ChatSession.from_parts(stray, [])
    assert await listed(store) == [(stray.id, stray.name, 0), (h.id, h.name, 0)]
