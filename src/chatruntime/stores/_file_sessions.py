"""The sessions half of ``FileStore``: a snapshot and a journal per session, an index, locks.

Each session lives in ``sessions/<agentId>/`` as

- ``<sessionId>.json``: the snapshot, the complete record as of its ``revision``;
- ``<sessionId>.journal``: the writes since, one line each (see ``_file_codec``).

- ``<sessionId>.checkpoints/``: its checkpoints (see ``_file_checkpoints``).

The session is the snapshot followed by the journal lines whose revision is above the
snapshot's. A write appends one line; a fold writes the replayed session as the new snapshot
and then removes the journal. A fold that dies between the two leaves lines the snapshot
already holds, which replay skips and the next write removes. A rewind (``keep``) is the
same with a shorter history: a new snapshot at the write's revision, then the journal goes.
Snapshots are written through one temporary name per session, ``.<sessionId>.json.tmp``;
one left by a killed writer is removed by whoever settles that writer's sessions
(:meth:`SessionFiles.settle_pending`), or by a rebuild of the index.

Every change to a session holds the session's lock exclusively (and the index's lock
shared: see ``_file_index``), every read holds it shared; both are byte-range locks in
``sessions.lock`` (see ``_file_locks``), so processes sharing the folder never see half of a
change. Where a session lives, its snapshot's revision and how far its journal was checked
are remembered per process, keyed by the files' identities (inode, size, times), so a write
or a revision check reads only the journal lines it has not seen yet: its cost does not grow
with the history, and a change by another process is always noticed.

All methods block; ``FileStore`` calls them in worker threads.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import ValidationError

from ..models import (
    ChatSession,
    CorruptDataError,
    HistoryItem,
    SessionHeader,
    SessionStatus,
    StorageError,
    StoreVersionError,
    is_uuid,
)
from ._errors import (
    check_keep,
    check_same_agent,
    limit_exceeded,
    session_exists,
    session_missing,
    stale_revision,
)
from ._file_checkpoints import CHECKPOINTS_SUFFIX, checkpoints_folder, remove_checkpoints
from ._file_codec import (
    JournalEntry,
    JournalItems,
    Layout,
    Unreadable,
    decode_journal_items_block,
    decode_journal_line,
    decode_journal_tail,
    decode_record,
    encode_header,
    encode_journal_line,
    encode_snapshot,
    extend_snapshot,
    item_span,
    layout_of,
)
from ._file_index import Entry, Found, SessionIndex
from ._file_io import (
    TEMPORARY_SUFFIX,
    Identity,
    append_durably,
    ensure_dir,
    fsync_dir,
    identity,
    last_lines,
    list_dir,
    opened,
    read_at,
    read_file,
    remove,
    stat_or_none,
    temporary_of,
    truncate_durably,
    write_atomically,
)
from ._file_locks import CREATE, INDEX, LockFile, Slot, lock_file_for
from ._file_reading import Head, journal_tail, read_head, read_last_items
from ._file_readonly import ReadOnlyIndex, denied
from ._paging import Position
from ._protocol import CorruptRecord, CreateLimits

logger = logging.getLogger("chatruntime.stores")

SNAPSHOT_SUFFIX = ".json"
JOURNAL_SUFFIX = ".journal"
LOCK_FILE_NAME = "sessions.lock"
PREVIOUS_LOCK_FOLDERS = ("locks", "leases")
"""Folders of per-session lock files the previous layout kept; removed on upgrade."""
_MEMO_SIZE = 8192

K = TypeVar("K")
V = TypeVar("V")


class _Memo(Generic[K, V]):
    """A bounded, thread-safe map that forgets the least recently used entries."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._guard:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._guard:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._guard:
            self._entries.pop(key, None)


@dataclass(frozen=True)
class _Snapshot:
    """A snapshot version, its revision, whether all of it was parsed and found valid
    (otherwise only its header was), and where its item lines are if it is in the ``LINES``
    layout and that was checked (see :func:`~._file_codec.item_span`), so that a tail read
    finds them without reading the head again."""

    identity: Identity
    revision: int
    validated: bool
    items: tuple[int, int] | None = None

    @property
    def size(self) -> int:
        return self.identity[2]


@dataclass(frozen=True)
class _Journal:
    """How far a journal file was checked, against which snapshot version."""

    snapshot: Identity
    file: tuple[int, int]
    complete: int
    """Bytes of complete, valid lines from the start of the file."""
    version: tuple[int, int, int]
    """Size, mtime and ctime (ns) when checked; the size counts a torn last line, if any."""
    lines: int
    first: int | None
    last: int | None


@dataclass(frozen=True)
class _State:
    snapshot: _Snapshot
    journal: _Journal | None

    @property
    def revision(self) -> int:
        if self.journal is None or self.journal.last is None:
            return self.snapshot.revision
        return max(self.snapshot.revision, self.journal.last)

    @property
    def journal_is_torn(self) -> bool:
        return self.journal is not None and self.journal.version[0] > self.journal.complete

    @property
    def journal_is_stale(self) -> bool:
        """The journal holds nothing the snapshot lacks (a fold stopped before removing it)."""
        return self.journal is not None and self.revision == self.snapshot.revision


@dataclass(frozen=True)
class LeaseGrant:
    """A lease just taken, the session's revision if it could be read with it, and whether
    the session has a journal (to fold when the store closes, if nobody else does)."""

    revision: int | None
    known: bool
    journal: bool = False


class _TailMiss(Exception):
    """The tail cannot be read on its own (layout, damage): read the whole session."""


