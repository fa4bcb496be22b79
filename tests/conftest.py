"""Test-wide settings: anyio on asyncio, no network, and no blocking calls in library code."""

from __future__ import annotations

import pytest
from agents import set_tracing_disabled

# No test may export traces to the network, whatever a test configures.
set_tracing_disabled(True)

pytest_plugins = ["support.services", "support.blocking", "support.openai_server"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
