"""Builds a fresh, empty store of each kind for the contract suite and the manager tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from chatruntime.stores import MemoryStore, SessionStore


@asynccontextmanager
async def open_store_for_test(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SessionStore]:
    store: SessionStore
    cleanup = AsyncExitStack()
    if kind == "memory":
        store = MemoryStore()
    elif kind == "file":
        from chatruntime.stores import FileStore

        store = FileStore(tmp_path / "store")
    elif kind == "redis":
        from chatruntime.stores import RedisStore

        # One shared server for the session; a fresh key prefix gives each test empty data.
        store = RedisStore(
            request.getfixturevalue("redis_url"), key_prefix=f"test-{uuid.uuid4().hex}:"
        )
    elif kind == "sqlite":
        from chatruntime.stores import SqlStore

        store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    elif kind == "postgres":
        from chatruntime.stores import SqlStore

        url = request.getfixturevalue("postgres_url")
        schema = await cleanup.enter_async_context(postgres_schema(url))
        store = SqlStore(url, engine_kwargs=postgres_search_path(schema))
    else:
        pytest.fail(f"store kind {kind!r} is not built yet")
    async with cleanup:
        await store.initialize()
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def postgres_schema(url: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL schema on the shared test server, dropped afterwards."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    schema = f"test_{uuid.uuid4().hex}"
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await engine.dispose()


def postgres_search_path(schema: str) -> dict[str, object]:
    """``engine_kwargs`` that make every connection of a store use ``schema``."""
    return {"connect_args": {"server_settings": {"search_path": schema}}}
