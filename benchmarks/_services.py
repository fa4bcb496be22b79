"""The Redis and PostgreSQL servers a benchmark run starts for itself, made durable.

The servers come from the tests' launcher (``tests/support/services.py``): loopback only, a
free port, a throwaway data directory, stopped by pid. The tests run them without
durability for speed; a benchmark compares stores "at equal durability":

- Redis is switched, once it answers, to ``appendonly yes`` with ``appendfsync always``
  (every write is fsynced before the reply) with ``CONFIG SET``;
- PostgreSQL keeps the launcher's ``fsync=off``: it is given on the server's command line,
  which no later setting can override. Our ``SqlStore`` and the SDK's ``SQLAlchemySession``
  share the server, so they are still compared at equal durability, but not at a production
  one; no target of the issue rests on a PostgreSQL commit.

Our stores and the SDK's talk to the same server, so both pay the same for each commit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
_READY_TIMEOUT = 30.0


def _launcher() -> ModuleType:
    # The tests import their helpers as the top-level package `support` (pytest's
    # `pythonpath = ["tests"]`); importing it the same way keeps one copy of the module.
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    from support import services  # type: ignore[import-not-found]

    module: ModuleType = services
    return module


@dataclass(frozen=True)
class Servers:
    """Where the running servers listen (``None``: not started for this run)."""

    redis_url: str | None
    postgres_url: str | None
    pids: dict[str, int]
    """Each server's process id, by name (``redis``, ``postgres``)."""
    problems: dict[str, str]
    """Why a server asked for is not running, by name (binary missing, start failed)."""


@contextmanager
def running_servers(*, redis: bool, postgres: bool) -> Iterator[Servers]:
    """Start the servers asked for, durable, and stop them by pid on leaving, even on error.

    A server that cannot start is reported in ``problems`` rather than raised, so that the
    other stores are still measured.
    """
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        problems: dict[str, str] = {}
        services = _launcher() if redis or postgres else None
        for name, wanted in (("redis", redis), ("postgres", postgres)):
            if not wanted:
                continue
            assert services is not None
            try:
                server = services.start_redis() if name == "redis" else services.start_postgres()
            except services.ServiceError as error:
                problems[name] = str(error)
                continue
            stack.callback(server.stop)
            pids[name] = server.pid
            if name == "redis":
                _make_redis_durable(server.url)
            urls[name] = server.url
        yield Servers(
            redis_url=urls.get("redis"),
            postgres_url=urls.get("postgres"),
            pids=pids,
            problems=problems,
        )


def _make_redis_durable(url: str) -> None:
    from redis import Redis

    client = Redis.from_url(url)
    try:
        client.config_set("appendfsync", "always")
        client.config_set("appendonly", "yes")
        # Turning the AOF on starts a rewrite; until it ends, writes are not yet in the file.
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            info = client.info("persistence")
            done = (
                info.get("aof_enabled") == 1
                and info.get("aof_rewrite_in_progress") == 0
                and info.get("aof_rewrite_scheduled") == 0
            )
            if done:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis did not finish turning its AOF on: {info}")
            time.sleep(0.02)
        settings = client.config_get("append*")
        if settings.get("appendfsync") != "always" or settings.get("appendonly") != "yes":
            raise RuntimeError(f"redis refused the durability settings: {settings}")
    finally:
        client.close()
