"""``migrate`` (and ``--sql`` for a database administrator), and the listing commands."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import anyio
import pytest

from admin.data import populate, sample_session, session_id
from chatruntime.admin import latest_schema_version, migration_sql
from chatruntime.cli._admin import main
from chatruntime.stores import FileStore, SqlStore

LATEST = latest_schema_version()


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_the_sql_printed_for_an_empty_database_makes_a_store_that_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "chat.db"
    assert main(["migrate", "--store", _sqlite_url(database), "--sql"]) == 0
    script = capsys.readouterr().out
    assert script.startswith(f"-- chatruntime schema version 0 -> {LATEST}\n")
    assert not database.exists()  # printing connects to nothing and creates nothing

    with sqlite3.connect(database) as connection:
        connection.executescript(script)

    assert main(["migrate", "--store", _sqlite_url(database)]) == 0
    assert capsys.readouterr().out == f"schema up to date (version {LATEST})\n"

    async def use() -> None:
        store = SqlStore(_sqlite_url(database))
        await store.initialize()
        try:
            [agent] = await populate(store, 1, agents=1)
            assert await store.get_session(session_id(0)) == sample_session(0, agent)
        finally:
            await store.close()

    anyio.run(use)


def test_migrate_upgrades_an_empty_database_then_finds_it_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _sqlite_url(tmp_path / "chat.db")
    assert main(["migrate", "--store", url]) == 0
    assert main(["migrate", "--store", url]) == 0
    assert main(["migrate", "--store", url, "--sql"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"schema upgraded from version 0 to {LATEST}",
        f"schema up to date (version {LATEST})",
        f"-- the schema is up to date (version {LATEST}): nothing to run",
    ]


def test_the_sql_from_a_version_holds_only_the_later_migrations() -> None:
    whole = migration_sql("postgresql", from_version=0)
    last = migration_sql("postgresql", from_version=LATEST - 1)
    assert last[-1] == (
        f"UPDATE chatruntime_meta SET value='{LATEST}' WHERE chatruntime_meta.key = "
        "'schema_version'"
    )
    assert last[:-1] == whole[-len(last) : -1]
    assert whole[0].startswith("CREATE TABLE chatruntime_meta (")


@pytest.mark.services
def test_the_postgresql_sql_makes_a_store_that_works(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    assert main(["migrate", "--store", postgres_url, "--sql", "--table-prefix", prefix]) == 0
    script = capsys.readouterr().out
    assert f"CREATE TABLE {prefix}sessions (" in script

    async def apply_and_use() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(postgres_url)
        try:
            async with engine.begin() as connection:
                raw = await connection.get_raw_connection()
                await raw.driver_connection.execute(script)  # type: ignore[union-attr]
            store = SqlStore(postgres_url, table_prefix=prefix)
            await store.initialize()
            try:
                [agent] = await populate(store, 1, agents=1)
                assert await store.get_session(session_id(0)) == sample_session(0, agent)
            finally:
                await store.close()
        finally:
            async with engine.begin() as connection:
                for table in ("checkpoints", "history_items", "session_leases", "sessions",
                              "agents", "meta"):  # fmt: skip
                    await connection.exec_driver_sql(f"DROP TABLE IF EXISTS {prefix}{table}")
            await engine.dispose()

    anyio.run(apply_and_use)
    assert main(["migrate", "--store", postgres_url, "--sql", "--from-version", "0"]) == 0


@pytest.mark.parametrize("url", ["memory://", "file://data", "redis://127.0.0.1:1/0"])
def test_sql_is_only_for_sql_stores(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--store", url, "--sql"]) == 2
    assert capsys.readouterr().err.startswith("chatruntime admin migrate: --sql prints the SQL")


def _filled(tmp_path: Path) -> str:
    async def fill() -> None:
        store = FileStore(tmp_path / "files")
        await store.initialize()
        try:
            await populate(store, 12)
        finally:
            await store.close()

    anyio.run(fill)
    return f"file://{tmp_path / 'files'}"


def test_ls_lists_a_page_filtered_newest_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _filled(tmp_path)
    # Sessions 1, 6 and 11 belong to user-1 (n % 5 == 1, n % 4 != 0); 11 is the newest.
    assert main(["ls", "--store", url, "--user", "user-1", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "MESSAGES", "LAST", "ACTIVITY", "(UTC)", "AGENT", "USER", "NAME",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:3]] == [session_id(11), session_id(6)]
    assert lines[1].split()[1:3] == ["completed", "2"]
    assert lines[3] == "(more than 2: --limit N shows more)"
    assert len(lines) == 4

    assert main(["ls", "--store", url, "--status", "paused", "--user", "user-2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Paused: n % 3 == 1; user-2: n % 5 == 2 and n % 4 != 0 (7 only).
    assert [line.split()[0] for line in lines[1:]] == [session_id(7)]


def test_show_renders_the_header_and_the_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _filled(tmp_path)
    assert main(["show", "--store", url, session_id(5)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"session:       {session_id(5)}"
    assert lines[1] == "name:          Session 5 é"
    assert lines[2].startswith("agent:         Agent 1 (")
    assert lines[3:5] == ["user:          user-0", "status:        completed"]
    assert lines[-5:] == [
        "history (4 items):",
        "  you: question 5",
        '    [tool call] lookup {"n": 5}',
        "    [tool result] result 5",
        "  assistant: answer 5",
    ]


def test_show_of_an_unknown_session_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _filled(tmp_path)
    assert main(["show", "--store", url, session_id(99)]) == 1
    assert capsys.readouterr().err == (
        f"chatruntime admin show: no session {session_id(99)} in the store\n"
    )


def test_export_writes_the_file_whole_and_import_reads_it_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _filled(tmp_path)
    out = tmp_path / "backup.jsonl"
    assert main(["export", "--store", url, "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().err == (f"exported 2 agents, 12 sessions, 0 checkpoints to {out}\n")
    assert not Path(f"{out}.partial").exists()
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1 + 2 + 12

    target = _sqlite_url(tmp_path / "chat.db")
    assert main(["import", "--store", target, str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("read 15 lines: 12 sessions imported, ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ls"], "the following arguments are required: --store"),
        (["ls", "--store", "mongodb://x"], "bad store URL mongodb://x: unsupported store URL"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["ls", "--store", "memory://", "--limit", "0"], "must be 1 or more, not '0'"),
    ],
)
def test_bad_usage_exits_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
