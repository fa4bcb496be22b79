"""One rule for store URLs: a malformed one fails at construction, whatever its scheme.

``open_store(url)`` and the stores' constructors raise ``InvalidInputError`` (field ``url``,
or the query setting at fault) at once, never later at ``initialize()``, and the message
never shows the URL's password.
"""

from __future__ import annotations

import pytest

from chatruntime.models import InvalidInputError
from chatruntime.stores import RedisStore, SqlStore, open_store

PASSWORD = "s3cret-pw"

MALFORMED = [
    pytest.param(f"postgresql+asyncpg://app:{PASSWORD}@host:notaport/chat", "url", id="pg-port"),
    pytest.param(f"postgresql+asyncpg://app:{PASSWORD}@host:99999/chat", "url", id="pg-range"),
    pytest.param(
        f"postgresql+asyncpg://app:{PASSWORD}@host/chat?pool_size=0", "pool_size", id="pg-query"
    ),
    pytest.param("sqlite+aiosqlite:///chat.db?max_overflow=3", "max_overflow", id="sqlite-query"),
    pytest.param(f"redis://:{PASSWORD}@host:notaport/0", "url", id="redis-port"),
    pytest.param(f"rediss://:{PASSWORD}@host/0?max_connections=0", "max_connections", id="rediss"),
    pytest.param(f"mysql://app:{PASSWORD}@host/chat", "url", id="unknown-scheme"),
    pytest.param("file://", "url", id="file-no-path"),
    pytest.param("memory://extra", "url", id="memory-extra"),
]


@pytest.mark.parametrize(("url", "field"), MALFORMED)
def test_open_store_refuses_a_malformed_url_at_once_without_its_password(
    url: str, field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        open_store(url)
    assert caught.value.details["field"] == field
    assert PASSWORD not in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@host:notaport/0",
        f"redis://:{PASSWORD}@host:99999/0",
        "redis://",
    ],
)
def test_redis_store_refuses_a_malformed_url_at_construction(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        RedisStore(url)
    assert caught.value.details == {"field": "url"}
    assert PASSWORD not in caught.value.message


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+asyncpg://app:{PASSWORD}@host:notaport/chat",
        f"postgresql+asyncpg://app:{PASSWORD}@host:99999/chat",
        "not a url",
    ],
)
def test_sql_store_refuses_a_malformed_url_at_construction(url: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SqlStore(url)
    assert caught.value.details == {"field": "url"}
    assert PASSWORD not in caught.value.message