class SessionFiles:
    """Reads and writes sessions under ``root``; every method blocks (worker threads only).

    :meth:`open` must run first (it opens the lock file and the index).

    Args:
        root: The store's folder.
        fold_min_bytes: See ``FileStore``.
        fold_ratio: See ``FileStore``.
        read_only: ``True``: open read-only; ``False``: open for writing or fail; ``None``:
            open for writing, or read-only where the folder cannot be written (see
            :meth:`open`).
    """

    def __init__(
        self,
        root: Path,
        *,
        fold_min_bytes: int,
        fold_ratio: float,
        read_only: bool | None = None,
    ) -> None:
        self.root = root
        self.sessions_dir = root / "sessions"
        self._fold_min_bytes = fold_min_bytes
        self._fold_ratio = fold_ratio
        self._read_only = read_only
        self.read_only_reason: str | None = None
        """Why the store is open read-only, or ``None`` while it is open for writing."""
        self._locks: LockFile | None = None
        self._index: SessionIndex | None = None
        self._orphans: set[str] = set()
        """Sessions with a journal left by a writer that died, found while settling it."""
        self._orphans_guard = threading.Lock()
        # Memos, always checked against the files before use. Entries are immutable and
        # replaced whole, so threads may race on them without ever reading a torn one.
        self._agent_of: _Memo[str, str] = _Memo(_MEMO_SIZE)
        self._snapshots: _Memo[str, _Snapshot] = _Memo(_MEMO_SIZE)
        self._journals: _Memo[str, _Journal] = _Memo(_MEMO_SIZE)
        self._path_memo: _Memo[tuple[str, str], tuple[Path, Path]] = _Memo(_MEMO_SIZE)
        self._indexed: _Memo[str, tuple[str, int | None]] = _Memo(_MEMO_SIZE)
        """(agent, revision) of sessions whose index row this process wrote or checked."""

    # -- opening ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._index is not None

    def open(self) -> None:
        """Create the folders, open the lock file and the index (rebuilding it if needed),
        settle what crashed writers left pending.

        Read-only (``read_only=True``, or with ``read_only=None`` when a folder, the lock
        file or the index cannot be created or written for lack of permission or on a
        read-only file system): nothing is created or changed, and the index is built in
        memory (see ``_file_readonly``); :attr:`read_only_reason` says why.

        Raises:
            StorageError: The folder cannot be opened (read-only neither, if it was asked
                for or the reason is not a lack of permission).
        """
        self.read_only_reason = None
        if self._read_only:
            self._open_read_only("it was opened with read_only=True")
            return
        try:
            self._open_writable()
        except StorageError as error:
            if self._read_only is False or not denied(error) or not os.path.isdir(self.root):
                raise
            logger.warning("opening the file store %s read-only: %s", self.root, error.message)
            self._open_read_only(error.message)

    def _open_read_only(self, reason: str) -> None:
        locks = lock_file_for(self.root / LOCK_FILE_NAME, read_only=True)
        index = ReadOnlyIndex(self.root, locks)
        self.read_only_reason = reason
        self._locks = locks
        index.open(self._scan_for_index)
        self._index = index

    def _open_writable(self) -> None:
        ensure_dir(self.root)
        ensure_dir(self.sessions_dir)
        locks = lock_file_for(self.root / LOCK_FILE_NAME)
        self._locks = locks
        index = SessionIndex(self.root, locks)
        rebuilt = index.open(self._scan_for_index)
        self._index = index
        if rebuilt is not None:
            self._remove_previous_lock_files()
        self.settle_pending()

    def close(self) -> None:
        index, self._index = self._index, None
        if index is not None:
            index.close()

    @property
    def locks(self) -> LockFile:
        assert self._locks is not None, "SessionFiles.open() was not called"
        return self._locks

    @property
    def index(self) -> SessionIndex:
        assert self._index is not None, "SessionFiles.open() was not called"
        return self._index

    def _remove_previous_lock_files(self) -> None:
        # The previous layout locked locks/<sessionId>.lock and leases/<sessionId>.lock;
        # nothing uses them now. Only their own files go, and a folder only once empty.
        for folder_name in PREVIOUS_LOCK_FOLDERS:
            folder = self.root / folder_name
            if not folder.is_dir():
                continue
            for name in list_dir(folder):
                stem, _, suffix = name.rpartition(".")
                if suffix == "lock" and is_uuid(stem):
                    remove(folder / name)
            if not list_dir(folder):
                try:
                    os.rmdir(folder)
                except OSError as error:
                    logger.info("left %s in place: %s", folder, error.strerror)

    # -- paths --------------------------------------------------------------------------------

    def snapshot_path(self, agent_id: str, session_id: str) -> Path:
        return self._paths(agent_id, session_id)[0]

    def journal_path(self, agent_id: str, session_id: str) -> Path:
        return self._paths(agent_id, session_id)[1]

    def _paths(self, agent_id: str, session_id: str) -> tuple[Path, Path]:
        # Remembered: building paths is a measurable share of a turn's cost.
        key = (agent_id, session_id)
        paths = self._path_memo.get(key)
        if paths is None:
            folder = self.sessions_dir / agent_id
            paths = (
                folder / f"{session_id}{SNAPSHOT_SUFFIX}",
                folder / f"{session_id}{JOURNAL_SUFFIX}",
            )
            self._path_memo.put(key, paths)
        return paths

    # -- locks --------------------------------------------------------------------------------

    @contextmanager
    def _reading(self, session_id: str) -> Iterator[None]:
        slot = Slot.session(session_id)
        self.locks.acquire(slot, shared=True)
        try:
            yield
        finally:
            self.locks.release(slot)

    @contextmanager
    def _changing(self, session_id: str) -> Iterator[None]:
        slot = Slot.session(session_id)
        self.locks.acquire(slot)
        try:
            with self._index_shared():
                yield
        finally:
            self.locks.release(slot)

    @contextmanager
    def session_locked(self, session_id: str, *, shared: bool) -> Iterator[str | None]:
        """Hold the session's lock, shared (to read) or exclusive (to change what belongs to
        it, with ``INDEX`` shared as every change does), for the body; yields the agent
        folder holding the session, or ``None`` if it does not exist."""
        with self._reading(session_id) if shared else self._changing(session_id):
            agent_id = self.find(session_id, search=False)
            if agent_id is None:
                entry = self.index.entry(session_id)
                agent_id = self.find(session_id, entry.agent_id if entry else None)
            yield agent_id

    @contextmanager
    def _index_shared(self) -> Iterator[None]:
        # Held by whatever changes session files or index rows, so that a rebuild, which
        # holds it exclusively, reads files that do not change under it.
        self.locks.acquire(INDEX, shared=True)
        try:
            yield
        finally:
            self.locks.release(INDEX)

    # -- locating -----------------------------------------------------------------------------

    def find(self, session_id: str, hint: str | None = None, *, search: bool = True) -> str | None:
        """The agent folder holding the session's snapshot, or ``None`` if there is none.

        Tries what this process remembers, then ``hint`` (the index's answer), then, if
        ``search``, every agent folder: that costs one ``stat`` per agent, and only happens
        for sessions that do not exist or that the index does not know.
        """
        located = self._locate(session_id, hint, search=search)
        return None if located is None else located[0]

    def _locate(
        self, session_id: str, hint: str | None = None, *, search: bool = True
    ) -> tuple[str, os.stat_result] | None:
        """:meth:`find`, with the stat of the snapshot found (for :meth:`_inspect`, which
        then need not ``stat`` it again)."""
        for candidate in (self._agent_of.get(session_id), hint):
            if candidate is None:
                continue
            stat = stat_or_none(self.snapshot_path(candidate, session_id))
            if stat is not None:
                self._agent_of.put(session_id, candidate)
                return candidate, stat
        self._agent_of.pop(session_id)
        if not search:
            return None
        found = self._search(session_id)
        if found is not None:
            self._agent_of.put(session_id, found[0])
        return found

    def _exists(self, session_id: str, agent_id: str) -> bool:
        """Whether a create must refuse the id: the index knows the session (or a change of
        it is pending), or its snapshot is in ``agent_id``'s folder. Other agents' folders
        are searched only in the first case, so a create costs the same however many agents
        there are (a snapshot copied by hand into another agent's folder, unknown to the
        index, is not looked for: the index learns of it when the session is read)."""
        entry, pending = self.index.lookup(session_id)
        if entry is not None or pending:
            return self.find(session_id, entry.agent_id if entry else None) is not None
        return self.find(session_id, agent_id, search=False) is not None

    def _search(self, session_id: str) -> tuple[str, os.stat_result] | None:
        for agent_id in self.agent_folders():
            stat = stat_or_none(self.snapshot_path(agent_id, session_id))
            if stat is not None:
                return agent_id, stat
        return None

    def agent_folders(self) -> list[str]:
        """Agent folders under ``sessions/``, sorted; other names are not sessions'."""
        return [name for name in list_dir(self.sessions_dir) if is_uuid(name)]

    def session_names(self, agent_id: str) -> list[str]:
        """Ids of the snapshots in an agent's folder, sorted; other files are not sessions."""
        return _session_names(list_dir(self.sessions_dir / agent_id))

    # -- reading ------------------------------------------------------------------------------

    def read(self, session_id: str, last: int | None = None) -> ChatSession | None:
        """The session (with only its ``last`` items, if given), or ``None``; its index row
        is repaired if it disagrees with the files."""
        with self._reading(session_id):
            indexed = self._indexed.get(session_id)
            agent_id = self.find(session_id, indexed[0] if indexed else None, search=False)
            entry: Entry | None = None
            if agent_id is None or indexed is None:
                entry = self.index.entry(session_id)
                indexed = (entry.agent_id, entry.revision) if entry else None
                agent_id = agent_id or self.find(session_id, entry.agent_id if entry else None)
            if agent_id is None:
                if indexed is not None:
                    self._repair(None, session_id)
                return None
            try:
                session = self._read_locked(session_id, agent_id, last)
            except (CorruptDataError, StoreVersionError):
                if indexed is None:
                    self._repair(Found(session_id, agent_id, None), session_id)
                raise
            if indexed != (agent_id, session.revision):
                self._repair(Found(session_id, agent_id, session.header()), session_id)
            else:
                self._indexed.put(session_id, indexed)
            return session

    def revision(self, session_id: str) -> int | None:
        with self._reading(session_id):
            located = self._locate(session_id)
            if located is None:
                return None
            return self._inspect(session_id, *located).revision

    def try_lease(self, session_id: str) -> LeaseGrant | None:
        """Take the session's lease unless someone holds it, and read its revision."""
        slot = Slot.lease(session_id)
        if not self.locks.acquire(slot, wait=False):
            return None
        try:
            with self._reading(session_id):
                located = self._locate(session_id)
                if located is None:
                    return LeaseGrant(None, known=True)
                state = self._inspect(session_id, *located)
            return LeaseGrant(state.revision, known=True, journal=state.journal is not None)
        except StorageError:
            # A damaged session: whoever reads it next reports that; the lease stands.
            return LeaseGrant(None, known=False)
        except BaseException:
            self.locks.release(slot)
            raise

    def release_lease(self, session_id: str) -> None:
        self.locks.release(Slot.lease(session_id))

    def scan_one(self, agent_id: str, session_id: str) -> ChatSession | CorruptRecord | None:
        """The session in ``agent_id``'s folder for a full scan, or why it cannot be read;
        ``None`` if it is gone. A second copy of a session under another agent is corrupt."""
        with self._reading(session_id):
            path = self.snapshot_path(agent_id, session_id)
            if stat_or_none(path) is None:
                return None
            entry = self.index.entry(session_id)
            canonical = self.find(session_id, entry.agent_id if entry else None)
            if canonical is not None and canonical != agent_id:
                return CorruptRecord(
                    session_id,
                    str(path),
                    f"another copy of this session is in "
                    f"{self.snapshot_path(canonical, session_id)}",
                )
            try:
                return self._read_whole(session_id, agent_id)
            except (CorruptDataError, StoreVersionError) as error:
                return CorruptRecord(
                    session_id, str(error.details["path"]), error.details["reason"]
                )

    def count(self, user_id: str | None = None, live_at: int | None = None) -> int:
        self.settle_pending()
        return self.index.count(user_id=user_id, live_at=live_at)

    def expired(self, now: int, limit: int) -> list[str]:
        self.settle_pending()
        return self.index.expired(now, limit)

    def page(
        self,
        *,
        agent_id: str | None,
        user_id: str | None,
        status: SessionStatus | None,
        below: Position | None,
        limit: int,
    ) -> list[SessionHeader]:
        self.settle_pending()
        rows = self.index.page(
            agent_id=agent_id, user_id=user_id, status=status, below=below, limit=limit
        )
        headers: list[SessionHeader] = []
        for row in rows:
            try:
                headers.append(SessionHeader.model_validate_json(row))
            except ValidationError as error:
                # Written by a newer chatruntime sharing the folder, or edited by hand: the
                # other sessions are still worth listing.
                logger.warning("skipping a session the index cannot describe: %s", error)
        return headers

    # -- the index ----------------------------------------------------------------------------

    def settle_pending(self) -> None:
        """Rewrite the index rows of sessions whose writer died between changing the files
        and the index, and clear up after such writers (:meth:`_after_crash`). A session
        being changed right now is skipped (its writer is alive).

        Runs when the store opens and before every listing and count: so whatever a killed
        process left is cleared by the next process that opens the folder, at the cost of
        its own sessions only (the ``pending`` entries of a dead owner), never of a scan."""
        for session_id, owner in self.index.pending():
            slot = Slot.session(session_id)
            if not self.locks.acquire(slot, wait=False):
                continue
            try:
                with self._index_shared():
                    if owner != self.index.owner:
                        self._after_crash(session_id)
                    if self.index.settle(session_id, owner, self.current):
                        self._indexed.pop(session_id)
            finally:
                self.locks.release(slot)

    def _after_crash(self, session_id: str) -> None:
        """A session a dead process was changing (its lock held): remove the temporary
        snapshot a fold or create it was killed in may have left, and note a journal it
        left, for :meth:`take_orphans` (``FileStore.close`` folds it, so the ``.json`` is
        the whole record again once no store has the folder open)."""
        entry = self.index.entry(session_id)
        agent_id = self.find(session_id, entry.agent_id if entry else None)
        for folder in {agent_id, entry.agent_id if entry else None}:
            if folder is None:
                continue
            leftover = temporary_of(self.snapshot_path(folder, session_id))
            if remove(leftover):
                logger.info("removed %s, left by a writer that died", leftover)
        if agent_id is not None and stat_or_none(self.journal_path(agent_id, session_id)):
            with self._orphans_guard:
                self._orphans.add(session_id)

    def take_orphans(self) -> set[str]:
        """The sessions found with a journal left by a dead writer since the last call."""
        with self._orphans_guard:
            found, self._orphans = self._orphans, set()
        return found

    def current(self, session_id: str) -> Found | None:
        """What the files say of a session now, read from them alone (not the index)."""
        found = self._search(session_id)
        return None if found is None else self._found_at(found[0], session_id)

    def _scan_for_index(self) -> Iterator[Found]:
        """Every session, for a rebuild of the index (which holds ``INDEX`` exclusively, so
        no session changes meanwhile, in any process). Except when read-only, it also removes
        what writers that died left beside the sessions: temporary snapshots (the previous
        version named them at random, so only a scan finds those) and the checkpoints of a
        session whose delete was cut short."""
        for agent_id in self.agent_folders():
            folder = self.sessions_dir / agent_id
            names = list_dir(folder)
            sessions = _session_names(names)
            if self.read_only_reason is None:
                self._remove_leftovers(folder, names, set(sessions))
            for session_id in sessions:
                yield self._found_at(agent_id, session_id)

    def _remove_leftovers(self, folder: Path, names: list[str], sessions: set[str]) -> None:
        for name in names:
            stem = name[1:].partition(".")[0] if name.startswith(".") else ""
            if (
                is_uuid(stem)
                and name.endswith(TEMPORARY_SUFFIX)
                and name[1 + len(stem) :].startswith(SNAPSHOT_SUFFIX)
            ):
                remove(folder / name)
                logger.info("removed %s, left by a writer that died", folder / name)
            stem, _, suffix = name.rpartition(".")
            if f".{suffix}" == CHECKPOINTS_SUFFIX and is_uuid(stem) and stem not in sessions:
                remove_checkpoints(folder / name)
                logger.info("removed %s, left by a delete that was cut short", folder / name)

    def _found_at(self, agent_id: str, session_id: str) -> Found:
        try:
            header = self._current_header(session_id, agent_id)
        except (CorruptDataError, StoreVersionError):
            header = None
        return Found(session_id, agent_id, header)

    def _current_header(self, session_id: str, agent_id: str) -> SessionHeader:
        """The session's header from the snapshot's head and the journal's last line."""
        header = self._snapshot_header(session_id, agent_id)
        path = self.journal_path(agent_id, session_id)
        with opened(path) as got:
            if got is None:
                return header
            fd, stat = got
            _, line, lines = journal_tail(fd, path, stat.st_size, 1)
            if not lines:
                return header
            try:
                entry = decode_journal_line(line)
            except Unreadable as error:
                raise self._unreadable(session_id, path, error) from None
            return entry.header if entry.revision > header.revision else header

    def _repair(self, found: Found | None, session_id: str) -> None:
        with self._index_shared():
            self._finish(found, session_id)

    def _finish(self, found: Found | None, session_id: str) -> None:
        """Write the session's index row (see ``SessionIndex.finish``) and remember it."""
        if self.index.finish(found, session_id) and found and found.header:
            self._indexed.put(session_id, (found.agent_id, found.header.revision))
        else:
            self._indexed.pop(session_id)

    def _settle_after_failure(self, session_id: str) -> None:
        """After a change that failed part way: write the row the files now call for."""
        try:
            self._finish(self.current(session_id), session_id)
        except StorageError as error:
            logger.warning(
                "could not read session %s back after a failed change; its index row is "
                "repaired later: %s",
                session_id,
                error,
            )

    # -- changing -----------------------------------------------------------------------------

    def create(
        self, header: SessionHeader, items: list[HistoryItem], limits: CreateLimits | None = None
    ) -> None:
        """Create the session; with ``limits``, only if the live sessions counted leave room.

        Every create holds ``CREATE`` shared, one with limits holds it exclusively: so the
        count it checks cannot change in any process, up to its own create (deletes and
        expiry only make room), and its limits hold exactly however many processes race.
        """
        self.locks.acquire(CREATE, shared=limits is None)
        try:
            if limits is not None:
                # A dead writer's session may be missing from the count until settled.
                self.settle_pending()
            self._create(header, items, limits)
        finally:
            self.locks.release(CREATE)

    def _create(
        self, header: SessionHeader, items: list[HistoryItem], limits: CreateLimits | None
    ) -> None:
        session_id, agent_id = header.id, header.agent_id
        data = encode_snapshot(ChatSession.from_parts(header, items))
        with self._changing(session_id):
            if self._exists(session_id, agent_id):
                raise session_exists(session_id)
            if limits is not None:
                total = self.index.count(live_at=limits.now)
                of_user = (
                    self.index.count(user_id=header.user_id, live_at=limits.now)
                    if header.user_id is not None
                    else 0
                )
                limit_exceeded(limits, header, total, of_user)
            with self.index.changing(session_id):
                try:
                    ensure_dir(self.sessions_dir / agent_id)
                    # A delete that died after removing the snapshot may have left its
                    # journal and checkpoints.
                    remove(self.journal_path(agent_id, session_id))
                    remove_checkpoints(checkpoints_folder(self.sessions_dir, agent_id, session_id))
                    stat = write_atomically(
                        self.snapshot_path(agent_id, session_id), data, locked=True
                    )
                except BaseException:
                    self._settle_after_failure(session_id)
                    raise
                self._agent_of.put(session_id, agent_id)
                self._snapshots.put(
                    session_id, _Snapshot(identity(stat), header.revision, True, item_span(data))
                )
                self._journals.pop(session_id)
                self._finish(Found(session_id, agent_id, header), session_id)

    def append(self, header: SessionHeader, items: Sequence[HistoryItem], expected: int) -> bool:
        """Journal one write guarded by ``expected``; ``True`` while a journal remains."""
        session_id = header.id
        header_json = encode_header(header)
        line = encode_journal_line(header_json, header.revision, items)
        with self._changing(session_id):
            located = self._locate(session_id)
            if located is None:
                raise session_missing(session_id)
            agent_id = located[0]
            check_same_agent(header, agent_id)
            state = self._inspect(session_id, *located)
            if state.revision != expected:
                raise stale_revision(session_id, state.revision, expected)
            path = self.journal_path(agent_id, session_id)
            kept = state.journal if not state.journal_is_stale else None
            with self.index.changing(session_id):
                try:
                    if state.journal is not None and kept is None:
                        remove(path)
                    elif kept is not None and state.journal_is_torn:
                        # A torn line from an append that never returned: cut it off, or
                        # this line would follow it and the journal would be corrupt from
                        # then on.
                        truncate_durably(path, kept.complete)
                    size_before = kept.complete if kept else 0
                    stat = append_durably(path, line, size_before=size_before)
                except BaseException:
                    self._settle_after_failure(session_id)
                    raise
                self._journals.put(
                    session_id,
                    _Journal(
                        snapshot=state.snapshot.identity,
                        file=(stat.st_dev, stat.st_ino),
                        complete=stat.st_size,
                        version=_version(stat),
                        lines=(kept.lines if kept else 0) + 1,
                        first=kept.first if kept and kept.first is not None else header.revision,
                        last=header.revision,
                    ),
                )
                self._finish(Found(session_id, agent_id, header, header_json), session_id)
            if not self._fold_due(stat.st_size, state.snapshot.size):
                return True
            try:
                with self.index.changing(session_id):
                    self._fold_locked(session_id, agent_id)
            except StorageError as error:
                # The write itself is durable in the journal; folding can wait for the next
                # write or close(), so its failure must not fail this call.
                logger.warning("could not fold the journal of session %s: %s", session_id, error)
                return True
            return False

    def rewrite(
        self, header: SessionHeader, items: Sequence[HistoryItem], expected: int, keep: int
    ) -> None:
        """Write the session anew: its first ``keep`` items, then ``items``, under ``header``
        (guarded by ``expected``). One snapshot replaced atomically, so a crash leaves the
        old history or the new one; the journal it replaces holds only revisions below the
        new snapshot's, which replay skips, so removing it need not be durable."""
        session_id = header.id
        with self._changing(session_id):
            located = self._locate(session_id)
            if located is None:
                raise session_missing(session_id)
            agent_id = located[0]
            check_same_agent(header, agent_id)
            state = self._inspect(session_id, *located)
            if state.revision != expected:
                raise stale_revision(session_id, state.revision, expected)
            stored = self._read_whole(session_id, agent_id)
            check_keep(session_id, keep, len(stored.history))
            data = encode_snapshot(ChatSession.from_parts(header, [*stored.history[:keep], *items]))
            with self.index.changing(session_id):
                try:
                    stat = write_atomically(
                        self.snapshot_path(agent_id, session_id), data, locked=True
                    )
                except BaseException:
                    self._settle_after_failure(session_id)
                    raise
                self._snapshots.put(
                    session_id, _Snapshot(identity(stat), header.revision, True, item_span(data))
                )
                self._journals.pop(session_id)
                self._finish(Found(session_id, agent_id, header), session_id)
            try:
                remove(self.journal_path(agent_id, session_id))
            except StorageError as error:
                # The write is done; the journal left holds nothing the snapshot lacks, and
                # the next write removes it.
                logger.warning("could not remove the journal of session %s: %s", session_id, error)

    def fold(self, session_id: str) -> bool:
        """Fold the session's journal into its snapshot, if it has one; whether it had.
        Noted in the index's ``pending`` first, so that if this process dies while folding,
        the next one to open the folder clears up after it (see :meth:`settle_pending`)."""
        with self._changing(session_id):
            agent_id = self.find(session_id)
            if agent_id is None or not stat_or_none(self.journal_path(agent_id, session_id)):
                return False
            with self.index.changing(session_id):
                self._fold_locked(session_id, agent_id)
            return True

    def fold_unless_leased(self, session_id: str) -> bool | None:
        """:meth:`fold`, unless someone holds the session's lease (a turn is under way, in
        this process or another, whose holder folds the journal when it closes): then
        ``None``, without waiting."""
        slot = Slot.lease(session_id)
        if not self.locks.acquire(slot, wait=False):
            return None
        try:
            return self.fold(session_id)
        finally:
            self.locks.release(slot)

    def journal_names(self, agent_id: str) -> list[str]:
        """Ids of the sessions with a journal in an agent's folder, sorted (one directory
        listing: for ``FileStore.fold_journals`` only, never on a turn's path)."""
        found: list[str] = []
        for name in list_dir(self.sessions_dir / agent_id):
            stem, _, suffix = name.rpartition(".")
            if f".{suffix}" == JOURNAL_SUFFIX and is_uuid(stem):
                found.append(stem)
        return found

    def delete(self, session_id: str) -> bool:
        with self._changing(session_id):
            entry = self.index.entry(session_id)
            agent_id = self.find(session_id, entry.agent_id if entry else None)
            if agent_id is None:
                if entry is not None:
                    self._finish(None, session_id)
                return False
            # A corrupt session is the only copy of what it held: deleting it is for a
            # person to decide, by hand, not for a call that cannot even show its content.
            self._read_whole(session_id, agent_id)
            with self.index.changing(session_id):
                try:
                    # The snapshot goes first: without it the session does not exist,
                    # whereas a journal or checkpoints left alone by a crash here are
                    # ignored, and cleared by the next create of the id or index rebuild.
                    snapshot = self.snapshot_path(agent_id, session_id)
                    remove(snapshot)
                    remove(self.journal_path(agent_id, session_id))
                    remove(temporary_of(snapshot))
                    remove_checkpoints(checkpoints_folder(self.sessions_dir, agent_id, session_id))
                    # Without this a power cut could bring the deleted session back.
                    fsync_dir(snapshot.parent)
                except BaseException:
                    self._settle_after_failure(session_id)
                    raise
                self._forget(session_id)
                self._finish(None, session_id)
            return True

    # -- internals ----------------------------------------------------------------------------

    def _fold_due(self, journal_bytes: int, snapshot_bytes: int) -> bool:
        # Folding when the journal reaches a fixed share of the snapshot keeps the amortised
        # cost of a turn constant: each fold rewrites the history once per that share of
        # new bytes, however long the history already is.
        return journal_bytes >= max(self._fold_min_bytes, self._fold_ratio * snapshot_bytes)

    def _fold_locked(self, session_id: str, agent_id: str) -> None:
        journal_path = self.journal_path(agent_id, session_id)
        if stat_or_none(journal_path) is None:
            return
        snapshot_path = self.snapshot_path(agent_id, session_id)
        snapshot = self._inspect(session_id, agent_id).snapshot
        got = read_file(snapshot_path)
        if got is None:
            raise session_missing(session_id)
        data, stat = got
        if identity(stat) != snapshot.identity:  # only a program ignoring our locks does this
            raise StorageError(f"{snapshot_path} changed while locked", path=str(snapshot_path))
        applied = self._journal_entries(session_id, agent_id, snapshot)
        if applied:
            header = applied[-1].header
            items = [item for entry in applied for item in entry.items]
            folded: bytes | None = None
            if snapshot.validated and layout_of(data) == Layout.LINES:
                folded = extend_snapshot(data, header, items)
            if folded is None:
                # Parsed whole: a snapshot only ever checked by its header is checked in full
                # before its bytes are carried over (a damaged one is never rewritten), and
                # one in an older layout is written in the current one.
                old = self._decode_snapshot(session_id, agent_id, snapshot_path, data)
                folded = encode_snapshot(ChatSession.from_parts(header, old.history + items))
            stat = write_atomically(snapshot_path, folded, locked=True)
            self._snapshots.put(
                session_id, _Snapshot(identity(stat), header.revision, True, item_span(folded))
            )
        # No directory sync needed: if this removal is lost, the journal comes back holding
        # only revisions the (durable) snapshot has, and replay skips them.
        remove(journal_path)
        self._journals.pop(session_id)

    def _forget(self, session_id: str) -> None:
        self._indexed.pop(session_id)
        self._agent_of.pop(session_id)
        self._snapshots.pop(session_id)
        self._journals.pop(session_id)

    def _unreadable(
        self, session_id: str, path: Path, error: Unreadable, line: int | None = None
    ) -> StorageError:
        reason = f"line {line}: {error.reason}" if line is not None else error.reason
        kind = StoreVersionError if error.newer else CorruptDataError
        return kind(
            f"session {session_id} cannot be read from {path}: {reason}",
            session_id=session_id,
            path=str(path),
            reason=reason,
        )

    def _corrupt(
        self, session_id: str, path: Path, reason: str, line: int | None = None
    ) -> StorageError:
        return self._unreadable(session_id, path, Unreadable(reason), line)

    def _check_names(
        self, session_id: str, agent_id: str, path: Path, found: SessionHeader
    ) -> None:
        if found.id != session_id or found.agent_id != agent_id:
            raise self._corrupt(
                session_id,
                path,
                f"the file holds session {found.id} of agent {found.agent_id}, "
                f"but its path says session {session_id} of agent {agent_id}",
            )

    def _decode_snapshot(
        self, session_id: str, agent_id: str, path: Path, data: bytes
    ) -> ChatSession:
        try:
            session = decode_record(ChatSession, data)
        except Unreadable as error:
            raise self._unreadable(session_id, path, error) from None
        self._check_names(session_id, agent_id, path, session)
        return session

    def _snapshot_header(self, session_id: str, agent_id: str) -> SessionHeader:
        return self._snapshot_state(session_id, agent_id)[1]

    def _snapshot_state(self, session_id: str, agent_id: str) -> tuple[_Snapshot, SessionHeader]:
        """The snapshot and its header, read from its head alone where the layout allows
        (else from the whole file, which is then known valid); remembered."""
        path = self.snapshot_path(agent_id, session_id)
        with opened(path) as got:
            if got is None:
                raise session_missing(session_id)
            fd, stat = got
            try:
                head = read_head(fd, path, stat.st_size)
            except Unreadable:
                head = None  # parsed whole below, for the exact reason
            if head is not None:
                self._check_names(session_id, agent_id, path, head.header)
                header: SessionHeader = head.header
                validated = False
            else:
                header = self._decode_snapshot(
                    session_id, agent_id, path, read_at(fd, path, 0, stat.st_size)
                )
                validated = True
        snapshot = self._snapshots.get(session_id)
        if snapshot is None or snapshot.identity != identity(stat) or not snapshot.validated:
            snapshot = _Snapshot(identity(stat), header.revision, validated, _span_of(head))
            self._snapshots.put(session_id, snapshot)
        return snapshot, header

    def _read_locked(self, session_id: str, agent_id: str, last: int | None) -> ChatSession:
        if last is not None:
            try:
                return self._read_tail(session_id, agent_id, last)
            except _TailMiss:
                pass
        session = self._read_whole(session_id, agent_id)
        if last is not None:
            session.history = session.history[len(session.history) - last :] if last else []
        return session

    def _read_whole(self, session_id: str, agent_id: str) -> ChatSession:
        path = self.snapshot_path(agent_id, session_id)
        got = read_file(path)
        if got is None:
            raise session_missing(session_id)
        data, stat = got
        session = self._decode_snapshot(session_id, agent_id, path, data)
        snapshot = _Snapshot(identity(stat), session.revision, True, item_span(data))
        self._snapshots.put(session_id, snapshot)
        applied = self._journal_entries(session_id, agent_id, snapshot)
        if not applied:
            return session
        history = session.history + [item for entry in applied for item in entry.items]
        return ChatSession.from_parts(applied[-1].header, history)

    def _read_tail(self, session_id: str, agent_id: str, last: int) -> ChatSession:
        """The header and last ``last`` items, from the ends of the files.

        Reads the journal's last lines (one parse), and the snapshot's last lines only if
        the journal holds too few items; the snapshot's head only when this process has not
        read this version of it yet, or when its header is the session's (no journal).

        Raises:
            _TailMiss: The files cannot be read this way (layout, a damaged line, a gap): the
                caller reads the whole session, which reports damage exactly.
        """
        path = self.snapshot_path(agent_id, session_id)
        with opened(path) as got:
            if got is None:
                raise session_missing(session_id)
            fd, stat = got
            head: Head | None = None
            snapshot = self._snapshots.get(session_id)
            if snapshot is None or snapshot.identity != identity(stat) or snapshot.items is None:
                head = self._tail_head(session_id, agent_id, fd, path, stat)
                snapshot = _Snapshot(
                    identity(stat),
                    head.header.revision,
                    snapshot is not None
                    and snapshot.identity == identity(stat)
                    and snapshot.validated,
                    (head.items_start, head.items_end),
                )
                self._snapshots.put(session_id, snapshot)
            assert snapshot.items is not None
            newest, entries = self._journal_tail(session_id, agent_id, snapshot.revision, last)
            if newest is None:
                if head is None:
                    head = self._tail_head(session_id, agent_id, fd, path, stat)
                newest = head.header
            items = [item for entry in reversed(entries) for item in entry.items]
            if len(items) >= last:
                return ChatSession.from_parts(newest, items[len(items) - last :])
            try:
                older = read_last_items(fd, path, snapshot.items, last - len(items))
            except Unreadable:
                raise _TailMiss from None
            return ChatSession.from_parts(newest, older + items)

    def _tail_head(
        self, session_id: str, agent_id: str, fd: int, path: Path, stat: os.stat_result
    ) -> Head:
        """The head of a snapshot in the ``LINES`` layout, checked to be this session's.

        Raises:
            _TailMiss: Another layout, or a head that does not read.
        """
        try:
            head = read_head(fd, path, stat.st_size)
        except Unreadable:
            raise _TailMiss from None
        if head is None or head.layout != Layout.LINES:
            raise _TailMiss
        if head.header.id != session_id or head.header.agent_id != agent_id:
            raise _TailMiss
        return head

    def _journal_tail(
        self, session_id: str, agent_id: str, snapshot_revision: int, last: int
    ) -> tuple[SessionHeader | None, list[JournalEntry | JournalItems]]:
        """The journal's entries after the snapshot, newest first, going back only until they
        hold ``last`` items, and the newest one's header (``None`` if there are none)."""
        path = self.journal_path(agent_id, session_id)
        entries: list[JournalEntry | JournalItems] = []
        with opened(path) as got:
            if got is None:
                return None, entries
            fd, stat = got
            # Lines are parsed a batch at a time, as many as the items still wanted need at
            # four items a line (a tool-using turn), then at the rate seen so far: one parse
            # for a typical tail read, the newest line whole (its header is the session's),
            # the others for their items.
            offset, data, lines = journal_tail(fd, path, stat.st_size, _lines_for(last, 4.0))
            if not lines:
                return None, entries
            split = data.rfind(b"\n")
            try:
                older, newest = decode_journal_tail(data[: max(split, 0)], data[split + 1 :])
            except Unreadable:
                raise _TailMiss from None
            batch: list[JournalEntry | JournalItems] = [newest, *reversed(older)]
            count = 0
            read = lines
            while True:
                for entry in batch:
                    if (
                        entry.header.id != session_id
                        or entry.header.agent_id != agent_id
                        or entry.revision != entry.header.revision
                        or (entries and entry.revision != entries[-1].revision - 1)
                    ):
                        raise _TailMiss
                    if entry.revision <= snapshot_revision:
                        # Older lines the snapshot holds already.
                        return (newest.header if entries else None), entries
                    entries.append(entry)
                    count += len(entry.items)
                    if count >= last:
                        return newest.header, entries
                if offset <= 0:
                    break
                # The separator before the lines read last ends the ones before them.
                wanted = _lines_for(last - count, count / read)
                offset, data, lines = last_lines(fd, path, 0, offset - 1, wanted)
                read += lines
                try:
                    batch = list(reversed(decode_journal_items_block(data)))
                except Unreadable:
                    raise _TailMiss from None
        if entries and entries[-1].revision != snapshot_revision + 1:
            raise _TailMiss  # revisions missing between the snapshot and the journal
        return (newest.header if entries else None), entries

    def _journal_entries(
        self, session_id: str, agent_id: str, snapshot: _Snapshot
    ) -> list[JournalEntry]:
        """The whole journal's lines that come after ``snapshot``, checked."""
        got = read_file(self.journal_path(agent_id, session_id))
        if got is None:
            self._journals.pop(session_id)
            return []
        data, stat = got
        start = _Journal(snapshot.identity, (stat.st_dev, stat.st_ino), 0, (0, 0, 0), 0, None, None)
        journal, entries = self._check_journal(session_id, agent_id, snapshot, start, data, stat)
        self._journals.put(session_id, journal)
        return [entry for entry in entries if entry.revision > snapshot.revision]

    def _inspect(
        self, session_id: str, agent_id: str, stat: os.stat_result | None = None
    ) -> _State:
        """The session's revision state, reading only what the memos cannot vouch for;
        ``stat``: the snapshot's, if the caller just took it."""
        if stat is None:
            stat = stat_or_none(self.snapshot_path(agent_id, session_id))
        if stat is None:
            raise session_missing(session_id)
        snapshot = self._snapshots.get(session_id)
        if snapshot is None or snapshot.identity != identity(stat):
            snapshot, _ = self._snapshot_state(session_id, agent_id)
        path = self.journal_path(agent_id, session_id)
        stat = stat_or_none(path)
        if stat is None:
            self._journals.pop(session_id)
            return _State(snapshot, None)
        file = (stat.st_dev, stat.st_ino)
        start = self._journals.get(session_id)
        if start is not None and start.snapshot == snapshot.identity and start.file == file:
            if _version(stat) == start.version:
                return _State(snapshot, start)
            if stat.st_size < start.complete:
                start = None
        else:
            start = None
        if start is None:
            start = _Journal(snapshot.identity, file, 0, (0, 0, 0), 0, None, None)
        got = read_file(path, start.complete)
        if got is None:
            self._journals.pop(session_id)
            return _State(snapshot, None)
        journal, _ = self._check_journal(session_id, agent_id, snapshot, start, *got)
        self._journals.put(session_id, journal)
        return _State(snapshot, journal)

    def _check_journal(
        self,
        session_id: str,
        agent_id: str,
        snapshot: _Snapshot,
        start: _Journal,
        data: bytes,
        stat: os.stat_result,
    ) -> tuple[_Journal, list[JournalEntry]]:
        """Check ``data``, the journal's bytes after ``start.complete`` (``stat``: its file)."""
        path = self.journal_path(agent_id, session_id)
        complete = data.rfind(b"\n") + 1
        lines, first, last = start.lines, start.first, start.last
        entries: list[JournalEntry] = []
        for raw in data[:complete].split(b"\n")[:-1]:
            lines += 1
            try:
                entry = decode_journal_line(raw)
            except Unreadable as error:
                raise self._unreadable(session_id, path, error, lines) from None
            if entry.header.id != session_id or entry.header.agent_id != agent_id:
                raise self._corrupt(
                    session_id,
                    path,
                    f"the line is about session {entry.header.id} of agent {entry.header.agent_id}",
                    lines,
                )
            if entry.revision != entry.header.revision or (
                last is not None and entry.revision != last + 1
            ):
                raise self._corrupt(
                    session_id,
                    path,
                    f"revision {entry.revision} (header {entry.header.revision}) does not "
                    f"follow revision {last}",
                    lines,
                )
            first = entry.revision if first is None else first
            last = entry.revision
            entries.append(entry)
        if first is not None and last is not None and last > snapshot.revision:
            if first > snapshot.revision + 1:
                raise self._corrupt(
                    session_id,
                    path,
                    f"the journal starts at revision {first} but the snapshot is at "
                    f"revision {snapshot.revision}: revisions in between are missing",
                )
        journal = _Journal(
            snapshot=snapshot.identity,
            file=start.file,
            complete=start.complete + complete,
            version=_version(stat),
            lines=lines,
            first=first,
            last=last,
        )
        return journal, entries


def _session_names(names: list[str]) -> list[str]:
    """The session ids among the names in an agent's folder (their snapshots'), in order."""
    found: list[str] = []
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if f".{suffix}" == SNAPSHOT_SUFFIX and is_uuid(stem):
            found.append(stem)
    return found


def _lines_for(items: int, per_line: float) -> int:
    """How many journal lines to read at once for ``items`` more items at ``per_line`` items
    a line: at least one, at most 64."""
    if per_line <= 0:
        return 64
    return max(1, min(64, math.ceil(items / per_line)))


def _span_of(head: Head | None) -> tuple[int, int] | None:
    if head is None or head.layout != Layout.LINES:
        return None
    return (head.items_start, head.items_end)


def _version(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
