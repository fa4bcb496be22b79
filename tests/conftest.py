"""Test-wide settings: anyio on asyncio, no network, and no blocking calls in library code."""

from __future__ import annotations

import pytest

pytest_plugins = ["support.services", "support.blocking"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
