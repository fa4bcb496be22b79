"""``shared_store``: a fresh, empty store of each kind that worker processes can share."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from worker_processes import SharedStore

from support.services import RunningServer

STORE_KINDS = ["file", "sqlite", "postgres", "redis"]


@pytest.fixture(params=STORE_KINDS)
async def shared_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SharedStore]:
    """A fresh, empty store of each kind that several processes can share."""
    kind = request.param
    if kind == "file":
        yield SharedStore(kind, f"file://{tmp_path / 'store'}")
    elif kind == "sqlite":
        yield SharedStore(kind, f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}")
    elif kind == "postgres":
        server: RunningServer = request.getfixturevalue("postgres_server")
        async with fresh_database(server.url) as database_url:
            yield SharedStore(kind, database_url)
    elif kind == "redis":
        # The session's server is shared with other tests; a fresh key prefix is ours alone.
        redis_url: str = request.getfixturevalue("redis_url")
        yield SharedStore(kind, redis_url, {"key_prefix": f"mp-{uuid.uuid4().hex}:"})
    else:
        raise AssertionError(f"unknown store kind {kind!r}")


@asynccontextmanager
async def fresh_database(url: str) -> AsyncIterator[str]:
    """A new, empty database on the PostgreSQL server of ``url``, dropped afterwards.

    The session's server is shared with the contract suite; a database of our own keeps its
    tables (and any other test's leftovers) out of this test's way.
    """
    name = f"mp_{uuid.uuid4().hex}"
    server = _asyncpg_dsn(url)
    await _execute(server, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        await _execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _execute(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` form of a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))
