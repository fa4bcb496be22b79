"""Real, throwaway Redis and PostgreSQL servers for the tests.

As a pytest plugin it provides session-scoped fixtures:

- ``redis_url``: ``redis://127.0.0.1:PORT/0``
- ``postgres_url``: ``postgresql+asyncpg://USER:PASSWORD@127.0.0.1:PORT/DBNAME``
- ``redis_server`` / ``postgres_server``: the :class:`RunningServer` behind each URL

Outside pytest (benchmarks, multi-process tests) call :func:`start_redis` or
:func:`start_postgres` and ``stop()`` the result::

    server = start_postgres()
    try:
        use(server.url)
    finally:
        server.stop()

Each server listens on loopback only, on a free port, with its data in a fresh temporary
directory that ``stop()`` removes. The binaries come from the Debian packages that
``make services`` installs; when they are missing the fixtures fail, they never skip.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = [
    "RunningServer",
    "ServiceError",
    "postgres_bin_dir",
    "redis_binary",
    "start_postgres",
    "start_redis",
    "wrong_password_url",
]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
POSTGRES_USER = "chatruntime"
POSTGRES_DATABASE = "chatruntime"
POSTGRES_SYSTEM_USER = "postgres"
INSTALL_HINT = "run `make services` (as root) to install the Redis and PostgreSQL servers"
_LOG_TAIL_LINES = 30
_PORT_ATTEMPTS = 3

PathArg = str | os.PathLike[str] | None


class ServiceError(RuntimeError):
    """A test server could not be found or started."""


class _EarlyExit(ServiceError):
    """The server exited while starting (for instance because another process took its port)."""


@dataclass
class RunningServer:
    """A server process started for tests, and how to reach and stop it.

    Attributes:
        name: ``"redis"`` or ``"postgres"``.
        url: Where clients connect.
        pid: The server's process id (the process ``stop()`` signals).
        port: The loopback TCP port it listens on.
        directory: Its private temporary directory, removed by ``stop()``.
        log_path: Its log (stdout and stderr), inside ``directory``.
    """

    name: str
    url: str
    pid: int
    port: int
    directory: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    stop_signal: signal.Signals = field(default=signal.SIGTERM, repr=False)

    def is_running(self) -> bool:
        """True while the server process has not exited."""
        return self.process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log, for error messages."""
        return _tail(self.log_path, lines)

    def stop(self) -> None:
        """Stop the server by its pid and remove its directory. Safe to call twice."""
        _live_servers.pop(self.pid, None)
        try:
            _terminate(self.process, self.stop_signal)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


_live_servers: dict[int, RunningServer] = {}


@atexit.register
def _stop_leftover_servers() -> None:
    # Backstop for servers whose fixture teardown or ``stop()`` never ran.
    for server in list(_live_servers.values()):
        server.stop()


