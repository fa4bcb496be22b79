"""The reliability suite's trials at tiny sizes: ``make test`` proves ``make reliability``
still runs, and that each trial still finds nothing on today's stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents import set_tracing_disabled

from reliability._servers import Restartable, start_postgres, start_redis

set_tracing_disabled(True)


@pytest.fixture
def restartable_redis() -> Iterator[Restartable]:
    """A private Redis (``appendfsync always``) that a trial may stall, kill and restart."""
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def restartable_postgres() -> Iterator[Restartable]:
    """A private PostgreSQL that a trial may stall, kill and restart."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.close()
