"""Redis and PostgreSQL servers the suite starts, stalls, kills and starts again.

The binaries and the PostgreSQL cluster come from the tests' launcher
(``tests/support/services.py``, installed by ``make services``). Unlike the tests' servers,
these can be stopped and started again on the same port and data:

- Redis persists every write before it answers (``appendonly yes``, ``appendfsync always``),
  so an acknowledged turn must outlive a SIGKILL of the server;
- PostgreSQL runs the launcher's cluster with ``synchronous_commit=on`` instead of the
  launcher's ``off`` (with it off, a commit is acknowledged before its log leaves the
  server's memory, and a killed server loses acknowledged turns by design). ``fsync=off``
  stays: a killed *process* loses nothing the operating system already holds; a power cut
  is not simulated.

Every process is signalled by its pid, and :meth:`Restartable.close` (called from a
``finally``) stops it and removes its directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0


def launcher() -> ModuleType:
    """The tests' server launcher, imported as the tests import it (``support.services``)."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    from support import services  # type: ignore[import-not-found]

    module: ModuleType = services
    return module


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (read from /proc: no procps needed)."""
    found: list[int] = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_path.parent.name))
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + _STOP_TIMEOUT
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1]
            except (OSError, IndexError):
                break
            if state.split()[0] == "Z":  # a zombie of init's: it holds nothing any more
                break
            time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Restartable:
    """A server process on a fixed port and data directory that can be stalled, killed and
    started again with the same command.

    Attributes:
        name: ``redis`` or ``postgres``.
        url: Where clients connect (the same across restarts).
    """

    def __init__(
        self,
        name: str,
        url: str,
        argv: list[str],
        ready: Callable[[], bool],
        stop_signal: signal.Signals,
        log: Path,
        cleanup: Callable[[], None],
        user: tuple[int, int] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self._argv = argv
        self._ready = ready
        self._stop_signal = stop_signal
        self._log = log
        self._cleanup = cleanup
        self._user = user
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stalled: list[int] = []

    @property
    def pid(self) -> int | None:
        """The running server's pid (``None`` while it is down)."""
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        """Start the server and wait until it answers."""
        with open(self._log, "ab") as log:
            if self._user is None:
                self.process = subprocess.Popen(
                    self._argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            else:
                self.process = subprocess.Popen(
                    self._argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._log.parent,
                    user=self._user[0],
                    group=self._user[1],
                    extra_groups=[],
                )
        deadline = time.monotonic() + _READY_TIMEOUT
        while not self._ready():
            if self.process.poll() is not None:
                tail = self._log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited while starting:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer within {_READY_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def stall(self) -> None:
        """SIGSTOP the server and its child processes (PostgreSQL's backends serve the open
        connections): it keeps its connections but answers nothing."""
        if self.process is not None:
            self._stalled = [self.process.pid, *_children(self.process.pid)]
            for pid in self._stalled:
                _signal(pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT every process :meth:`stall` stopped."""
        for pid in self._stalled:
            _signal(pid, signal.SIGCONT)
        self._stalled = []

    def kill(self) -> None:
        """SIGKILL the server and its own child processes (an outage, as a crash: connections
        drop, the port refuses, nothing is flushed)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # PostgreSQL's backends are children of the postmaster; left alive they would
            # keep its shared memory and the restart would refuse to start.
            children = _children(process.pid)
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            for child in children:
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.wait(timeout=_STOP_TIMEOUT)
            _wait_gone(children)

    def restart(self) -> None:
        """Start the server again on its port and data after :meth:`kill`."""
        self.start()
        self.restarts += 1

    def close(self) -> None:
        """Stop the server by its pid and remove its data. Safe to call twice."""
        self.resume()
        process, self.process = self.process, None
        try:
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                os.kill(process.pid, self._stop_signal)
                try:
                    process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=_STOP_TIMEOUT)
        finally:
            self._cleanup()


def start_redis() -> Restartable:
    """A private Redis that fsyncs every write before answering."""
    binary = launcher().redis_binary()
    directory = Path(tempfile.mkdtemp(prefix="reliability-redis-"))
    port = _free_port()

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    server = Restartable(
        "redis",
        f"redis://127.0.0.1:{port}/0",
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--protected-mode", "no", "--daemonize", "no"),
            *("--appendonly", "yes", "--appendfsync", "always", "--dir", str(directory)),
        ],
        ready,
        signal.SIGTERM,
        directory / "redis.log",
        lambda: shutil.rmtree(directory, ignore_errors=True),
    )
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


def start_postgres() -> Restartable:
    """A private PostgreSQL cluster (the launcher's), restartable on its port and data."""
    services = launcher()
    first = services.start_postgres()
    try:
        data = first.directory / "data"
        owner = data.stat()
        user = (owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None
        ready_argv = [
            str(services.postgres_bin_dir() / "pg_isready"),
            *("--host=127.0.0.1", f"--port={first.port}", "--dbname=postgres", "--quiet"),
        ]

        def ready() -> bool:
            return subprocess.run(ready_argv, check=False, capture_output=True).returncode == 0

        argv = [
            "--synchronous_commit=on" if arg == "--synchronous_commit=off" else str(arg)
            for arg in first.process.args
        ]
        server = Restartable(
            "postgres", first.url, argv, ready, signal.SIGINT, first.log_path, first.stop, user
        )
        # Started again with durable commits (the launcher's first start had them off).
        first.process.send_signal(signal.SIGINT)
        first.process.wait(timeout=_STOP_TIMEOUT)
        server.start()
    except BaseException:
        first.stop()
        raise
    return server
