"""Fails any test in which library code blocks the event loop.

An autouse fixture activates ``blockbuster`` around every test. It wraps the blocking
functions of the standard library (``time.sleep``, ``os.stat``, ``open``, file and socket
reads and writes, ``sqlite3``, lock waits, ...) so that a call made while an event loop
runs in the thread raises ``blockbuster.BlockingError`` when any frame on the stack comes
from ``chatruntime``. Test code and third-party libraries called by test code may block.

A test that blocks on purpose opts out with ``@pytest.mark.allow_blocking``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

SCANNED_PACKAGE = "chatruntime"

# Drivers' own brief blocking that chatruntime cannot avoid without changing what they do:
# asyncpg looks on disk for client certificates (sslmode prefer/require) and ~/.pgpass while
# it opens a connection, once per new pooled connection.
THIRD_PARTY_BLOCKING: list[tuple[str, set[str]]] = [
    ("asyncpg/connect_utils.py", {"_parse_connect_dsn_and_args"}),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_blocking: let library code make blocking calls on the event loop in this test",
    )


@pytest.fixture(autouse=True, name="blockbuster")
def blockbuster_fixture(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """The active ``BlockBuster`` (``None`` in a test marked ``allow_blocking``)."""
    if request.node.get_closest_marker("allow_blocking") is not None:
        yield None
        return
    with blockbuster_ctx(SCANNED_PACKAGE) as detector:
        for function in detector.functions.values():
            for filename, names in THIRD_PARTY_BLOCKING:
                function.can_block_in(filename, names)
        yield detector
