"""``SqlStore`` on a SQLite database it cannot write: how that is found out, and how the
database is then opened.

A store is read-only when asked (``read_only=True``, or a URI URL with ``mode=ro`` or
``immutable=1``), or, with the default ``read_only=None``, when :func:`plan` finds the
database's folder on a read-only file system, or the database file or a file a writer needs
beside it (``-wal``, ``-shm``, the ``-leases`` lock file) impossible for this process to
write or to create (permissions). What the checks miss, SQLite's own refusal to write a
file that exists does (``SQLITE_READONLY``, ``SQLITE_CANTOPEN``; ``EACCES``, ``EPERM``,
``EROFS``): ``SqlStore`` then opens it again read-only (see :func:`refusal`).

Open read-only, the connections use a ``file:`` URI with ``mode=ro`` (and ``query_only``):
nothing is migrated, no lock file is created, every write is refused. Reading a WAL database
needs its ``-shm`` file: where the folder cannot be written and the ``-wal``/``-shm`` pair is
not already there, SQLite can read the file only as ``immutable=1``, which it then trusts
nobody to change (no locks, no change detection). That is safe only because such a ``-wal``
is empty: a non-empty ``-wal`` without its ``-shm`` holds commits SQLite could not read, so
the store refuses to open rather than show the database without them.

:func:`plan` and :func:`database_path` block (file system calls): run them in a worker
thread.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL

from ..models import StorageError
from ._protocol import Lease
from ._sql_errors import is_memory
from ._sql_leases import FILE_LOCKS_AVAILABLE

__all__ = [
    "OPTION_REASON",
    "ReadOnlyPlan",
    "check_option",
    "database_path",
    "plan",
    "read_only_url",
    "refusal",
    "refused",
    "refused_lease",
    "url_reason",
]

OPTION_REASON: Final = "it was opened with read_only=True"
_DENIED_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_DENIED_SQLITE: Final = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH}
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class ReadOnlyPlan:
    """How to open a database read-only.

    Attributes:
        reason: Why it is read-only, for messages (``it was opened with read_only=True``).
        immutable: Open it with ``immutable=1`` (see the module docstring).
    """

    reason: str
    immutable: bool


def database_path(url: URL) -> str | None:
    """The absolute path of the file a SQLite URL names; ``None`` in memory."""
    if is_memory(url):
        return None
    database = url.database or ""
    if _flag(url, "uri") and database.startswith("file:"):
        database = database.removeprefix("file:")
        if database.startswith("//"):  # file://host/path: SQLite allows only localhost
            database = "/" + database[2:].partition("/")[2]
        database = unquote(database.partition("?")[0].partition("#")[0])
    return os.path.abspath(database)


def url_reason(url: URL) -> str | None:
    """Why a URI URL already opens its database read-only, if it does."""
    if not _flag(url, "uri"):
        return None
    if url.query.get("mode") == "ro":
        return "its URL opens it with mode=ro"
    if _flag(url, "immutable"):
        return "its URL opens it with immutable=1"
    return None


def check_option(read_only: bool | None, url: URL) -> None:
    """Refuse a ``read_only`` option that cannot apply to the database of ``url``.

    Raises:
        ValueError: It is set for PostgreSQL, ``True`` for an in-memory database, or
            ``False`` for a URI URL that opens the database read-only.
    """
    if read_only is None:
        return
    if url.get_backend_name() != "sqlite":
        raise ValueError(
            "read_only applies to SQLite only: on PostgreSQL, connect as a user who may only read"
        )
    if read_only and is_memory(url):
        raise ValueError(
            "read_only=True needs a SQLite database file: an in-memory database is private "
            "to its store and starts empty"
        )
    asked = url_reason(url)
    if not read_only and asked is not None:
        raise ValueError(f"read_only=False contradicts the URL: {asked}")


def plan(path: str, read_only: bool | None, asked: str | None, where: str) -> ReadOnlyPlan | None:
    """How to open the database at ``path``: ``None`` for writing, else read-only.

    Args:
        path: The database file.
        read_only: The store's option.
        asked: Why the URL itself opens it read-only (:func:`url_reason`).
        where: How messages name the database.

    Raises:
        StorageError: It is to be read-only but there is no database to read, or its
            ``-wal`` holds commits that cannot be read here (see the module docstring).
    """
    if read_only is False:
        return None
    reason = OPTION_REASON if read_only else asked or _unwritable(path)
    if reason is None:
        return None
    if not os.path.isfile(path):
        raise StorageError(
            f"cannot open {where} read-only ({reason}): there is no database file at {path}",
            where=where,
            reason=reason,
        )
    return ReadOnlyPlan(reason, immutable=_needs_immutable(path, where))


def read_only_url(url: URL, path: str, plan: ReadOnlyPlan) -> URL:
    """``url`` opening ``path`` through a ``file:`` URI with ``mode=ro`` (and ``immutable=1``
    if ``plan`` says so); the driver's own options in its query are kept."""
    query = {key: value for key, value in url.query.items() if key not in ("mode", "immutable")}
    query.update(uri="true", mode="ro")
    if plan.immutable:
        query["immutable"] = "1"
    return url.set(database="file:" + quote(path, safe="/"), query=query)


