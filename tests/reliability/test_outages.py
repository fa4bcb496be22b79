"""A server stalled or killed mid-turn, at tiny size: coded answers, nothing half-stored."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from reliability import outages
from reliability._servers import Restartable
from reliability._stores import StoreSpec

pytestmark = [pytest.mark.services, pytest.mark.allow_blocking]


def test_redis_stalled_and_killed_mid_turn(tmp_path: Path, restartable_redis: Restartable) -> None:
    spec = StoreSpec.fresh("redis", tmp_path, {"redis": restartable_redis.url})

    rows = anyio.run(outages.run_server, restartable_redis, spec, 1, 11)

    assert [(row.trial, row.tried, row.lost, row.changed) for row in rows] == [
        ("server stall", 1, 0, 0),
        ("server outage", 1, 0, 0),
    ], [row.notes for row in rows]
    assert all(row.worst_overrun is not None for row in rows)
    assert restartable_redis.restarts == 1


def test_postgres_stalled_and_killed_mid_turn(
    tmp_path: Path, restartable_postgres: Restartable
) -> None:
    spec = StoreSpec.fresh("postgres", tmp_path, {"postgres": restartable_postgres.url})

    rows = anyio.run(outages.run_server, restartable_postgres, spec, 1, 12)

    assert [(row.trial, row.tried, row.lost, row.changed) for row in rows] == [
        ("server stall", 1, 0, 0),
        ("server outage", 1, 0, 0),
    ], [row.notes for row in rows]
    assert restartable_postgres.restarts == 1