def _terminate(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is not None:
        return
    # Popen.send_signal does nothing once the child is reaped, so a reused pid is never hit.
    process.send_signal(sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_directory(prefix: str, tmpdir: PathArg) -> Path:
    parent = None if tmpdir is None else os.fspath(tmpdir)
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def _spawn(
    argv: list[str], log_path: Path, account: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    # The child keeps its own copy of the log descriptor; ours closes on leaving the block.
    with open(log_path, "ab") as log:
        if account is None:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
        )


def _run_logged(
    argv: list[str], log_path: Path, account: pwd.struct_passwd | None, what: str
) -> None:
    process = _spawn(argv, log_path, account)
    try:
        code = process.wait(timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise ServiceError(
            f"{what} did not finish within {STARTUP_TIMEOUT:.0f} s; log tail:\n{_tail(log_path)}"
        ) from None
    if code != 0:
        raise ServiceError(f"{what} failed with exit code {code}; log tail:\n{_tail(log_path)}")


def _wait_until_ready(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log_path: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _EarlyExit(
                f"{what} exited with code {process.returncode} while starting; "
                f"log tail:\n{_tail(log_path)}"
            )
        if ready():
            return
        time.sleep(0.05)
    raise ServiceError(
        f"{what} did not become ready within {STARTUP_TIMEOUT:.0f} s; log tail:\n{_tail(log_path)}"
    )


def _start_on_free_port(
    *,
    name: str,
    directory: Path,
    log_path: Path,
    account: pwd.struct_passwd | None,
    stop_signal: signal.Signals,
    argv: Callable[[int], list[str]],
    url: Callable[[int], str],
    ready: Callable[[int], Callable[[], bool]],
    after_ready: Callable[[int], None] = lambda port: None,
) -> RunningServer:
    # Another process may take the free port between our probe and the server's bind;
    # then the server exits at once ("Address already in use") and a new port is tried.
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port = _free_port()
        process = _spawn(argv(port), log_path, account)
        server = RunningServer(
            name=name,
            url=url(port),
            pid=process.pid,
            port=port,
            directory=directory,
            log_path=log_path,
            process=process,
            stop_signal=stop_signal,
        )
        _live_servers[server.pid] = server
        try:
            _wait_until_ready(ready(port), process, name, log_path)
            after_ready(port)
        except _EarlyExit:
            _live_servers.pop(server.pid, None)
            _terminate(process, stop_signal)
            if attempt == _PORT_ATTEMPTS or "already in use" not in _tail(log_path):
                raise
        except BaseException:
            _live_servers.pop(server.pid, None)
            _terminate(process, stop_signal)
            raise
        else:
            return server
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------
# Redis


def redis_binary() -> str:
    """The path of ``redis-server``, or raise :class:`ServiceError` naming the fix."""
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceError(f"redis-server is not installed: {INSTALL_HINT}")
    return found


def _redis_flags(**options: str) -> list[str]:
    """``--name value`` arguments; Redis spells its option names with dashes."""
    return [
        arg for name, value in options.items() for arg in (f"--{name.replace('_', '-')}", value)
    ]


def _redis_answers_ping(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    return check


def start_redis(tmpdir: PathArg = None) -> RunningServer:
    """Start a private ``redis-server`` on loopback and wait until it answers PING.

    Nothing is persisted: no RDB snapshots, no append-only file.

    Args:
        tmpdir: Where to create the server's directory (default: the system temp dir).

    Returns:
        The running server; its ``url`` is ``redis://127.0.0.1:PORT/0``.

    Raises:
        ServiceError: The binary is missing, or the server did not start in time
            (the message carries the tail of its log).
    """
    binary = redis_binary()
    directory = _make_directory("redis-", tmpdir)
    try:
        return _start_on_free_port(
            name="redis-server",
            directory=directory,
            log_path=directory / "redis.log",
            account=None,
            stop_signal=signal.SIGTERM,
            argv=lambda port: [
                binary,
                *_redis_flags(
                    port=str(port),
                    bind="127.0.0.1",
                    protected_mode="no",
                    daemonize="no",
                    save="",
                    appendonly="no",
                    dir=str(directory),
                    logfile="",
                ),
            ],
            url=lambda port: f"redis://127.0.0.1:{port}/0",
            ready=_redis_answers_ping,
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``postgres`` and ``initdb``."""
    found: list[tuple[tuple[int, ...], Path]] = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bin_dir / "postgres").is_file() and (bin_dir / "initdb").is_file():
            version = tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))
            found.append((version, bin_dir))
    if not found:
        raise ServiceError(
            f"PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): {INSTALL_HINT}"
        )
    return max(found)[1]


def _postgres_account() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: ``postgres`` when we are root, since it refuses root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        pass
    # The Debian package creates this user; a machine with hand-copied binaries may lack it.
    useradd = "useradd --system --user-group --no-create-home --home-dir /nonexistent"
    subprocess.run(
        [*useradd.split(), "--shell=/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def _check_reachable(directory: Path, account: pwd.struct_passwd) -> None:
    """Fail clearly when ``account`` cannot enter a parent of ``directory``."""
    for parent in directory.resolve().parents:
        info = parent.stat()
        if (
            info.st_mode & stat.S_IXOTH
            or (info.st_uid == account.pw_uid and info.st_mode & stat.S_IXUSR)
            or (info.st_gid == account.pw_gid and info.st_mode & stat.S_IXGRP)
        ):
            continue
        raise ServiceError(
            f"the {account.pw_name!r} user cannot enter {parent} "
            f"({stat.filemode(info.st_mode)}); give start_postgres a tmpdir it can reach, "
            "such as the system temp dir"
        )


def _postgres_flags(**settings: str) -> list[str]:
    """``--name=value`` arguments, PostgreSQL's long form of ``-c name=value``."""
    return [f"--{name}={value}" for name, value in settings.items()]


def _postgres_accepts_connections(bin_dir: Path) -> Callable[[int], Callable[[], bool]]:
    def for_port(port: int) -> Callable[[], bool]:
        argv = [
            str(bin_dir / "pg_isready"),
            "--host=127.0.0.1",
            f"--port={port}",
            "--dbname=postgres",
            f"--username={POSTGRES_USER}",
            "--timeout=2",
            "--quiet",
        ]
        return lambda: subprocess.run(argv, check=False, capture_output=True).returncode == 0

    return for_port


def _chown(path: Path, account: pwd.struct_passwd | None) -> None:
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def start_postgres(tmpdir: PathArg = None) -> RunningServer:
    """Create a fresh PostgreSQL cluster, start it on loopback and create a database.

    TCP connections must give the password (SCRAM), so a wrong one is refused; the unix
    socket lives in the server's private directory. Durability is off (``fsync=off``)
    for speed. Run as root, the cluster belongs to and runs as the ``postgres`` system user.

    Args:
        tmpdir: Where to create the server's directory (default: the system temp dir).
            When run as root, the ``postgres`` user must be able to enter it.

    Returns:
        The running server; its ``url`` is
        ``postgresql+asyncpg://chatruntime:PASSWORD@127.0.0.1:PORT/chatruntime``.

    Raises:
        ServiceError: The binaries are missing, or a step failed or timed out
            (the message carries the tail of the log).
    """
    bin_dir = postgres_bin_dir()
    account = _postgres_account()
    directory = _make_directory("postgres-", tmpdir)
    try:
        if account is not None:
            _check_reachable(directory, account)
        _chown(directory, account)
        log_path = directory / "postgres.log"
        log_path.touch()
        data_dir = directory / "data"
        socket_dir = directory / "socket"
        socket_dir.mkdir(mode=0o700)
        _chown(socket_dir, account)
        password = secrets.token_hex(12)
        password_file = directory / "password"
        password_file.write_text(password + "\n", encoding="utf-8")
        _chown(password_file, account)
        _run_logged(
            [
                str(bin_dir / "initdb"),
                f"--pgdata={data_dir}",
                f"--username={POSTGRES_USER}",
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            log_path,
            account,
            "initdb",
        )
        password_file.unlink()

        def create_database(port: int) -> None:
            _run_logged(
                [
                    str(bin_dir / "createdb"),
                    f"--host={socket_dir}",
                    f"--port={port}",
                    f"--username={POSTGRES_USER}",
                    POSTGRES_DATABASE,
                ],
                log_path,
                account,
                "createdb",
            )

        return _start_on_free_port(
            name="postgres",
            directory=directory,
            log_path=log_path,
            account=account,
            # PostgreSQL's "fast" shutdown: end sessions, checkpoint, exit.
            stop_signal=signal.SIGINT,
            argv=lambda port: [
                str(bin_dir / "postgres"),
                "-D",
                str(data_dir),
                *_postgres_flags(
                    listen_addresses="127.0.0.1",
                    port=str(port),
                    unix_socket_directories=str(socket_dir),
                    fsync="off",
                    synchronous_commit="off",
                    full_page_writes="off",
                    max_connections="200",
                ),
            ],
            url=lambda port: (
                f"postgresql+asyncpg://{POSTGRES_USER}:{password}"
                f"@127.0.0.1:{port}/{POSTGRES_DATABASE}"
            ),
            ready=_postgres_accepts_connections(bin_dir),
            after_ready=create_database,
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def wrong_password_url(url: str, password: str = "not-the-password") -> str:
    """``url`` with its password replaced, for tests of refused credentials."""
    parts = urlsplit(url)
    if parts.username is None or parts.hostname is None:
        raise ValueError(f"{url!r} names no user and host")
    netloc = f"{parts.username}:{password}@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


# ---------------------------------------------------------------------------------------
# Fixtures


def _start_or_fail(start: Callable[[], RunningServer]) -> RunningServer:
    try:
        return start()
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RunningServer]:
    """A Redis server shared by the whole test session."""
    server = _start_or_fail(start_redis)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RunningServer) -> str:
    """``redis://127.0.0.1:PORT/0`` of the session's Redis server."""
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[RunningServer]:
    """A PostgreSQL server shared by the whole test session."""
    server = _start_or_fail(start_postgres)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: RunningServer) -> str:
    """``postgresql+asyncpg://USER:PASSWORD@127.0.0.1:PORT/DBNAME`` of the session's server."""
    return postgres_server.url
