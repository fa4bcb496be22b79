"""``SqlStore.drop_stale_leases`` (``chatruntime admin gc``): the lease rows that ended before
``now`` are deleted, the row of a holder killed with SIGKILL included, and the session is then
leased at once; a lease still live by the database server's clock is never dropped."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from chatruntime.models import BusyError, new_id, now_ms
from chatruntime.stores import SqlStore, _sql
from support.stores import postgres_schema, postgres_search_path

pytestmark = pytest.mark.anyio

HOLDER = """
import json, os, signal, sys, anyio
from chatruntime.stores import SqlStore, _sql

async def main() -> None:
    url, engine_kwargs, session_id, ttl = sys.argv[1:5]
    if url.startswith("sqlite"):
        _sql.FILE_LOCKS_AVAILABLE = False  # lease rows, as where file locks are missing
    store = SqlStore(url, engine_kwargs=json.loads(engine_kwargs) or None)
    await store.initialize()
    async with store.lease(session_id, ttl=float(ttl), timeout=10):
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding it: the row stays

anyio.run(main)
"""


@dataclass
class Database:
    """An empty database whose stores keep leases as rows."""

    url: str
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def store(self) -> SqlStore:
        return SqlStore(self.url, engine_kwargs=self.engine_kwargs or None)

    async def kill_while_holding(self, session_id: str, *, ttl: float) -> None:
        """A fresh interpreter takes the session's lease for ``ttl`` s and is SIGKILLed."""
        command = [
            sys.executable,
            "-c",
            HOLDER,
            self.url,
            json.dumps(self.engine_kwargs),
            session_id,
            str(ttl),
        ]
        process = await anyio.run_process(command, check=False)
        assert process.returncode == -signal.SIGKILL, process.stderr.decode()


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.services), pytest.param("sqlite-rows")]
)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Database]:
    if request.param == "sqlite-rows":
        monkeypatch.setattr(_sql, "FILE_LOCKS_AVAILABLE", False)
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        async with postgres_schema(url) as schema:
            yield Database(url, postgres_search_path(schema))


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlStore]:
    opened = database.store()
    await opened.initialize()
    try:
        yield opened
    finally:
        await opened.close()


async def lease_rows(store: SqlStore) -> list[dict[str, Any]]:
    assert store.engine is not None
    statement = f"SELECT * FROM {store.table_prefix}session_leases ORDER BY session_id"
    async with store.engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(sa.text(statement))]


async def insert_lease(store: SqlStore, session_id: str, token: str, expires_at: int) -> None:
    assert store.engine is not None
    statement = f"INSERT INTO {store.table_prefix}session_leases VALUES (:id, :token, :at)"
    async with store.engine.begin() as conn:
        await conn.execute(sa.text(statement), {"id": session_id, "token": token, "at": expires_at})


async def sleep_past(expires_at: int) -> None:
    await anyio.sleep(max(0, expires_at - now_ms()) / 1000 + 0.05)


async def test_the_row_of_a_killed_holder_is_dropped_and_the_session_leased_at_once(
    database: Database, store: SqlStore
) -> None:
    dead, live = sorted([new_id(), new_id()])
    await database.kill_while_holding(dead, ttl=0.5)
    [left] = await lease_rows(store)
    assert left["session_id"] == dead
    await sleep_past(left["expires_at"])

    async with store.lease(live, ttl=30, timeout=0):
        assert await store.drop_stale_leases(now_ms()) == 1
        assert [row["session_id"] for row in await lease_rows(store)] == [live]

    with anyio.fail_after(5):
        async with store.lease(dead, ttl=30, timeout=0):
            [taken] = await lease_rows(store)
            assert (taken["session_id"], taken["token"] != left["token"]) == (dead, True)
    assert await lease_rows(store) == []


async def test_a_lease_live_by_the_servers_clock_stays_whatever_now_says(
    database: Database, store: SqlStore
) -> None:
    session_id = new_id()
    await database.kill_while_holding(session_id, ttl=60)
    [left] = await lease_rows(store)

    assert await store.drop_stale_leases(now_ms() + 3_600_000) == 0

    assert await lease_rows(store) == [left]
    with pytest.raises(BusyError):
        async with store.lease(session_id, timeout=0):
            pytest.fail("granted while the dead holder's row is still live")


async def test_only_rows_that_ended_before_now_are_dropped(store: SqlStore) -> None:
    ended = now_ms() - 10_000
    first, second = sorted([new_id(), new_id()])
    await insert_lease(store, first, "gone-earlier", ended - 1)
    await insert_lease(store, second, "gone-at-now", ended)

    assert await store.drop_stale_leases(ended) == 1
    assert [row["token"] for row in await lease_rows(store)] == ["gone-at-now"]
    assert await store.drop_stale_leases(ended + 1) == 1
    assert await lease_rows(store) == []


async def test_sqlite_file_leases_leave_no_row_and_none_is_dropped(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    session_id = new_id()
    holder, other = SqlStore(url), SqlStore(url)
    await holder.initialize()
    await other.initialize()
    try:
        async with holder.lease(session_id, timeout=0):
            assert await other.drop_stale_leases(now_ms() + 3_600_000) == 0
            assert await lease_rows(other) == []
            with pytest.raises(BusyError):
                async with other.lease(session_id, timeout=0):
                    pytest.fail("granted while another store holds the file lock")
    finally:
        await other.close()
        await holder.close()
