"""The SIGKILL trial at tiny size: kills land, a fresh process checks, nothing is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from reliability import kills
from reliability._report import Row
from reliability._servers import Restartable
from reliability._stores import StoreSpec

pytestmark = pytest.mark.allow_blocking

TINY = kills.KillSizes(kills=3, sessions=2, padding=50, max_delay=0.6)


@pytest.fixture(autouse=True)
def only_the_main_thread() -> None:
    """The trial forks, which it refuses while other threads run (a forked child would
    inherit their locks). Earlier tests leave idle AnyIO worker threads behind, which end by
    themselves after 10 idle seconds: wait for them, as the suite's own process never has
    any."""
    deadline = time.monotonic() + 30
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    names = [thread.name for thread in threading.enumerate()]
    assert len(names) == 1, f"threads still running: {names}"


def assert_nothing_lost(row: Row, kills_made: int) -> None:
    assert (row.not_run, row.tried, row.lost, row.corrupt, row.failed) == (
        None,
        kills_made,
        0,
        0,
        0,
    ), row
    assert row.acknowledged > 0


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_killed_writers_lose_no_acknowledged_turn(kind: str, tmp_path: Path) -> None:
    spec = StoreSpec.fresh(kind, tmp_path, {}, **kills.store_options(kind))

    row = kills.run(spec, TINY, seed=1)

    assert_nothing_lost(row, 3)


@pytest.mark.services
def test_killing_the_redis_server_too_loses_no_acknowledged_turn(
    tmp_path: Path, restartable_redis: Restartable
) -> None:
    spec = StoreSpec.fresh("redis", tmp_path, {"redis": restartable_redis.url})
    sizes = kills.KillSizes(kills=2, sessions=2, padding=50, max_delay=0.6, server_kill_every=2)

    row = kills.run(spec, sizes, seed=2, server=restartable_redis)

    assert_nothing_lost(row, 2)
    assert restartable_redis.restarts == 1


@pytest.mark.services
def test_killed_postgres_writers_lose_no_acknowledged_turn(
    tmp_path: Path, postgres_url: str
) -> None:
    spec = StoreSpec.fresh("postgres", tmp_path, {"postgres": postgres_url})

    row = kills.run(spec, kills.KillSizes(kills=2, sessions=2, padding=50), seed=3)

    assert_nothing_lost(row, 2)
