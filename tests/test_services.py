"""The test infrastructure itself: real servers start, answer and stop; blocking is caught."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import CodeType

import asyncpg
import pytest
import redis.asyncio
from blockbuster import BlockBuster, BlockingError

import chatruntime
from support.services import start_postgres, start_redis, wrong_password_url

pytestmark = pytest.mark.anyio


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.mark.services
async def test_redis_answers_ping_and_keeps_a_value(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.ping() is True
        await client.set("test-services:key", "value")
        assert await client.get("test-services:key") == b"value"
        await client.delete("test-services:key")
    finally:
        await client.aclose()


@pytest.mark.services
async def test_postgres_answers_select_one_in_its_own_database(postgres_url: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(postgres_url), timeout=10)
    try:
        assert await connection.fetchval("select 1") == 1
        assert await connection.fetchval("select current_database()") == "chatruntime"
    finally:
        await connection.close()


@pytest.mark.services
async def test_postgres_refuses_a_wrong_password(postgres_url: str) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_asyncpg_dsn(wrong_password_url(postgres_url)), timeout=10)


def test_wrong_password_url_changes_only_the_password() -> None:
    url = "postgresql+asyncpg://user:secret@127.0.0.1:5432/db"

    assert wrong_password_url(url, "nope") == "postgresql+asyncpg://user:nope@127.0.0.1:5432/db"


@pytest.mark.services
def test_start_redis_runs_a_server_that_stop_removes(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.is_running()
        assert server.directory.parent == tmp_path
    finally:
        server.stop()

    assert not server.is_running()
    assert not server.directory.exists()
    server.stop()  # a second stop is harmless


@pytest.mark.services
def test_start_postgres_runs_a_server_that_stop_removes() -> None:
    server = start_postgres()
    try:
        assert server.url.startswith("postgresql+asyncpg://chatruntime:")
        assert server.url.endswith(f"@127.0.0.1:{server.port}/chatruntime")
        assert server.is_running()
        assert (server.directory / "data" / "PG_VERSION").is_file()
    finally:
        server.stop()

    assert not server.is_running()
    assert not server.directory.exists()


# blockbuster tells library code from other code by the file a frame's code comes from, so
# code compiled under the package's directory stands in for a chatruntime module that blocks.
_LIBRARY_FILE = os.path.join(chatruntime.__path__[0], "_blocking_probe.py")


def _library_function_that_sleeps() -> None:
    namespace: dict[str, object] = {}
    code: CodeType = compile(
        "import time\ndef sleep_briefly():\n    time.sleep(0)\n", _LIBRARY_FILE, "exec"
    )
    exec(code, namespace)
    sleep_briefly = namespace["sleep_briefly"]
    assert callable(sleep_briefly)
    sleep_briefly()


def _test_code_that_sleeps() -> None:
    time.sleep(0)


def test_blockbuster_is_active_in_every_test(blockbuster: BlockBuster | None) -> None:
    assert blockbuster is not None
    assert blockbuster.functions["time.sleep"].activated


async def test_a_blocking_call_from_library_code_on_the_event_loop_fails() -> None:
    with pytest.raises(BlockingError, match=r"time\.sleep"):
        _library_function_that_sleeps()


async def test_test_code_may_block_on_the_event_loop() -> None:
    _test_code_that_sleeps()


@pytest.mark.allow_blocking
async def test_allow_blocking_lets_library_code_block(blockbuster: BlockBuster | None) -> None:
    assert blockbuster is None
    _library_function_that_sleeps()
