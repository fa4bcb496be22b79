"""Creation races across OS processes: a store several processes can open, and
``create_worker.py`` processes racing on it, started together and always stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from chatruntime.stores import SessionStore, open_store
from support.create_worker import GO, READY, RESULT, arguments
from support.stores import postgres_schema, postgres_search_path

WORKER_SCRIPT = Path(__file__).with_name("create_worker.py")
READY_TIMEOUT = 60.0
"""Seconds a worker may take to import and open its store (two cores, many test runs)."""
RACE_TIMEOUT = 60.0
LINE_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class SharedLocation:
    """Where a store lives, as every process opens it: ``open_store(url, **options)``.

    ``options`` must be JSON, since workers are told them on their command line.
    """

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def open(self) -> SessionStore:
        """A new store object on this location (not yet initialized)."""
        return open_store(self.url, **self.options)


@asynccontextmanager
async def shared_store_location(
    kind: str, tmp_path: Path, request: Any
) -> AsyncIterator[SharedLocation]:
    """A fresh, empty location for a store of ``kind`` that processes share; its data is
    dropped afterwards where it lives outside ``tmp_path``.

    Args:
        kind: ``file``, ``sqlite``, ``postgres`` or ``redis`` (a memory store is one
            process's alone).
        tmp_path: The test's folder.
        request: The test's ``pytest.FixtureRequest``, for the service fixtures.
    """
    if kind == "file":
        yield SharedLocation(f"file://{tmp_path / 'store'}")
    elif kind == "sqlite":
        yield SharedLocation(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    elif kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        async with postgres_schema(url) as schema:
            yield SharedLocation(url, {"engine_kwargs": postgres_search_path(schema)})
    elif kind == "redis":
        # The session's server is shared; a fresh key prefix gives this test empty data.
        url = request.getfixturevalue("redis_url")
        yield SharedLocation(url, {"key_prefix": f"race-{uuid.uuid4().hex}:"})
    else:
        raise AssertionError(f"a {kind!r} store is not shared between processes")


@dataclass(frozen=True)
class WorkerOutcome:
    """What one worker reported: the ids it created, how many creations the limit refused,
    and any other error (as ``"Type: message"``)."""

    created: list[str]
    refused: int
    errors: list[str]


async def race_creations(
    location: SharedLocation,
    *,
    processes: int,
    sessions_each: int,
    max_sessions: int,
    now: int,
    directory: Path,
) -> list[WorkerOutcome]:
    """Start ``processes`` workers on ``location``, release them together once all are
    ready, and return what each reported. Every worker is killed and reaped before this
    returns or raises.

    Raises:
        AssertionError: A worker exited, printed something unexpected or took too long;
            the message holds its stderr (also kept in ``directory``).
    """
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(WORKER_SCRIPT),
        *arguments(
            location.url,
            location.options,
            sessions=sessions_each,
            max_sessions=max_sessions,
            now=now,
        ),
    ]
    outcomes: list[WorkerOutcome] = []
    async with AsyncExitStack() as stack:
        workers: list[tuple[Process, BufferedByteReceiveStream, Path]] = []
        for n in range(processes):
            stderr_path = directory / f"worker{n}.stderr"
            with stderr_path.open("wb") as stderr:
                process = await anyio.open_process(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
                )
            stack.push_async_callback(_kill, process)
            assert process.stdout is not None
            workers.append((process, BufferedByteReceiveStream(process.stdout), stderr_path))

        with anyio.fail_after(READY_TIMEOUT):
            for process, lines, stderr_path in workers:
                await _expect_line(process, lines, stderr_path, READY)
        for process, _, _ in workers:
            assert process.stdin is not None
            await process.stdin.send(f"{GO}\n".encode())

        with anyio.fail_after(RACE_TIMEOUT):
            for process, lines, stderr_path in workers:
                line = await _expect_line(process, lines, stderr_path, RESULT)
                outcomes.append(WorkerOutcome(**json.loads(line.removeprefix(RESULT))))
                exit_code = await process.wait()
                assert exit_code == 0, _describe(process, stderr_path)
    return outcomes


async def _expect_line(
    process: Process, lines: BufferedByteReceiveStream, stderr_path: Path, start: str
) -> str:
    """The worker's next stdout line, which must start with ``start``."""
    try:
        line = (await lines.receive_until(b"\n", LINE_MAX_BYTES)).decode()
    except (anyio.IncompleteRead, anyio.EndOfStream) as error:
        raise AssertionError(
            f"worker ended before printing {start.strip()!r}\n{_describe(process, stderr_path)}"
        ) from error
    assert line.startswith(start), f"printed {line!r}\n{_describe(process, stderr_path)}"
    return line


def _describe(process: Process, stderr_path: Path) -> str:
    stderr = stderr_path.read_text(encoding="utf-8", errors="replace")
    return f"worker pid {process.pid}, exit code {process.returncode}\n--- stderr ---\n{stderr}"


async def _kill(process: Process) -> None:
    """SIGKILL the worker by its pid unless it exited, and reap it, even when cancelled."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            process.kill()
        await process.aclose()
