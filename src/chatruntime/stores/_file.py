"""``FileStore``: sessions and agents as JSON files in one folder, the embedded default store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar
from weakref import WeakValueDictionary

import anyio
import anyio.to_thread

from ..models import (
    AgentSpec,
    BusyError,
    ChatSession,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    SessionHeader,
    StorageError,
    StoreVersionError,
)
from ._file_codec import Unreadable, decode_record, encode_record
from ._file_io import (
    ensure_dir,
    fsync_dir,
    list_dir,
    lock_file,
    read_file,
    remove,
    unlock_file,
    write_atomically,
)
from ._file_sessions import SessionFiles, is_file_id, logger, require_file_id
from ._lease import poll
from ._protocol import DEFAULT_LEASE_TIMEOUT, DEFAULT_LEASE_TTL, CorruptRecord, LoadReport

DEFAULT_FOLD_MIN_BYTES = 256 * 1024
DEFAULT_FOLD_RATIO = 0.5

_LEASE_POLL_FIRST = 0.005
_LEASE_POLL_MAX = 0.2

T = TypeVar("T")


class FileStore:
    """Keeps sessions and agents as JSON files under ``root``; needs no server.

    Layout, in the TypeScript original's wire shape (2-space indented JSON, camelCase keys),
    so its folders load unchanged::

        root/
          sessions/<agentId>/<sessionId>.json     the session as of its last fold
          sessions/<agentId>/<sessionId>.journal  writes since then, one JSON line each
          agents/<agentId>.json
          locks/<sessionId>.lock                  taken for each read and write
          leases/<sessionId>.lock                 held by ``lease()``

    **Per-turn cost.** :meth:`write_session` appends one line to the session's journal
    instead of rewriting the session, so a turn costs the same at turn 10 and turn 2,000.
    The journal is folded into the ``.json`` when it outgrows ``fold_min_bytes`` and
    ``fold_ratio`` times the ``.json``'s size, and on :meth:`close` for every session this
    store wrote. So the ``.json`` alone is the complete record of a session whenever no store
    has it open; after a crash the journal holds the rest, and every reader replays it.

    **Durability.** A call that returns has its data on disk (``fsync`` of the file and of
    its directory): it survives a killed process and a power cut. A call that raises has
    changed nothing. Files are replaced atomically (temporary file, ``rename``), never
    rewritten in place.

    **Several processes** may share ``root``: every change to a session happens under an
    exclusive file lock, so writes are serialised, revisions are checked against what is on
    disk, and a write by another process is seen by the next call here.

    **Damaged files** are reported, never rewritten or removed: ``load_sessions`` lists them
    with path and reason, and every call about such a session raises ``CorruptDataError``
    (``StoreVersionError`` for files written by a newer chatruntime). Names in
    ``sessions/`` that are not ``<uuid>/<uuid>.json`` are not sessions and are left alone.

    A session keeps the agent it was created for: its files live in that agent's folder.

    Example:
        >>> store = FileStore("./data")
        >>> await store.initialize()
        >>> await store.write_session(header, [], expected_revision=None)
        >>> await store.close()  # folds journals into the .json files

    Args:
        root: The folder to keep everything in; created if missing.
        fold_min_bytes: A journal smaller than this is never folded before ``close()``.
        fold_ratio: Fold once the journal reaches this share of the ``.json``'s size (keeps
            the average cost of a turn independent of the history's length).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fold_min_bytes: int = DEFAULT_FOLD_MIN_BYTES,
        fold_ratio: float = DEFAULT_FOLD_RATIO,
    ) -> None:
        if fold_min_bytes < 0 or fold_ratio < 0:
            raise InvalidInputError(
                "fold_min_bytes and fold_ratio must not be negative",
                fold_min_bytes=fold_min_bytes,
                fold_ratio=fold_ratio,
            )
        self._root = Path(root)
        self._agents_dir = self._root / "agents"
        self._leases_dir = self._root / "leases"
        self._sessions = SessionFiles(
            self._root, fold_min_bytes=fold_min_bytes, fold_ratio=fold_ratio
        )
        self._write_locks: WeakValueDictionary[str, anyio.Lock] = WeakValueDictionary()
        self._lease_locks: WeakValueDictionary[str, anyio.Lock] = WeakValueDictionary()
        self._journaled: set[str] = set()
        """Sessions this store left a journal for, to fold on close()."""

    def __repr__(self) -> str:
        return f"FileStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The folder this store keeps its files in."""
        return self._root

    async def initialize(self) -> None:
        """Create the folders under ``root`` (and ``root`` itself) if they are missing.

        Raises:
            StorageError: A folder cannot be created, e.g. a file is in its place.
        """
        await _in_thread(self._create_folders)

    async def close(self) -> None:
        """Fold every journal this store wrote into its session's ``.json``.

        Sessions that turned out damaged are left as they are. The store may be used (or
        initialized) again afterwards.

        Raises:
            StorageError: Some journals could not be folded; they stay valid and readable.
        """
        failures: list[StorageError] = []
        for session_id in sorted(self._journaled):
            async with self._write_lock(session_id):
                try:
                    await _in_thread(self._sessions.fold, session_id, shielded=True)
                except (CorruptDataError, StoreVersionError):
                    pass  # already reported by load_sessions/get_session; never rewritten
                except StorageError as error:
                    failures.append(error)
                    continue
            self._journaled.discard(session_id)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise StorageError(
                f"could not fold the journals of {len(failures)} sessions: "
                + "; ".join(error.message for error in failures),
                paths=[error.details.get("path") for error in failures],
            )

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        """Write ``agents/<id>.json`` atomically, replacing any previous version."""
        path = self._agent_path(spec.id)
        data = encode_record(spec)

        def save() -> None:
            ensure_dir(self._agents_dir)
            write_atomically(path, data)

        await _in_thread(save, shielded=True)

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        """The agent spec with this id, or ``None``.

        Raises:
            CorruptDataError: The agent's file is not valid JSON or not a valid spec.
        """
        return await _in_thread(self._read_agent, self._agent_path(agent_id))

    async def list_agents(self) -> list[AgentSpec]:
        """Every readable agent spec, oldest first; damaged files are logged and left out."""
        specs: list[AgentSpec] = []
        for name in await _in_thread(list_dir, self._agents_dir):
            stem, _, suffix = name.rpartition(".")
            if suffix != "json" or not is_file_id(stem):
                continue
            try:
                spec = await _in_thread(self._read_agent, self._agents_dir / name)
            except (CorruptDataError, StoreVersionError) as error:
                logger.warning("skipping agent %s: %s", stem, error.message)
                continue
            if spec is not None:
                specs.append(spec)
        return sorted(specs, key=lambda spec: (spec.created_at, spec.id))

    async def delete_agent(self, agent_id: str) -> bool:
        """Remove ``agents/<id>.json``; ``False`` if there was none. Sessions stay."""
        path = self._agent_path(agent_id)

        def delete() -> bool:
            if not remove(path):
                return False
            fsync_dir(path.parent)
            return True

        return await _in_thread(delete, shielded=True)

    # -- sessions -------------------------------------------------------------------------

    async def load_sessions(self) -> LoadReport:
        """Every session under ``sessions/``, plus the files that could not be read.

        A session whose id appears under two agents is reported for its second copy.
        """
        report = LoadReport()
        seen: dict[str, str] = {}
        for agent_id, session_id in await _in_thread(self._sessions.locations):
            path = self._sessions.snapshot_path(agent_id, session_id)
            if session_id in seen:
                report.corrupt.append(
                    CorruptRecord(
                        session_id,
                        str(path),
                        f"another copy of this session is in {seen[session_id]}",
                    )
                )
                continue
            seen[session_id] = str(path)
            try:
                session = await _in_thread(self._sessions.read_at, agent_id, session_id)
            except (CorruptDataError, StoreVersionError) as error:
                report.corrupt.append(
                    CorruptRecord(session_id, str(error.details["path"]), error.details["reason"])
                )
                continue
            if session is not None:
                report.sessions.append(session)
        return report

    async def get_session(self, session_id: str) -> ChatSession | None:
        """The session with its full history (snapshot plus journal), or ``None``.

        Raises:
            CorruptDataError: Its ``.json`` or ``.journal`` cannot be read (path and reason
                in the message and ``details``).
            StoreVersionError: It was written by a newer chatruntime.
        """
        require_file_id(session_id, "session_id")
        return await _in_thread(self._sessions.read, session_id)

    async def get_revision(self, session_id: str) -> int | None:
        """The stored revision, reading only journal lines this store has not seen yet."""
        require_file_id(session_id, "session_id")
        return await _in_thread(self._sessions.revision, session_id)

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
    ) -> None:
        """Create a session (``expected_revision=None``) or journal one write to it.

        A create writes the whole ``.json``; an update appends one line to the journal and
        needs ``header.revision == expected_revision + 1``.

        Raises:
            ConflictError: The session exists (create), is missing or moved on (update).
            InvalidInputError: Ids are not UUIDs, the revision does not follow
                ``expected_revision``, or the header names another agent than the stored one.
            CorruptDataError: The stored session is damaged; it is left untouched.
            StorageError: The write failed; the stored session is unchanged.
        """
        require_file_id(header.id, "session id")
        require_file_id(header.agent_id, "agent id")
        if expected_revision is not None and header.revision != expected_revision + 1:
            raise InvalidInputError(
                f"the header's revision must be {expected_revision + 1} "
                f"(expected_revision + 1), got {header.revision}",
                session_id=header.id,
                revision=header.revision,
                expected_revision=expected_revision,
            )
        items = list(new_items)
        async with self._write_lock(header.id):
            if expected_revision is None:
                await _in_thread(self._sessions.create, header, items, shielded=True)
                self._journaled.discard(header.id)
                return
            journal_remains = await _in_thread(
                self._sessions.append, header, items, expected_revision, shielded=True
            )
            if journal_remains:
                self._journaled.add(header.id)
            else:
                self._journaled.discard(header.id)

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session's ``.json`` and journal; ``False`` if there was none.

        Raises:
            CorruptDataError: The session is damaged; it is left for a person to inspect.
        """
        require_file_id(session_id, "session_id")
        async with self._write_lock(session_id):
            deleted = await _in_thread(self._sessions.delete, session_id, shielded=True)
        self._journaled.discard(session_id)
        return deleted

    @asynccontextmanager
    async def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AsyncIterator[None]:
        """Hold ``leases/<sessionId>.lock`` (an OS file lock) for the body of ``async with``.

        Other processes and other tasks of this one wait, polling, up to ``timeout``
        seconds. The operating system releases the lock when its holder's process dies, so
        a crashed holder never blocks anyone and ``ttl`` needs no renewal here: it is
        accepted for the protocol's sake.

        Raises:
            BusyError: Not granted within ``timeout`` (details: ``session_id``, ``timeout``).
        """
        require_file_id(session_id, "session_id")
        path = self._leases_dir / f"{session_id}.lock"
        local = self._lease_locks.get(session_id)
        if local is None:
            local = anyio.Lock()
            self._lease_locks[session_id] = local
        deadline = anyio.current_time() + max(timeout, 0.0)
        # Tasks of this process queue on an in-process lock first, so a release hands the
        # lease over at once instead of at the next poll.
        with anyio.move_on_after(max(timeout, 0.0)) as waiting:
            await local.acquire()
        if waiting.cancelled_caught:
            raise _busy(session_id, timeout)
        try:
            fd = await poll(
                partial(_in_thread, self._try_lease, path, shielded=True),
                deadline,
                first=_LEASE_POLL_FIRST,
                most=_LEASE_POLL_MAX,
                jitter=False,
            )
            if fd is None:
                raise _busy(session_id, timeout)
            try:
                yield
            finally:
                # The holder unlinks the file as it lets go, so leases/ does not collect one
                # file per session ever leased (lock_file copes with the race).
                await _in_thread(unlock_file, fd, path, shielded=True)
        finally:
            local.release()

    # -- internals ------------------------------------------------------------------------

    def _try_lease(self, path: Path) -> int | None:
        ensure_dir(path.parent)
        return lock_file(path, wait=False)

    def _write_lock(self, session_id: str) -> anyio.Lock:
        # Writes of one session in this process queue here rather than each holding a
        # worker thread blocked in flock.
        lock = self._write_locks.get(session_id)
        if lock is None:
            lock = anyio.Lock()
            self._write_locks[session_id] = lock
        return lock

    def _agent_path(self, agent_id: str) -> Path:
        return self._agents_dir / f"{require_file_id(agent_id, 'agent_id')}.json"

    def _read_agent(self, path: Path) -> AgentSpec | None:
        got = read_file(path)
        if got is None:
            return None
        agent_id = path.stem
        try:
            spec = decode_record(AgentSpec, got[0])
        except Unreadable as error:
            kind = StoreVersionError if error.newer else CorruptDataError
            raise kind(
                f"agent {agent_id} cannot be read from {path}: {error.reason}",
                agent_id=agent_id,
                path=str(path),
                reason=error.reason,
            ) from None
        if spec.id != agent_id:
            reason = f"the file holds agent {spec.id}"
            raise CorruptDataError(
                f"agent {agent_id} cannot be read from {path}: {reason}",
                agent_id=agent_id,
                path=str(path),
                reason=reason,
            )
        return spec

    def _create_folders(self) -> None:
        for folder in (self._root, self._sessions.sessions_dir, self._agents_dir):
            ensure_dir(folder)
        ensure_dir(self._sessions.locks_dir)
        ensure_dir(self._leases_dir)


async def _in_thread(function: Callable[..., T], *args: object, shielded: bool = False) -> T:
    """Run a blocking function in a worker thread.

    ``shielded`` is for changes: the caller's cancellation then waits for the thread's
    result, so the in-memory bookkeeping never disagrees with what reached the disk.
    """
    call = partial(function, *args)
    if not shielded:
        return await anyio.to_thread.run_sync(call)
    with anyio.CancelScope(shield=True):
        result = await anyio.to_thread.run_sync(call)
    return result


def _busy(session_id: str, timeout: float) -> BusyError:
    return BusyError(
        f"session {session_id} is busy: another holder kept it for over {timeout:g}s",
        session_id=session_id,
        timeout=timeout,
    )
