"""A lease the server could not take back does not block its session for its whole ttl.

The holder knows its token: when giving the lease back fails because Redis or PostgreSQL is
away, it gives it back as soon as the server answers again, from a background retry (so
another process waiting for the session gets it) and before its own next lease of that
session. Each test runs a private server, stops it by its pid while a lease is held, and
starts it again on the same port and data; the lease survives the restart (Redis with
``appendfsync always``, PostgreSQL in its table).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from chatruntime.models import new_id
from chatruntime.stores import RedisStore, SessionStore, SqlStore
from support.services import (
    STARTUP_TIMEOUT,
    postgres_bin_dir,
    redis_binary,
    start_postgres,
)

pytestmark = [pytest.mark.anyio, pytest.mark.services]

TTL = 30.0
"""The lease's ttl: what the session would wait without the fix."""
FREED_WITHIN = 3.0
"""How soon after the restart another process must get the session."""


# -- servers that can be stopped and started again --------------------------------------------


class Restartable:
    """A server process on a fixed port and data directory, stopped by its pid and started
    again with the same command."""

    def __init__(
        self,
        argv: list[str],
        ready: Callable[[], bool],
        stop_signal: signal.Signals,
        log: Path,
        user: tuple[int, int] | None = None,
    ) -> None:
        self._argv = argv
        self._ready = ready
        self._stop_signal = stop_signal
        self._log = log
        self._user = user
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self._log, "ab") as log:
            if self._user is None:
                self.process = subprocess.Popen(
                    self._argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            else:
                self.process = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._log.parent,
                    user=self._user[0],
                    group=self._user[1],
                    extra_groups=[],
                )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._ready():
            assert self.process.poll() is None, self._log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, f"{self._argv[0]} did not start again"
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, self._stop_signal)
            process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[tuple[Restartable, str]]:
    """A private Redis that persists every write (so a lease outlives a restart)."""
    port = _free_port()
    data = tmp_path / "redis"
    data.mkdir()

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    server = Restartable(
        [
            redis_binary(),
            *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)),
        ],
        ready,
        signal.SIGTERM,
        data / "redis.log",
    )
    server.start()
    try:
        yield server, f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()


@pytest.fixture
def postgres() -> Iterator[tuple[Restartable, str]]:
    """A private PostgreSQL cluster that can be stopped and started again."""
    first = start_postgres()
    data = first.directory / "data"
    owner = data.stat()
    user = (owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None
    ready_argv = [
        str(postgres_bin_dir() / "pg_isready"),
        *("--host=127.0.0.1", f"--port={first.port}", "--dbname=postgres", "--quiet"),
    ]

    def ready() -> bool:
        return subprocess.run(ready_argv, check=False, capture_output=True).returncode == 0

    server = Restartable(
        [str(arg) for arg in first.process.args],  # type: ignore[union-attr]
        ready,
        signal.SIGINT,
        first.log_path,
        user,
    )
    server.process = first.process
    try:
        yield server, first.url
    finally:
        server.stop()
        first.stop()  # removes the cluster's directory


@asynccontextmanager
async def opened(store: SessionStore) -> AsyncIterator[SessionStore]:
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


def redis_store(url: str) -> RedisStore:
    # Short timeouts: giving back while the server is away fails in about a second.
    return RedisStore(url, key_prefix="outage:", socket_timeout=1, connect_timeout=1)


def postgres_store(url: str) -> SqlStore:
    return SqlStore(url, connect_timeout=1, table_prefix="outage_")


# -- the tests --------------------------------------------------------------------------------


async def another_process_waits(
    server: Restartable, url: str, build: Callable[[str], SessionStore]
) -> float:
    """Hold a lease, stop the server meanwhile, start it again; how long another store (as
    another process would) then waits for the session."""
    session_id = new_id()
    async with opened(build(url)) as holder, opened(build(url)) as other:
        async with holder.lease(session_id, ttl=TTL, timeout=1):
            await anyio.to_thread.run_sync(server.stop)
        await anyio.to_thread.run_sync(server.start)
        started = anyio.current_time()
        async with other.lease(session_id, ttl=TTL, timeout=TTL / 2):
            return anyio.current_time() - started


async def the_holder_takes_it_again(
    server: Restartable, url: str, build: Callable[[str], SessionStore]
) -> None:
    """Hold a lease, stop the server meanwhile, start it again: the same store is granted
    the session at once (``timeout=0``)."""
    session_id = new_id()
    async with opened(build(url)) as holder:
        async with holder.lease(session_id, ttl=TTL, timeout=1):
            await anyio.to_thread.run_sync(server.stop)
        await anyio.to_thread.run_sync(server.start)
        async with holder.lease(session_id, ttl=TTL, timeout=0) as lease:
            assert lease.token


async def test_redis_another_process_gets_the_session_soon_after_the_restart(
    redis: tuple[Restartable, str],
) -> None:
    assert await another_process_waits(*redis, redis_store) < FREED_WITHIN


async def test_redis_the_holder_takes_its_session_again_at_once_after_the_restart(
    redis: tuple[Restartable, str],
) -> None:
    await the_holder_takes_it_again(*redis, redis_store)


async def test_postgres_another_process_gets_the_session_soon_after_the_restart(
    postgres: tuple[Restartable, str],
) -> None:
    assert await another_process_waits(*postgres, postgres_store) < FREED_WITHIN


async def test_postgres_the_holder_takes_its_session_again_at_once_after_the_restart(
    postgres: tuple[Restartable, str],
) -> None:
    await the_holder_takes_it_again(*postgres, postgres_store)
