"""``open_store(url)``: the URL's scheme picks the store, the rest configures it."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatruntime.models import InvalidInputError, new_id
from chatruntime.stores import FileStore, MemoryStore, RedisStore, SqlStore, open_store
from support.factories import header

pytestmark = pytest.mark.anyio

SUPPORTED = (
    "supported: memory://, file://, sqlite+aiosqlite://, postgresql+asyncpg://, redis://, rediss://"
)


def test_memory_url_opens_a_memory_store() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


def test_file_url_with_a_relative_path_opens_a_file_store_there() -> None:
    store = open_store("file://chat-data/store")
    assert isinstance(store, FileStore)
    assert store.root.parts[-2:] == ("chat-data", "store")
    assert store.root == FileStore("chat-data/store").root


def test_file_url_with_an_absolute_path_opens_a_file_store_there(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/my%20data")
    assert isinstance(store, FileStore)
    assert store.root == tmp_path / "my data"


async def test_sqlite_url_opens_a_working_sql_store_with_its_options(tmp_path: Path) -> None:
    store = open_store(f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}", table_prefix="app_")
    assert isinstance(store, SqlStore)
    assert store.table_prefix == "app_"
    await store.initialize()
    try:
        h = header()
        await store.write_session(h, [], expected_revision=None)
        assert await store.get_revision(h.id) == 0
    finally:
        await store.close()
    assert (tmp_path / "chat.db").is_file()


def test_postgresql_url_opens_a_sql_store() -> None:
    store = open_store("postgresql+asyncpg://app:secret@db.internal:5432/chat")
    assert isinstance(store, SqlStore)
    assert repr(store) == (
        "SqlStore(\"PostgreSQL at db.internal:5432, database 'chat' as user 'app'\", "
        "table_prefix='chatruntime_')"
    )


@pytest.mark.parametrize("scheme", ["redis", "rediss", "REDIS"])
def test_redis_urls_open_a_redis_store_with_its_options(scheme: str) -> None:
    store = open_store(f"{scheme}://127.0.0.1:6379/0", key_prefix="app:")
    assert isinstance(store, RedisStore)
    assert store.key_prefix == "app:"


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("mysql://app:secret@host/chat", ""),
        ("postgres://app:secret@host/chat", "; did you mean postgresql+asyncpg://?"),
        ("sqlite:///chat.db", "; did you mean sqlite+aiosqlite://?"),
    ],
)
def test_an_unknown_scheme_lists_the_supported_ones(url: str, hint: str) -> None:
    scheme = url.split("://")[0]
    with pytest.raises(InvalidInputError) as caught:
        open_store(url)
    assert caught.value.message == f"unsupported store URL scheme {scheme}://{hint}; {SUPPORTED}"
    assert "secret" not in caught.value.message


def test_a_url_without_a_scheme_is_invalid() -> None:
    with pytest.raises(InvalidInputError) as caught:
        open_store("chat-data")
    assert caught.value.message == (
        f"a store URL starts with a scheme such as file:// or redis://; {SUPPORTED}"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://", "a file:// URL needs a folder"),
        (f"memory://{new_id()}", "a memory:// URL takes nothing after the scheme"),
    ],
)
def test_a_url_missing_or_with_extra_parts_is_invalid(url: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        open_store(url)


def test_a_url_that_is_not_a_string_is_invalid() -> None:
    with pytest.raises(InvalidInputError, match="url must be a string, got PosixPath"):
        open_store(Path("chat-data"))  # type: ignore[arg-type]
