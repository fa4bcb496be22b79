"""Starting, watching and always stopping ``worker.py`` processes from an async test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from agents import Agent
from anyio.abc import Process
from worker import GO

from chatruntime import AgentManager, OfflineModel, SessionManager
from chatruntime.stores import SessionStore, open_store

WORKER_SCRIPT = Path(__file__).with_name("worker.py")
POLL_INTERVAL = 0.05
STOP_TIMEOUT = 10.0
_TAIL_CHARS = 6000


@dataclass
class Worker:
    """One running ``worker.py``: its process and the files it writes."""

    name: str
    process: Process
    directory: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stdout_path(self) -> Path:
        return self.directory / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"{self.name}.stderr"

    @property
    def result_path(self) -> Path:
        return self.directory / f"{self.name}.json"

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        """Who the worker is, how it ended, and what it printed (for failure messages)."""
        return (
            f"{self.name} (pid {self.pid}, exit code {self.process.returncode})\n"
            f"--- stdout ---\n{self.stdout()[-_TAIL_CHARS:]}"
            f"--- stderr ---\n{self.stderr()[-_TAIL_CHARS:]}"
        )

    def result(self) -> dict[str, Any]:
        """The worker's JSON report (see ``worker.py``)."""
        assert self.result_path.exists(), f"no result file\n{self.describe()}"
        report: dict[str, Any] = json.loads(self.result_path.read_text(encoding="utf-8"))
        return report

    async def wait_for_line(self, line: str, timeout: float) -> None:
        """Wait until the worker printed ``line``; fail if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while line not in self.stdout().splitlines():
            if self.process.returncode is not None:
                raise AssertionError(f"exited before printing {line!r}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"did not print {line!r} within {timeout:g}s\n{self.describe()}"
                )
            await anyio.sleep(POLL_INTERVAL)

    async def go(self) -> None:
        """Release a worker started with ``--wait-for-go``."""
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{GO}\n".encode())

    async def wait(self, timeout: float) -> int:
        """The exit code, once the worker exits; fail if it runs longer than ``timeout``."""
        with anyio.move_on_after(timeout):
            return await self.process.wait()
        raise AssertionError(f"still running after {timeout:g}s\n{self.describe()}")

    async def kill(self) -> int:
        """SIGKILL the worker by its pid (unless it has exited) and reap it."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        with anyio.fail_after(STOP_TIMEOUT, shield=True):
            return await self.process.wait()


@dataclass
class WorkerGroup:
    """Starts workers; every one still running when the group closes is killed and reaped."""

    directory: Path
    workers: list[Worker] = field(default_factory=list)

    async def start(self, name: str, *arguments: str) -> Worker:
        """Start ``worker.py --result <name>.json *arguments`` in a new process."""
        self.directory.mkdir(parents=True, exist_ok=True)
        result = self.directory / f"{name}.json"
        command = [sys.executable, str(WORKER_SCRIPT), "--result", str(result), *arguments]
        with _output_files(self.directory, name) as (stdout, stderr):
            process = await anyio.open_process(
                command,
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
                env=_worker_environment(),
            )
        worker = Worker(name=name, process=process, directory=self.directory)
        self.workers.append(worker)
        return worker

    async def close(self) -> None:
        for worker in self.workers:
            await worker.kill()
            if worker.process.stdin is not None:
                await worker.process.stdin.aclose()


@asynccontextmanager
async def worker_group(directory: Path) -> AsyncIterator[WorkerGroup]:
    """A :class:`WorkerGroup` whose processes do not outlive the ``async with`` block."""
    group = WorkerGroup(directory)
    try:
        yield group
    finally:
        with anyio.CancelScope(shield=True):
            await group.close()


@contextmanager
def _output_files(directory: Path, name: str) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """Where a worker's stdout and stderr go. The child keeps its own descriptors."""
    with (
        open(directory / f"{name}.stdout", "wb") as stdout,
        open(directory / f"{name}.stderr", "wb") as stderr,
    ):
        yield stdout, stderr


def _worker_environment() -> dict[str, str]:
    environment = dict(os.environ)
    # Every warning a worker meets is printed, and the tests require an empty stderr.
    environment["PYTHONWARNINGS"] = "default"
    return environment


@dataclass(frozen=True)
class SharedStore:
    """The store the workers share: ``open_store(url, **options)``."""

    kind: str
    url: str
    options: dict[str, str] = field(default_factory=dict)

    def open(self) -> SessionStore:
        return open_store(self.url, **self.options)

    def worker_arguments(self) -> list[str]:
        """How ``worker.py`` is told to open this store."""
        arguments = ["--store-url", self.url]
        for name, value in self.options.items():
            arguments += ["--store-option", f"{name}={value}"]
        return arguments


@asynccontextmanager
async def open_manager(
    shared: SharedStore, agent_id: str, **options: Any
) -> AsyncIterator[SessionManager]:
    """A ``SessionManager`` in the test process on the store the workers share.

    It knows the workers' agent (the offline model under ``agent_id``), so it can create
    their sessions and take turns itself.
    """
    store = shared.open()
    agents = AgentManager(store)
    agents.register(Agent(name="Echo", model=OfflineModel()), agent_id=agent_id)
    async with SessionManager(store, agents, **options) as manager:
        yield manager


@asynccontextmanager
async def open_fresh_store(shared: SharedStore) -> AsyncIterator[SessionStore]:
    """A store with nothing cached, to read what the workers left."""
    store = shared.open()
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()