def refusal(error: BaseException) -> str | None:
    """SQLite's or the system's refusal to write, found in ``error`` or what caused it (the
    driver's words); ``None`` if ``error`` is another failure."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _DENIED_SQLITE:
                return str(current)
        if isinstance(current, OSError) and current.errno in _DENIED_ERRNOS:
            return f"{current.filename or 'a file'}: {current.strerror}"
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def refused(where: str, reason: str, doing: str) -> StorageError:
    """The error for a write to a store open read-only."""
    return StorageError(
        f"{where} is open read-only ({reason}): refused {doing}",
        where=where,
        reason=reason,
        read_only=True,
    )


@asynccontextmanager
async def refused_lease(error: StorageError) -> AsyncIterator[Lease]:
    """A lease that is never granted: entering it raises ``error``."""
    raise error
    yield Lease("")  # pragma: no cover - a generator, for asynccontextmanager


# -- what is checked --------------------------------------------------------------------------


def _unwritable(path: str) -> str | None:
    """Why a writer could not work on the database at ``path``; ``None`` if it could, or if
    only opening it can tell (a missing folder, which the writer creates, say).

    Nothing here opens the database or its ``-wal`` and ``-shm`` files: closing any
    descriptor of a file drops every POSIX lock this process holds on it, SQLite's too
    (another store of this process may have the database open).
    """
    folder = os.path.dirname(path)
    if _on_read_only_fs(folder):
        return f"its folder {folder} is on a read-only file system"
    folder_denied = _folder_denied(folder)
    beside = ["-wal", "-shm"] + (["-leases"] if FILE_LOCKS_AVAILABLE else [])
    for name in [path, *(path + suffix for suffix in beside)]:
        if os.path.exists(name):
            if not _access(name, os.W_OK):
                return f"{name} cannot be written by this process"
        elif folder_denied:
            # A writer would create the file here.
            return f"its folder {folder} cannot be written by this process"
    return None


def _on_read_only_fs(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False  # missing (the writer creates it) or unreadable: opening will say


def _folder_denied(folder: str) -> bool:
    """Whether no file can be created in ``folder`` (an existing one)."""
    return os.path.isdir(folder) and (
        _on_read_only_fs(folder) or not _access(folder, os.W_OK | os.X_OK)
    )


def _access(path: str, mode: int) -> bool:
    # As the process's effective user: a setuid program may not write what its user may.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _needs_immutable(path: str, where: str) -> bool:
    if not _folder_denied(os.path.dirname(path)):
        return False  # SQLite creates the -shm it needs to read a WAL
    wal, shm = path + "-wal", path + "-shm"
    if os.path.exists(wal) and os.path.exists(shm):
        return False  # SQLite reads both without writing them
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise StorageError(
            f"cannot open {where} read-only: {wal} holds commits not yet in the database "
            f"file, and SQLite cannot read them without {shm}, which is missing and cannot be "
            "created in a folder that cannot be written; open the database once where it can "
            "be written (or copy the database and its -wal file to such a place)",
            where=where,
        )
    return True


def _flag(url: URL, name: str) -> bool:
    value = url.query.get(name)
    return isinstance(value, str) and value.lower() in _TRUE
