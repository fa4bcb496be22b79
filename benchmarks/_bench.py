"""What every scenario gets: the sizes to run at, where the stores live, and how to open
each of our stores and the SDK session store it is compared with."""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
from agents.memory import Session, SQLiteSession

from chatruntime.stores import SessionStore, open_store

from ._services import Servers

StoreKind = Literal["file", "sqlite", "redis", "postgres"]
STORE_KINDS: tuple[StoreKind, ...] = ("file", "sqlite", "redis", "postgres")

STORE_NAMES: dict[StoreKind, str] = {
    "file": "FileStore",
    "sqlite": "SqlStore(SQLite)",
    "redis": "RedisStore",
    "postgres": "SqlStore(PostgreSQL)",
}

SDK_NAMES: dict[StoreKind, str] = {
    "file": "SQLiteSession",
    "sqlite": "SQLiteSession",
    "redis": "RedisSession",
    "postgres": "SQLAlchemySession(PostgreSQL)",
}
"""The SDK session store each of ours is compared with: the SDK's own for that backend, and
for files (which the SDK has no store for) the SDK's default, SQLite on the same disk."""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs; :data:`FULL` is the issue's, :data:`QUICK` a smoke test's."""

    turn_points: tuple[int, int] = (10, 2000)
    half_window: int = 10
    last_items: int = 50
    read_samples: int = 30
    concurrent_sessions: int = 200
    concurrent_turns: int = 20
    many_sessions: int = 20_000
    items_per_session: int = 20
    probes: int = 3
    overhead_lengths: tuple[int, ...] = (10, 1000, 5000)
    overhead_samples: int = 30
    rewrite_points: tuple[int, int] = (10, 2000)
    service_clients: int = 200
    service_turns: int = 5


FULL = Sizes()
QUICK = Sizes(
    turn_points=(3, 30),
    half_window=2,
    read_samples=3,
    concurrent_sessions=4,
    concurrent_turns=3,
    many_sessions=60,
    probes=1,
    overhead_lengths=(10, 100, 200),
    overhead_samples=3,
    rewrite_points=(3, 30),
    service_clients=4,
    service_turns=2,
)


@dataclass
class Bench:
    """One benchmark run: sizes, chosen store kinds, a scratch folder and the servers."""

    sizes: Sizes
    kinds: tuple[StoreKind, ...]
    scratch: Path
    servers: Servers
    _sdk_clients: list[Any] = field(default_factory=list)

    def store_url(self, kind: StoreKind, name: str) -> str:
        """Where the store of ``kind`` for scenario ``name`` lives."""
        if kind == "file":
            return f"file://{self.scratch / name / 'files'}"
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{self.scratch / name / 'chatruntime.db'}"
        if kind == "redis":
            assert self.servers.redis_url is not None
            return self.servers.redis_url
        assert self.servers.postgres_url is not None
        return self.servers.postgres_url

    def store_options(self, kind: StoreKind, name: str) -> dict[str, Any]:
        """Constructor options keeping scenarios apart on the shared servers."""
        if kind == "redis":
            return {"key_prefix": f"bench-{name}:"}
        if kind == "postgres":
            return {"table_prefix": f"bench_{name}_"}
        return {}

    def open_store(self, kind: StoreKind, name: str) -> SessionStore:
        """Our store of ``kind`` for scenario ``name``; it still needs ``initialize()``."""
        (self.scratch / name).mkdir(parents=True, exist_ok=True)
        return open_store(self.store_url(kind, name), **self.store_options(kind, name))

    def sdk_database(self, name: str) -> Path:
        """The SDK ``SQLiteSession`` file of scenario ``name``, on the scratch disk."""
        (self.scratch / name).mkdir(parents=True, exist_ok=True)
        return self.scratch / name / "sdk.db"

    def sdk_session(self, kind: StoreKind, name: str, session_id: str) -> Session:
        """The SDK session store ``kind`` is compared with, holding session ``session_id``.

        SQLite and Redis sessions are opened as the SDK's documentation shows (a Redis
        session from a URL has its own client: one client shared by hundreds of sessions
        would fail with redis-py's ``MaxConnectionsError``, its pool does not wait);
        PostgreSQL sessions share one engine (one pool), as an application would.
        """
        if kind in ("file", "sqlite"):
            return SQLiteSession(session_id, self.sdk_database(name))
        if kind == "redis":
            from agents.extensions.memory import RedisSession

            assert self.servers.redis_url is not None
            return RedisSession.from_url(
                session_id, url=self.servers.redis_url, key_prefix=f"sdk-{name}"
            )
        from agents.extensions.memory import SQLAlchemySession
        from sqlalchemy.ext.asyncio import create_async_engine

        assert self.servers.postgres_url is not None
        engine = self._shared(
            "postgres", lambda: create_async_engine(self.servers.postgres_url or "")
        )
        return SQLAlchemySession(
            session_id,
            engine=engine,
            create_tables=True,
            sessions_table=f"sdk_{name}_sessions",
            messages_table=f"sdk_{name}_messages",
        )

    def _shared(self, key: str, make: Any) -> Any:
        for known, client in self._sdk_clients:
            if known == key:
                return client
        client = make()
        self._sdk_clients.append((key, client))
        return client

    async def close_sdk_clients(self) -> None:
        """Dispose of the SDK's shared PostgreSQL engine."""
        clients, self._sdk_clients = self._sdk_clients, []
        for _, engine in clients:
            await engine.dispose()


async def close_sdk_session(session: Session) -> None:
    """Close an SDK session whatever its kind (``SQLiteSession.close`` blocks: in a thread)."""
    if isinstance(session, SQLiteSession):
        await anyio.to_thread.run_sync(session.close)
        return
    close = getattr(session, "close", None)
    if close is not None:
        await close()


def progress(message: str) -> None:
    """Say on stderr what the run is doing (long fills would otherwise look like a hang)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def median_ms(samples: Sequence[float]) -> float:
    """The median of samples in seconds, in milliseconds."""
    return ms(statistics.median(samples))


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
