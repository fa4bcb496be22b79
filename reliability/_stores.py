"""The stores a trial runs on, built the same way in every process, and what they hold.

A :class:`StoreSpec` is plain data, so a forked writer, a fresh checker and the trial itself
build equal stores from it. :func:`stored_digest` hashes what a store holds (files' bytes,
table rows, Redis values) so a trial can tell whether a failed call changed anything.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from chatruntime.stores import FileStore, MemoryStore, RedisStore, SessionStore, SqlStore

STORE_KINDS = ("file", "sqlite", "postgres", "redis")
"""Every persistent store kind the suite knows, in the order the table shows them."""

LOCAL_KINDS = ("file", "sqlite")
"""The kinds that need no server."""


@dataclass(frozen=True)
class StoreSpec:
    """How to build one store (and rebuild it in another process).

    Attributes:
        kind: ``file``, ``sqlite``, ``postgres``, ``redis`` or ``memory``.
        root: A folder of the trial's own: the file store's root, the SQLite database's
            folder.
        url: The server's URL (PostgreSQL, Redis).
        prefix: The table prefix (PostgreSQL) or key prefix (Redis) that keeps this trial's
            data apart from others' on a shared server.
        options: Keyword arguments for the store's constructor.
    """

    kind: str
    root: Path
    url: str | None = None
    prefix: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fresh(cls, kind: str, root: Path, urls: dict[str, str], **options: Any) -> StoreSpec:
        """A spec for an empty store of ``kind`` under ``root`` (server URLs by kind)."""
        root.mkdir(parents=True, exist_ok=True)
        prefix = ""
        if kind == "postgres":
            prefix = f"r{uuid.uuid4().hex[:10]}_"
        elif kind == "redis":
            prefix = f"reliability-{uuid.uuid4().hex}:"
        return cls(kind, root, urls.get(kind), prefix, dict(options))

    @property
    def file_root(self) -> Path:
        """The file store's folder."""
        return self.root / "store"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file."""
        return self.root / "chat.db"

    def build(self, **overrides: Any) -> SessionStore:
        """A new, not yet initialized store over this spec's data."""
        options = {**self.options, **overrides}
        if self.kind == "memory":
            return MemoryStore()
        if self.kind == "file":
            return FileStore(self.file_root, **options)
        if self.kind == "sqlite":
            return SqlStore(f"sqlite+aiosqlite:///{self.sqlite_path}", **options)
        if self.kind == "postgres":
            assert self.url is not None, "a postgres spec needs the server's url"
            return SqlStore(self.url, table_prefix=self.prefix, **options)
        if self.kind == "redis":
            assert self.url is not None, "a redis spec needs the server's url"
            return RedisStore(self.url, key_prefix=self.prefix, **options)
        raise ValueError(f"unknown store kind {self.kind!r}")


def file_tree_digest(root: Path, *, skip_sqlite: bool = False) -> str:
    """A hash of every file's path and bytes under ``root`` (directories included).

    SQLite's ``-shm`` files are always left out: they are shared memory that readers write
    too (read marks), not stored data. ``skip_sqlite`` leaves out SQLite databases and their
    logs as well (hashed by their rows instead, see :class:`StoreWatch`).
    """
    digest = hashlib.sha256()
    if not root.exists():
        return "absent"
    for directory, folders, files in os.walk(root):
        folders.sort()
        relative = os.path.relpath(directory, root)
        digest.update(f"d {relative}\n".encode())
        for name in sorted(files):
            if name.endswith("-shm") or (skip_sqlite and _is_sqlite(name)):
                continue
            path = Path(directory) / name
            digest.update(f"f {relative}/{name}\n".encode())
            try:
                digest.update(path.read_bytes())
            except OSError as error:
                digest.update(f"unreadable {error}".encode())
    return digest.hexdigest()


def _is_sqlite(name: str) -> bool:
    return ".sqlite3" in name or name.startswith("chat.db")


def _file_fingerprint(root: Path) -> list[tuple[str, int, int, int]]:
    # Every write of the file store replaces a file (a new inode) or appends to one (a new
    # size): the stat of each file is enough to see that something was written.
    found = []
    for directory, folders, files in os.walk(root):
        folders.sort()
        for name in sorted(files):
            if _is_sqlite(name):
                continue
            info = (Path(directory) / name).stat()
            found.append((f"{directory}/{name}", info.st_ino, info.st_size, info.st_mtime_ns))
    return found


