"""Builds a fresh, empty store of each kind for the contract suite and the manager tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from chatruntime.stores import MemoryStore, SessionStore


@asynccontextmanager
async def open_store_for_test(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SessionStore]:
    store: SessionStore
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
    else:
        pytest.fail(f"store kind {kind!r} is not built yet")
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()
