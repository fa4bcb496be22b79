"""The ``store`` fixture: every contract test runs once per store kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatruntime.stores import SessionStore

STORE_KINDS = ["memory", "file", "sqlite", "postgres", "redis"]


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SessionStore]:
    from support.stores import open_store_for_test

    async with open_store_for_test(store_kind, tmp_path, request) as opened:
        yield opened