def _rows_digest(connection: sqlite3.Connection, digest: Any, skip: str = "leases") -> None:
    tables = [
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
        if not name.endswith(skip)
    ]
    for table in tables:
        digest.update(f"table {table}\n".encode())
        rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
        for line in sorted(repr(row) for row in rows):
            digest.update(line.encode("utf-8", "surrogatepass"))
            digest.update(b"\n")


class StoreWatch:
    """Tells whether a store's data changed, cheaply, and hashes it when it did.

    :meth:`fingerprint` is cheap and changes whenever anything was written: files' stats,
    SQLite's ``data_version`` (which moves when another connection commits); for
    PostgreSQL and Redis it is the digest itself. :meth:`digest` hashes what is stored:
    files' bytes, every table row (leases left out), every Redis value (``DUMP``, leases
    left out). A failed call must leave the digest as it was.
    """

    def __init__(self, spec: StoreSpec, store: SessionStore) -> None:
        self._spec = spec
        self._store = store
        self._databases: dict[Path, sqlite3.Connection] = {}

    def _database(self, path: Path) -> sqlite3.Connection:
        if path not in self._databases:
            # Autocommit: the watcher never holds a transaction that would block the store.
            self._databases[path] = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
        return self._databases[path]

    def _sqlite_files(self) -> list[Path]:
        if self._spec.kind == "file":
            index = self._spec.file_root / "index.sqlite3"
            return [index] if index.exists() else []
        if self._spec.kind == "sqlite":
            return [self._spec.sqlite_path]
        return []

    async def fingerprint(self) -> object:
        """Changes whenever the store's data may have changed."""
        if self._spec.kind in ("file", "sqlite"):
            return await anyio.to_thread.run_sync(self._local_fingerprint)
        return await self.digest()

    def _local_fingerprint(self) -> object:
        versions = [
            self._database(path).execute("PRAGMA data_version").fetchone()[0]
            for path in self._sqlite_files()
        ]
        files = _file_fingerprint(self._spec.file_root) if self._spec.kind == "file" else []
        return (versions, files)

    async def digest(self) -> str:
        """A hash of everything the store holds that a call could change."""
        if self._spec.kind in ("file", "sqlite"):
            return await anyio.to_thread.run_sync(self._local_digest)
        if self._spec.kind == "postgres":
            return await _postgres_digest(self._store)
        if self._spec.kind == "redis":
            return await _redis_digest(self._store, self._spec.prefix)
        return await _logical_digest(self._store)

    def _local_digest(self) -> str:
        digest = hashlib.sha256()
        if self._spec.kind == "file":
            digest.update(file_tree_digest(self._spec.file_root, skip_sqlite=True).encode())
        for path in self._sqlite_files():
            _rows_digest(self._database(path), digest)
        return digest.hexdigest()

    def close(self) -> None:
        for connection in self._databases.values():
            connection.close()
        self._databases.clear()


async def _postgres_digest(store: SessionStore) -> str:
    import sqlalchemy as sa

    assert isinstance(store, SqlStore)
    engine = store.engine
    assert engine is not None, "the store is not initialized"
    prefix = store.table_prefix
    digest = hashlib.sha256()
    listing = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    async with engine.connect() as conn:
        names = sorted(
            name
            for (name,) in (await conn.execute(sa.text(listing))).all()
            if name.startswith(prefix) and not name.endswith("leases")
        )
        for name in names:
            rows = (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).all()
            digest.update(f"table {name}\n".encode())
            for line in sorted(repr(tuple(row)) for row in rows):
                digest.update(line.encode("utf-8", "surrogatepass"))
                digest.update(b"\n")
    return digest.hexdigest()


async def _redis_digest(store: SessionStore, prefix: str) -> str:
    assert isinstance(store, RedisStore)
    client = store.client
    keys = sorted([key async for key in client.scan_iter(match=f"{prefix}*", count=1000)])
    keys = [key for key in keys if b":lease:" not in key]
    digest = hashlib.sha256()
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.dump(key)
        values = await pipe.execute()
    for key, value in zip(keys, values, strict=True):
        digest.update(b"key " + key + b"\n")
        digest.update(value or b"")
        digest.update(b"\n")
    return digest.hexdigest()


async def _logical_digest(store: SessionStore) -> str:
    digest = hashlib.sha256()
    async for found in store.scan_sessions():
        digest.update(repr(found).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


async def stored_digest(spec: StoreSpec, store: SessionStore) -> str:
    """A hash of what ``store`` holds (see :meth:`StoreWatch.digest`)."""
    watch = StoreWatch(spec, store)
    try:
        return await watch.digest()
    finally:
        watch.close()
