"""The ``store`` fixture: every contract test runs once per store kind of the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatruntime.stores import SessionStore
from support.stores import open_store_for_test, store_params


@pytest.fixture(params=store_params())
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SessionStore]:
    async with open_store_for_test(store_kind, tmp_path, request) as opened:
        yield opened
