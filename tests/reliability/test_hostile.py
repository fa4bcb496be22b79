"""Hostile input at tiny size: every case a coded Result, nothing changed by failures, the
same answer on every store."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import hostile
from reliability._stores import StoreSpec

pytestmark = pytest.mark.allow_blocking


def test_hostile_cases_get_coded_results_on_every_local_store(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    specs = [
        StoreSpec.fresh("memory", tmp_path / "memory", {}),
        StoreSpec.fresh("file", sandbox / "a" / "b" / "c", {}),
        StoreSpec.fresh("sqlite", tmp_path / "sqlite", {}),
    ]

    rows = hostile.run(specs, sandbox, cases_count=60, seed=5)

    assert [(row.store, row.tried) for row in rows] == [
        ("memory", 60),
        ("file", 60),
        ("sqlite", 60),
        ("all", 60),
    ]
    assert [row.notes for row in rows if not row.clean] == []


@pytest.mark.services
def test_server_stores_take_every_nth_case(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    urls = {"postgres": postgres_url, "redis": redis_url}
    specs = [
        StoreSpec.fresh("memory", tmp_path / "memory", {}),
        StoreSpec.fresh("postgres", tmp_path / "postgres", urls),
        StoreSpec.fresh("redis", tmp_path / "redis", urls),
    ]

    rows = hostile.run(specs, tmp_path, cases_count=40, seed=6, server_every=4)

    assert [(row.store, row.tried) for row in rows] == [
        ("memory", 40),
        ("postgres", 10),
        ("redis", 10),
        ("all", 40),
    ]
    assert [row.notes for row in rows if not row.clean] == []
