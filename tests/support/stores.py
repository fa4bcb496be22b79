"""The registry of store kinds the tests know: how to build a fresh, empty store of each, and
how to damage a session in it.

Adding a store to the tests means one row in :data:`STORE_KINDS`; suites pick their kinds
with :func:`store_params` (every kind by default) so the rows' marks come along.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatruntime.stores import MemoryStore, SessionStore

Build = Callable[[Path, pytest.FixtureRequest, AsyncExitStack], Awaitable[SessionStore]]
"""Builds a store (not yet initialized) in ``tmp_path``; ``request`` gives the service
fixtures, the exit stack takes what must be cleaned up after the store is closed."""

Damage = Callable[[Any, str], Awaitable[None]]
"""Makes the stored session of an id unreadable, as a disk fault or a foreign writer would:
every store then answers ``CorruptDataError`` for it and reports it as a ``CorruptRecord``."""


@dataclass(frozen=True)
class StoreKind:
    """One kind of store as the tests build it.

    Attributes:
        name: The test id (``memory``, ``file``...).
        build: How a fresh, empty store of this kind is made.
        needs_services: It talks to the Redis or PostgreSQL server the test setup starts
            (such tests carry the ``services`` mark).
        damage: How to make one of its sessions unreadable; ``None`` for a store that cannot
            hold a damaged record (it keeps validated models, not data).
    """

    name: str
    build: Build
    needs_services: bool = False
    damage: Damage | None = None

    def param(self) -> Any:
        """This kind as a ``pytest.param`` of its name, with its marks."""
        marks = [pytest.mark.services] if self.needs_services else []
        return pytest.param(self.name, marks=marks, id=self.name)


# -- memory ---------------------------------------------------------------------------------


async def _build_memory(
    tmp_path: Path, request: pytest.FixtureRequest, cleanup: AsyncExitStack
) -> SessionStore:
    return MemoryStore()


# -- file -----------------------------------------------------------------------------------


async def _build_file(
    tmp_path: Path, request: pytest.FixtureRequest, cleanup: AsyncExitStack
) -> SessionStore:
    from chatruntime.stores import FileStore

    return FileStore(tmp_path / "store")


async def _damage_file(store: Any, session_id: str) -> None:
    # The session's snapshot, sessions/<agentId>/<sessionId>.json, no longer parses.
    root = anyio.Path(store.root)
    [snapshot] = [path async for path in root.glob(f"sessions/*/{session_id}.json")]
    await snapshot.write_bytes(b"{not json")


# -- SQL --------------------------------------------------------------------------------------


async def _build_sqlite(
    tmp_path: Path, request: pytest.FixtureRequest, cleanup: AsyncExitStack
) -> SessionStore:
    from chatruntime.stores import SqlStore

    return SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")


async def _build_postgres(
    tmp_path: Path, request: pytest.FixtureRequest, cleanup: AsyncExitStack
) -> SessionStore:
    from chatruntime.stores import SqlStore

    url = request.getfixturevalue("postgres_url")
    schema = await cleanup.enter_async_context(postgres_schema(url))
    return SqlStore(url, engine_kwargs=postgres_search_path(schema))


async def _damage_sql(store: Any, session_id: str) -> None:
    # A status no chatruntime writes: the row no longer validates as a session.
    import sqlalchemy as sa

    statement = f"UPDATE {store.table_prefix}sessions SET status = 'archived' WHERE id = :id"
    async with store.engine.begin() as conn:
        await conn.execute(sa.text(statement), {"id": session_id})


# -- Redis ------------------------------------------------------------------------------------


async def _build_redis(
    tmp_path: Path, request: pytest.FixtureRequest, cleanup: AsyncExitStack
) -> SessionStore:
    from chatruntime.stores import RedisStore

    # One shared server for the session; a fresh key prefix gives each test empty data.
    return RedisStore(request.getfixturevalue("redis_url"), key_prefix=f"test-{uuid.uuid4().hex}:")


async def _damage_redis(store: Any, session_id: str) -> None:
    # The header field of the session's hash no longer parses.
    from chatruntime.stores._redis_keys import RedisKeys

    keys = RedisKeys(store.key_prefix)
    # A user's session lives under that user's keys; its owner pointer says which.
    owner = await store.client.get(keys.owner(session_id))
    user_id = owner.decode() if isinstance(owner, bytes) else owner
    await store.client.hset(keys.session(session_id, user_id or None), "header", "{not json")


# -- the registry -----------------------------------------------------------------------------

STORE_KINDS: dict[str, StoreKind] = {
    kind.name: kind
    for kind in (
        StoreKind("memory", _build_memory),
        StoreKind("file", _build_file, damage=_damage_file),
        StoreKind("sqlite", _build_sqlite, damage=_damage_sql),
        StoreKind("postgres", _build_postgres, needs_services=True, damage=_damage_sql),
        StoreKind("redis", _build_redis, needs_services=True, damage=_damage_redis),
    )
}
"""Every store kind the tests know, by name."""


def store_params(*names: str) -> list[Any]:
    """The kinds named (every kind if none is) as ``pytest.param``s with their marks, for
    ``@pytest.fixture(params=...)`` or ``@pytest.mark.parametrize``."""
    return [STORE_KINDS[name].param() for name in names or STORE_KINDS]


def damageable_store_params() -> list[Any]:
    """The kinds that can hold a damaged session, as :func:`store_params` gives them."""
    return [kind.param() for kind in STORE_KINDS.values() if kind.damage is not None]


async def damage_session(kind: str, store: SessionStore, session_id: str) -> None:
    """Make the stored session ``session_id`` unreadable in ``store`` (of ``kind``)."""
    damage = STORE_KINDS[kind].damage
    assert damage is not None, f"a {kind} store cannot hold a damaged session"
    await damage(store, session_id)


@asynccontextmanager
async def open_store_for_test(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SessionStore]:
    """A fresh, empty, initialized store of ``kind``, closed (and its data dropped) after."""
    if kind not in STORE_KINDS:
        pytest.fail(f"store kind {kind!r} is not in the registry (tests/support/stores.py)")
    async with AsyncExitStack() as cleanup:
        store = await STORE_KINDS[kind].build(tmp_path, request, cleanup)
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
