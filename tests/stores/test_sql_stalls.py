"""A PostgreSQL server that stops answering holds a session write for ``commit_timeout`` at
most, and the error says whether the write may have been stored.

Each test runs a private server and stalls it with ``SIGSTOP`` (the postmaster and the
backends it started, so the backend serving the write stalls too) at one moment of a
session write, measures how long the write takes to fail, then lets the server go on with
``SIGCONT`` (in a ``finally``: a stopped server never outlives its test) and reads what was
stored. The moment is chosen by a SQLAlchemy event: before the first statement, or as the
``COMMIT`` is about to be sent.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from chatruntime.models import ErrorCode, OutcomeUnknownError, StorageError
from chatruntime.stores import SqlStore
from support.factories import bumped, header, turn_items
from support.services import RunningServer, start_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.services]

COMMIT_TIMEOUT = 1.0
MARGIN = 1.0
"""How much longer than ``commit_timeout`` a stalled write may take to fail."""


@pytest.fixture
def server() -> Iterator[RunningServer]:
    """A private PostgreSQL server, so stalling it disturbs no other test."""
    started = start_postgres()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def store(server: RunningServer) -> AsyncIterator[SqlStore]:
    opened = SqlStore(server.url, commit_timeout=COMMIT_TIMEOUT)
    await opened.initialize()
    try:
        yield opened
    finally:
        await opened.close()


def server_processes(pid: int) -> list[int]:
    """The server's process and every process it started, parents first."""
    found = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            kids = [int(kid) for kid in children.read().split()]
    except FileNotFoundError:
        kids = []
    for kid in kids:
        found += server_processes(kid)
    return found


class Staller:
    """Stops the server's processes when a chosen engine event fires, once."""

    def __init__(self, server: RunningServer) -> None:
        self._server = server
        self.stopped: list[int] = []

    def stop(self, *_: Any, **__: Any) -> None:
        if not self.stopped:
            self.stopped = server_processes(self._server.pid)
            _signal(self.stopped, signal.SIGSTOP)

    def resume(self) -> None:
        stopped, self.stopped = self.stopped, []
        _signal(stopped, signal.SIGCONT)


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@contextmanager
def stalled_at(store: SqlStore, server: RunningServer, moment: str) -> Iterator[Staller]:
    """Stall the server at the first ``moment`` event (``before_cursor_execute``, ``commit``)
    of the store's engine within the block; the server always runs again after it."""
    assert store.engine is not None
    staller = Staller(server)
    event.listen(store.engine.sync_engine, moment, staller.stop)
    try:
        yield staller
    finally:
        event.remove(store.engine.sync_engine, moment, staller.stop)
        staller.resume()


async def test_a_server_stalled_during_the_commit_gives_outcome_unknown_within_the_timeout(
    store: SqlStore, server: RunningServer
) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    with stalled_at(store, server, "commit") as staller:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknownError) as caught:
            await store.write_session(bumped(h), turn_items(1), expected_revision=0)
        took = time.monotonic() - started
        assert staller.stopped  # the write did reach its COMMIT
    assert COMMIT_TIMEOUT <= took < COMMIT_TIMEOUT + MARGIN
    assert caught.value.code is ErrorCode.OUTCOME_UNKNOWN
    assert caught.value.message.endswith(
        f"failed while writing session {h.id}: no answer to the commit within 1s; the write "
        "may or may not be stored: read the session again, or retry with the same "
        "idempotency key"
    )
    # Unknown indeed: the server had the COMMIT and carries it out once it runs again.
    await anyio.sleep(0.5)
    assert await store.get_revision(h.id) == 1


async def test_a_server_stalled_before_the_commit_gives_storage_error_and_stores_nothing(
    store: SqlStore, server: RunningServer
) -> None:
    h = header()
    await store.write_session(h, [], expected_revision=None)
    with stalled_at(store, server, "before_cursor_execute"):
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            await store.write_session(bumped(h), turn_items(1), expected_revision=0)
        took = time.monotonic() - started
    assert COMMIT_TIMEOUT <= took < COMMIT_TIMEOUT + MARGIN
    assert type(caught.value) is StorageError
    assert caught.value.message.endswith(
        f"failed while writing session {h.id}: no answer within 1s (commit_timeout); "
        "nothing was written"
    )
    await anyio.sleep(0.5)
    assert await store.get_revision(h.id) == 0
    stored = await store.get_session(h.id)
    assert stored is not None
    assert stored.history == []


async def test_a_connection_that_breaks_during_the_commit_gives_outcome_unknown(
    store: SqlStore,
) -> None:
    assert store.engine is not None
    h = header()
    await store.write_session(h, [], expected_revision=None)

    def cut(connection: Any) -> None:
        # The socket goes as the COMMIT is about to be sent.
        connection.connection.dbapi_connection.driver_connection._transport.abort()

    event.listen(store.engine.sync_engine, "commit", cut)
    try:
        with pytest.raises(OutcomeUnknownError) as caught:
            await store.write_session(bumped(h), turn_items(1), expected_revision=0)
    finally:
        event.remove(store.engine.sync_engine, "commit", cut)
    assert "the connection broke during the commit" in caught.value.message
    # The store goes on with a fresh connection.
    assert await store.get_revision(h.id) == 0
    await store.write_session(bumped(h), turn_items(1), expected_revision=0)
    assert await store.get_revision(h.id) == 1
