"""``FileStore``: sessions and agents as JSON files in one folder, the embedded default store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ..models import (
    LIST_LIMIT_DEFAULT,
    AgentSpec,
    ChatSession,
    Checkpoint,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    SessionHeader,
    SessionPage,
    SessionStatus,
    StorageError,
    StoreVersionError,
    is_uuid,
    require_uuid,
)
from ._errors import busy, check_revision_step, check_write_options
from ._file_checkpoints import CheckpointFiles
from ._file_codec import Unreadable, decode_record, encode_record
from ._file_io import ensure_dir, fsync_dir, list_dir, read_file, remove, write_atomically
from ._file_sessions import LeaseGrant, SessionFiles, logger
from ._keyed_locks import KeyedLocks
from ._lease import poll, run_to_end
from ._paging import check_listing, page_from_sorted
from ._protocol import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    CorruptRecord,
    CreateLimits,
    Lease,
)

DEFAULT_FOLD_MIN_BYTES = 256 * 1024
DEFAULT_FOLD_RATIO = 0.5

_LEASE_POLL_FIRST = 0.005
_LEASE_POLL_MAX = 0.2

T = TypeVar("T")


@dataclass
class _FileLease(Lease):
    """A lease of this store: remembers which store granted it, so that only that store's
    ``write_session`` gives it back."""

    store: object = field(default=None, repr=False, compare=False)


class FileStore:
    """Keeps sessions and agents as JSON files under ``root``; needs no server.

    Layout, in the TypeScript original's wire shape (camelCase keys, epoch-millisecond times),
    so its folders load unchanged::

        root/
          sessions/<agentId>/<sessionId>.json     the session as of its last fold
          sessions/<agentId>/<sessionId>.journal  writes since then, one JSON line each
          sessions/<agentId>/<sessionId>.checkpoints/<checkpointId>.json
                                                  its checkpoints, one file each
          agents/<agentId>.json
          index.sqlite3 (+ -wal, -shm)            the listing index, derived from the files
          sessions.lock                           empty; its bytes are the sessions' locks

    A snapshot (``.json``) is indented JSON whose last key is ``history``, one compact item
    per line: its header is read without its history, and its last items from the end of the
    file (``get_session(id, last=N)`` reads the journal's last lines, then the snapshot's,
    never the rest). Cortex's files, and this store's previous layout, are read whole until
    their next fold writes them in this one.

    **Per-turn cost.** :meth:`write_session` appends one line to the session's journal
    (one ``fsync``) instead of rewriting the session, so a turn costs the same at turn 10 and
    turn 2,000. The journal is folded into the ``.json`` when it outgrows ``fold_min_bytes``
    and ``fold_ratio`` times the ``.json``'s size, and on :meth:`close` for every session
    this store wrote. So the ``.json`` alone is the complete record of a session whenever no
    store has it open; after a crash the journal holds the rest, and every reader replays it,
    until the next store to open the folder finds it and folds it on its :meth:`close`: it
    finds the journals of the sessions the dead process was writing when it opens (and at
    every listing or count), and any other when it takes a session's lease.
    :meth:`fold_journals` (``chatruntime admin gc``) folds every journal in the folder at
    once, by listing it: no other call does.

    **Rewinding** (``write_session(..., keep=N)``) writes the session's ``.json`` anew, with
    its first ``N`` items and the new ones, atomically like a fold: a crash leaves the old
    history or the new one.

    **Expiry and limits.** :meth:`count_sessions` and :meth:`expired_sessions` read the
    index (it keeps each session's ``expiresAt``, with an index by it). A creation with
    ``limits`` counts the live sessions and creates its own under one exclusive lock of
    ``sessions.lock`` that every creation takes (shared when it checks no limits), so the
    limits hold exactly however many processes create at once.

    **Listing** (:meth:`list_sessions`, :meth:`count_sessions`) reads ``index.sqlite3``
    alone: one row per session, updated in the same locked step as every write, with an
    index per filter, so a page costs the same at any number of sessions. The files stay the
    truth: the index is rebuilt from them when it is missing, unreadable, of another version,
    or possibly behind after the machine stopped while a store had it open; a row found
    stale when its session is read is rewritten; see ``_file_index`` for how. Opening costs
    the same at any size otherwise.

    **Durability.** A call that returns has its data on disk (``fsync`` of the file, and of
    its directory when it creates a file): it survives a killed process and a power cut. A
    call that raises has changed nothing. Files are replaced atomically (temporary file,
    ``rename``), never rewritten in place.

    **Several processes** may share ``root``: every change to a session happens under an
    exclusive lock of the session (a byte of ``sessions.lock``: no file per session, nothing
    written to take it), so writes are serialised, revisions are checked against what is on
    disk, and a write by another process is seen by the next call here. The operating
    system drops the locks of a process that dies.

    **Leftovers.** A process killed while it wrote a snapshot (a create, fold or rewind)
    may leave its temporary file, ``.<sessionId>.json.tmp``. Each session has one such name
    only, so the session's next snapshot write replaces it, and the next store to open the
    folder (or to list or count) removes it with the rest that dead process left (see
    ``_file_sessions.SessionFiles.settle_pending``); a rebuild of the index removes any it
    finds, also those of earlier versions, which named them at random. No call scans the
    folder for them.

    **Read-only.** ``read_only=True``, or a folder where ``sessions.lock`` or
    ``index.sqlite3`` cannot be created or written (permissions, a read-only file system;
    with the default ``read_only=None``): the store opens without creating or changing
    anything, and reads, lists and counts as usual (its index then lives in memory, built
    from the files when it opens: see ``_file_readonly``). Every change, and a session's
    lease, raises ``StorageError`` saying the store is read-only and why.

    **Damaged files** are reported, never rewritten or removed: :meth:`scan_sessions`
    yields a ``CorruptRecord`` with path and reason for each, and every call about such a
    session raises ``CorruptDataError`` (``StoreVersionError`` for files written by a newer
    chatruntime). Names in ``sessions/`` that are not ``<uuid>/<uuid>.json`` are not
    sessions and are left alone.

    **Upgrading** a folder of the previous layout needs nothing: the first store to open it
    builds the index (one scan of the files), and removes the previous layout's
    ``locks/<sessionId>.lock`` and ``leases/<sessionId>.lock`` files, then those folders if
    nothing else is in them. Stores of the previous version must not share the folder with
    this one (they lock other files).

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
        read_only: ``True``: open read-only; ``False``: open for writing, and fail where the
            folder cannot be written; ``None`` (the default): read-only only where the
            folder cannot be written.

    Raises:
        ValueError: ``fold_min_bytes`` or ``fold_ratio`` is negative.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fold_min_bytes: int = DEFAULT_FOLD_MIN_BYTES,
        fold_ratio: float = DEFAULT_FOLD_RATIO,
        read_only: bool | None = None,
    ) -> None:
        if fold_min_bytes < 0 or fold_ratio < 0:
            raise ValueError(
                "fold_min_bytes and fold_ratio must not be negative, got "
                f"fold_min_bytes={fold_min_bytes!r}, fold_ratio={fold_ratio!r}"
            )
        self._root = Path(root)
        self._agents_dir = self._root / "agents"
        self._sessions = SessionFiles(
            self._root, fold_min_bytes=fold_min_bytes, fold_ratio=fold_ratio, read_only=read_only
        )
        self._checkpoints = CheckpointFiles(self._sessions)
        self._opening = anyio.Lock()
        self._limiter: anyio.CapacityLimiter | None = None
        # Writes of one session in this process queue here rather than each holding a
        # worker thread blocked on the session's lock.
        self._write_locks = KeyedLocks()
        # Leases of one session in this process queue here first, so a release hands the
        # lease over at once instead of at the next poll.
        self._lease_locks = KeyedLocks()
        self._journaled: set[str] = set()
        """Sessions this store left a journal for, or found one in, to fold on close()."""

    def __repr__(self) -> str:
        return f"FileStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The folder this store keeps its files in."""
        return self._root

    @property
    def read_only(self) -> str | None:
        """Why the store is open read-only (see the class docs), or ``None`` if it is not
        (or not open yet)."""
        return self._sessions.read_only_reason if self._sessions.is_open else None

    async def initialize(self) -> None:
        """Create the folders under ``root`` (and ``root`` itself) if they are missing, and
        open the index (building it from the files if it is missing or cannot be trusted);
        clear up after writers that died (see the class docs). Read-only, it creates and
        changes nothing: it builds the index in memory.

        Other calls do this themselves on first use.

        Raises:
            StorageError: A folder cannot be created, e.g. a file is in its place.
        """
        await self._ready()
        if self.read_only is None:
            await self._run(ensure_dir, self._agents_dir)

    async def close(self) -> None:
        """Fold every journal this store wrote, or found left by a process that died, into
        its session's ``.json``, and close the index (the last store to close one flushes it
        to disk).

        Sessions that turned out damaged are left as they are. The store may be used (or
        initialized) again afterwards.

        Raises:
            StorageError: Some journals could not be folded; they stay valid and readable.
        """
        failures: list[StorageError] = []
        if self._sessions.is_open:
            self._journaled |= self._sessions.take_orphans()
        if self.read_only is not None:
            self._journaled.clear()
        for session_id in sorted(self._journaled):
            async with self._write_locks.hold(session_id):
                try:
                    await self._run(self._sessions.fold, session_id, shielded=True)
                except (CorruptDataError, StoreVersionError):
                    pass  # already reported by scan_sessions/get_session; never rewritten
                except StorageError as error:
                    failures.append(error)
                    continue
            self._journaled.discard(session_id)
        async with self._opening:
            if self._sessions.is_open:
                await self._run(self._sessions.close, shielded=True)
        _raise_fold_failures(failures)

    async def fold_journals(self) -> int:
        """Fold the journal of every session in the folder into its ``.json``, including
        those left by processes that died; how many were folded.

        An operator's call (``chatruntime admin gc``): it lists every agent folder, so its
        cost grows with the number of sessions, which no turn, listing or ``close()`` pays.
        Each journal is folded under its session's lock, as :meth:`close` folds it. A
        session whose lease someone holds right now (a turn under way, here or in another
        process) is skipped without waiting: its holder's store folds it when it closes, or
        the next call of this does. Damaged sessions are left as they are (see
        :meth:`scan_sessions`).

        Raises:
            StorageError: The store is read-only, or some journals could not be folded (they
                stay valid and readable; the others were folded, ``details["folded"]`` says
                how many).
        """
        await self._writable("fold the journals")
        folded = 0
        failures: list[StorageError] = []
        for agent_id in await self._run(self._sessions.agent_folders):
            for session_id in await self._run(self._sessions.journal_names, agent_id):
                try:
                    done = await self._fold_unless_leased(session_id)
                except (CorruptDataError, StoreVersionError) as error:
                    logger.warning("left the journal of session %s: %s", session_id, error)
                    continue
                except StorageError as error:
                    failures.append(error)
                    continue
                if done:
                    folded += 1
        _raise_fold_failures(failures, folded=folded)
        return folded

    async def _fold_unless_leased(self, session_id: str) -> bool:
        """Fold the session's journal unless its lease is held or awaited here, or held by
        another process; whether a journal was folded."""
        try:
            free = self._lease_locks.try_acquire(session_id)
        except RuntimeError:  # the calling task holds the lease itself
            free = False
        if not free:
            return False
        try:
            async with self._write_locks.hold(session_id):
                done = await self._run(self._sessions.fold_unless_leased, session_id, shielded=True)
        finally:
            self._lease_locks.release(session_id)
        if done is not None:
            # Folded, or found without a journal: nothing left for close() to fold.
            self._journaled.discard(session_id)
        return bool(done)

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        """Write ``agents/<id>.json`` atomically, replacing any previous version."""
        path = self._agent_path(spec.id)
        data = encode_record(spec)
        await self._writable(f"save agent {spec.id}")

        def save() -> None:
            ensure_dir(self._agents_dir)
            write_atomically(path, data)

        await self._run(save, shielded=True)

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        """The agent spec with this id, or ``None``.

        Raises:
            CorruptDataError: The agent's file is not valid JSON or not a valid spec.
        """
        return await self._run(self._read_agent, self._agent_path(agent_id))

    async def list_agents(self) -> list[AgentSpec]:
        """Every readable agent spec, oldest first; damaged files are logged and left out."""
        specs: list[AgentSpec] = []
        for name in await self._run(list_dir, self._agents_dir):
            stem, _, suffix = name.rpartition(".")
            if suffix != "json" or not is_uuid(stem):
                continue
            try:
                spec = await self._run(self._read_agent, self._agents_dir / name)
            except (CorruptDataError, StoreVersionError) as error:
                logger.warning("skipping agent %s: %s", stem, error.message)
                continue
            if spec is not None:
                specs.append(spec)
        return sorted(specs, key=lambda spec: (spec.created_at, spec.id))

    async def delete_agent(self, agent_id: str) -> bool:
        """Remove ``agents/<id>.json``; ``False`` if there was none. Sessions stay."""
        path = self._agent_path(agent_id)
        await self._writable(f"delete agent {agent_id}")

        def delete() -> bool:
            if not remove(path):
                return False
            fsync_dir(path.parent)
            return True

        return await self._run(delete, shielded=True)

    # -- sessions -------------------------------------------------------------------------

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        """Every session under ``sessions/``, and a ``CorruptRecord`` for each file that
        cannot be read, one at a time, agent folder by agent folder.

        A session whose id appears under two agents is reported for the copy the index does
        not point to (the later folder, if the index knows neither).
        """
        await self._ready()
        for agent_id in await self._run(self._sessions.agent_folders):
            for session_id in await self._run(self._sessions.session_names, agent_id):
                found = await self._run(self._sessions.scan_one, agent_id, session_id)
                if found is not None:
                    yield found

    async def count_sessions(
        self, *, user_id: str | None = None, live_at: int | None = None
    ) -> int:
        """How many sessions the index holds (damaged ones included), of ``user_id`` only
        and not expired at ``live_at`` (epoch ms) if given."""
        await self._ready()
        return await self._run(self._sessions.count, user_id, live_at)

    async def expired_sessions(self, now: int, *, limit: int = 1000) -> list[str]:
        """Ids of up to ``limit`` sessions with ``expires_at <= now``, earliest expiry first,
        from the index's expiry index."""
        await self._ready()
        return await self._run(self._sessions.expired, now, limit)

    async def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of session headers from the index, most recent activity first.

        A session whose files cannot be read is listed as it was last written, or not at all
        if it was never read successfully; reading it raises.

        Raises:
            InvalidInputError: ``limit`` out of 1..1000, a bad status, or a cursor no listing
                returned.
        """
        below = check_listing(
            agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
        )
        await self._ready()
        headers = await self._run(
            partial(
                self._sessions.page,
                agent_id=agent_id,
                user_id=user_id,
                status=status,
                below=below,
                limit=limit + 1,
            )
        )
        return page_from_sorted(headers, limit)

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        """The session, or ``None``: its full history (snapshot plus journal), or with
        ``last`` only its last ``last`` items, read from the ends of its files.

        Raises:
            InvalidInputError: ``last`` is negative.
            CorruptDataError: Its ``.json`` or ``.journal`` cannot be read (path and reason
                in the message and ``details``).
            StoreVersionError: It was written by a newer chatruntime.
        """
        require_uuid(session_id, "session_id")
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
            raise InvalidInputError(
                f"last must be a non-negative integer or None, got {last!r}", field="last"
            )
        await self._ready()
        return await self._run(self._sessions.read, session_id, last)

    async def get_revision(self, session_id: str) -> int | None:
        """The stored revision, reading only journal lines this store has not seen yet."""
        require_uuid(session_id, "session_id")
        await self._ready()
        return await self._run(self._sessions.revision, session_id)

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
        lease: Lease | None = None,
        keep: int | None = None,
        limits: CreateLimits | None = None,
    ) -> None:
        """Create a session (``expected_revision=None``) or journal one write to it.

        A create writes the whole ``.json`` (with ``limits``, only if the live sessions
        leave room: see the class docs); an update appends one line to the journal and
        needs ``header.revision == expected_revision + 1``, or with ``keep`` writes the
        ``.json`` anew with the first ``keep`` stored items and ``new_items``. Given this
        store's ``lease`` on the session, a successful write gives it back in the same step
        (``lease.released``).

        Raises:
            ConflictError: The session exists (create), is missing or moved on (update).
            InvalidInputError: Ids are not UUIDs, the revision does not follow
                ``expected_revision``, the header names another agent than the stored one,
                or ``keep``/``limits`` do not fit the write (see ``SessionStore``).
            LimitExceededError: Creating would pass one of ``limits``; nothing was written.
            CorruptDataError: The stored session is damaged; it is left untouched.
            StorageError: The write failed, or the store is read-only; the stored session
                is unchanged.
        """
        require_uuid(header.id, "session id")
        require_uuid(header.agent_id, "agent id")
        check_write_options(header, expected_revision, keep, limits)
        check_revision_step(header, expected_revision)
        items = list(new_items)
        held = (
            lease
            if isinstance(lease, _FileLease)
            and lease.store is self
            and lease.session_id == header.id
            and not lease.released
            else None
        )
        await self._writable(f"write session {header.id}")

        def write() -> None:
            # The bookkeeping is done here, in the worker thread, with the write: a caller
            # cancelled meanwhile cannot leave it behind what reached the disk.
            if expected_revision is None:
                self._sessions.create(header, items, limits)
                remains = False
            elif keep is not None:
                self._sessions.rewrite(header, items, expected_revision, keep)
                remains = False
            else:
                remains = self._sessions.append(header, items, expected_revision)
            if remains:
                self._journaled.add(header.id)
            else:
                self._journaled.discard(header.id)
            if held is not None:
                self._sessions.release_lease(header.id)
                held.released = True

        async with self._write_locks.hold(header.id):
            await self._run(write, shielded=True)

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session's ``.json`` and journal; ``False`` if there was none.

        Raises:
            CorruptDataError: The session is damaged; it is left for a person to inspect.
        """
        require_uuid(session_id, "session_id")
        await self._writable(f"delete session {session_id}")
        async with self._write_locks.hold(session_id):
            deleted = await self._run(self._sessions.delete, session_id, shielded=True)
        self._journaled.discard(session_id)
        return deleted

    # -- checkpoints ----------------------------------------------------------------------

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Write ``<sessionId>.checkpoints/<checkpointId>.json`` atomically beside the
        session, replacing a checkpoint with the same id.

        Raises:
            ConflictError: The session does not exist (checkpoints live with it).
            StorageError: It cannot be written, or the store is read-only.
        """
        require_uuid(checkpoint.session_id, "session_id")
        require_uuid(checkpoint.id, "checkpoint_id")
        await self._writable(f"save a checkpoint of session {checkpoint.session_id}")
        await self._run(self._checkpoints.save, checkpoint, shielded=True)

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """One checkpoint of the session, or ``None``.

        Raises:
            CorruptDataError: Its file cannot be read (path and reason in ``details``).
            StoreVersionError: It was written by a newer chatruntime.
        """
        require_uuid(session_id, "session_id")
        require_uuid(checkpoint_id, "checkpoint_id")
        await self._ready()
        return await self._run(self._checkpoints.get, session_id, checkpoint_id)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        """Every checkpoint of the session, newest first; damaged files are logged and left
        out (``get_checkpoint`` reports them)."""
        require_uuid(session_id, "session_id")
        await self._ready()
        return await self._run(self._checkpoints.list, session_id)

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        """Remove one checkpoint's file; ``False`` if there was none."""
        require_uuid(session_id, "session_id")
        require_uuid(checkpoint_id, "checkpoint_id")
        await self._writable(f"delete a checkpoint of session {session_id}")
        return await self._run(self._checkpoints.delete, session_id, checkpoint_id, shielded=True)

    async def clear_checkpoints(self, session_id: str) -> int:
        """Remove every checkpoint of the session (and its folder); how many there were."""
        require_uuid(session_id, "session_id")
        await self._writable(f"clear the checkpoints of session {session_id}")
        return await self._run(self._checkpoints.clear, session_id, shielded=True)

    @asynccontextmanager
    async def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AsyncIterator[Lease]:
        """Hold the session's lease (a lock on its byte of ``sessions.lock``) for the body of
        ``async with``; the lease yielded carries the session's revision, read in the same
        step (``revision_known``).

        Other processes and other tasks of this one wait, polling, up to ``timeout``
        seconds. The operating system releases the lock when its holder's process dies, so
        a crashed holder never blocks anyone and ``ttl`` needs no renewal here: it is
        accepted for the protocol's sake. Taking and giving back the lease creates no file
        and writes nothing.

        Raises:
            BusyError: Not granted within ``timeout`` (details: ``session_id``, ``timeout``).
            StorageError: The store is read-only.
        """
        require_uuid(session_id, "session_id")
        await self._writable(f"take the lease of session {session_id}")
        deadline = anyio.current_time() + max(timeout, 0.0)
        if not await self._lease_locks.acquire(session_id, timeout=max(timeout, 0.0)):
            raise busy(session_id, timeout)
        try:
            grant: LeaseGrant | None = await poll(
                partial(self._run, self._sessions.try_lease, session_id, shielded=True),
                deadline,
                first=_LEASE_POLL_FIRST,
                most=_LEASE_POLL_MAX,
                jitter=False,
            )
            if grant is None:
                raise busy(session_id, timeout)
            if grant.journal:
                # Maybe left by a process that died: folded on close() if still there, so
                # the .json is the whole record again once no store has the folder open.
                self._journaled.add(session_id)
            held = _FileLease(
                session_id=session_id,
                revision=grant.revision,
                revision_known=grant.known,
                store=self,
            )
            try:
                yield held
            finally:
                if not held.released:
                    await self._run(self._sessions.release_lease, session_id, shielded=True)
                    held.released = True
        finally:
            self._lease_locks.release(session_id)

    # -- internals ------------------------------------------------------------------------

    async def _ready(self) -> None:
        """Open the session files' lock file and index, once (again after ``close()``)."""
        if self._sessions.is_open:
            return
        async with self._opening:
            if not self._sessions.is_open:
                await self._run(self._sessions.open, shielded=True)

    async def _writable(self, action: str) -> None:
        """Open the store if needed, and refuse ``action`` if it is open read-only.

        Raises:
            StorageError: The store is read-only (message: what and why).
        """
        await self._ready()
        reason = self.read_only
        if reason is not None:
            raise StorageError(
                f"cannot {action}: the file store {self._root} is open read-only ({reason})",
                path=str(self._root),
                reason=reason,
            )

    async def _run(self, function: Callable[..., T], *args: object, shielded: bool = False) -> T:
        """Run a blocking function in one of this store's worker threads.

        ``shielded`` is for changes, and for taking and giving back locks: the call then
        runs to its end even if the caller is cancelled meanwhile, by anyio or by a raw
        ``Task.cancel()`` (see :func:`~._lease.run_to_end`), and the caller learns its
        outcome before the cancellation reaches it. So a lock taken in the thread is never
        lost to a caller that stopped waiting, and the in-memory bookkeeping never disagrees
        with what reached the disk.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(_THREADS)
        call = partial(function, *args)
        if not shielded:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        return await run_to_end(partial(anyio.to_thread.run_sync, call, limiter=self._limiter))

    def _agent_path(self, agent_id: str) -> Path:
        return self._agents_dir / f"{require_uuid(agent_id, 'agent_id')}.json"

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


def _raise_fold_failures(failures: list[StorageError], **details: object) -> None:
    """Raise what folding journals failed with (if anything), ``details`` added: the one
    error, or one for them all."""
    if len(failures) == 1:
        failures[0].details.update(details)
        raise failures[0]
    if failures:
        raise StorageError(
            f"could not fold the journals of {len(failures)} sessions: "
            + "; ".join(error.message for error in failures),
            paths=[error.details.get("path") for error in failures],
            **details,
        )


_THREADS = 2
"""Worker threads one store uses at most. Its calls hold the GIL between their system calls,
and every system call hands the GIL to another thread that wants it: each thread more costs
every call more such hand-overs (measured with 200 sessions taking turns at once, on two
cores: 20 context switches a turn with one thread, 34 with two, 68 with eight, and 10% more
CPU a turn with eight than with two). Two still overlap one turn's ``fsync`` with another
call's work; on a disk whose ``fsync`` takes milliseconds, more would overlap more of them
(with 5 ms added to each ``fsync``: 150 turns a second with two threads, 220 with eight)."""
