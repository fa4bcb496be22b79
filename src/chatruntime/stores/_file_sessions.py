"""The sessions half of ``FileStore``: a snapshot and a journal per session, under file locks.

Each session lives in ``sessions/<agentId>/`` as

- ``<sessionId>.json``: the snapshot, the complete record as of its ``revision``;
- ``<sessionId>.journal``: the writes since, one line each (see ``_file_codec``).

The session is the snapshot followed by the journal lines whose revision is above the
snapshot's. A write appends one line; a fold writes the replayed session as the new snapshot
and then removes the journal. A fold that dies between the two leaves lines the snapshot
already holds, which replay skips and the next write removes.

Every change to a session happens under an exclusive ``flock`` of ``locks/<sessionId>.lock``,
reads under a shared one, so processes sharing the folder never see half of a change. Where a
session lives, its snapshot's revision and how far its journal was checked are remembered
per process, keyed by the files' identities (inode, size, times), so a write or a revision
check reads only the journal lines it has not seen yet: its cost does not grow with the
history, and a change by another process is always noticed.

All methods block; ``FileStore`` calls them in worker threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..models import (
    ChatSession,
    ConflictError,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    SessionHeader,
    StorageError,
    StoreVersionError,
    is_uuid,
    require_uuid,
)
from ._file_codec import (
    JournalEntry,
    Unreadable,
    decode_journal_line,
    decode_record,
    encode_journal_line,
    encode_snapshot,
    extend_snapshot,
)
from ._file_io import (
    Identity,
    append_durably,
    ensure_dir,
    fsync_dir,
    identity,
    list_dir,
    lock_file,
    read_file,
    remove,
    stat_or_none,
    truncate_durably,
    unlock_file,
    write_atomically,
)

logger = logging.getLogger("chatruntime.stores")

SNAPSHOT_SUFFIX = ".json"
JOURNAL_SUFFIX = ".journal"


def is_file_id(value: object) -> bool:
    """True for a UUID in canonical lowercase form, the only ids that name files here."""
    return is_uuid(value) and isinstance(value, str) and value == value.lower()


def require_file_id(value: object, what: str) -> str:
    """Return ``value`` if it is a lowercase UUID, else raise ``InvalidInputError``.

    Upper case is refused rather than folded: on a case-sensitive file system two spellings
    of one UUID would otherwise name two different files.
    """
    checked = require_uuid(value, what)
    if checked != checked.lower():
        raise InvalidInputError(
            f"{what} must be a UUID in lowercase, got {value!r}", field=what, value=repr(value)
        )
    return checked


@dataclass(frozen=True)
class _Snapshot:
    """A snapshot version known to be valid, and its revision."""

    identity: Identity
    revision: int

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


class SessionFiles:
    """Reads and writes sessions under ``root``; every method blocks (worker threads only)."""

    def __init__(self, root: Path, *, fold_min_bytes: int, fold_ratio: float) -> None:
        self.sessions_dir = root / "sessions"
        self.locks_dir = root / "locks"
        self._fold_min_bytes = fold_min_bytes
        self._fold_ratio = fold_ratio
        # Memos, always checked against the files before use. Entries are immutable and
        # replaced whole, so threads may race on them without ever reading a torn one.
        self._agent_of: dict[str, str] = {}
        self._snapshots: dict[str, _Snapshot] = {}
        self._journals: dict[str, _Journal] = {}

    # -- paths ------------------------------------------------------------------------------

    def snapshot_path(self, agent_id: str, session_id: str) -> Path:
        return self.sessions_dir / agent_id / f"{session_id}{SNAPSHOT_SUFFIX}"

    def journal_path(self, agent_id: str, session_id: str) -> Path:
        return self.sessions_dir / agent_id / f"{session_id}{JOURNAL_SUFFIX}"

    def lock_path(self, session_id: str) -> Path:
        return self.locks_dir / f"{session_id}.lock"

    # -- public operations --------------------------------------------------------------------

    def find(self, session_id: str) -> str | None:
        """The agent folder holding the session's snapshot, or ``None`` if there is none."""
        cached = self._agent_of.get(session_id)
        if cached is not None and stat_or_none(self.snapshot_path(cached, session_id)):
            return cached
        self._agent_of.pop(session_id, None)
        for agent_id in list_dir(self.sessions_dir):
            if is_file_id(agent_id) and stat_or_none(self.snapshot_path(agent_id, session_id)):
                self._agent_of[session_id] = agent_id
                return agent_id
        return None

    def locations(self) -> list[tuple[str, str]]:
        """``(agent_id, session_id)`` of every snapshot; other files are not sessions."""
        found: list[tuple[str, str]] = []
        for agent_id in list_dir(self.sessions_dir):
            if not is_file_id(agent_id):
                continue
            for name in list_dir(self.sessions_dir / agent_id):
                stem, _, suffix = name.rpartition(".")
                if f".{suffix}" == SNAPSHOT_SUFFIX and is_file_id(stem):
                    found.append((agent_id, stem))
        return found

    def read(self, session_id: str) -> ChatSession | None:
        if self.find(session_id) is None:
            return None
        with self._lock(session_id, shared=True):
            agent_id = self.find(session_id)
            if agent_id is None:
                return None
            return self._read_locked(session_id, agent_id)

    def read_at(self, agent_id: str, session_id: str) -> ChatSession | None:
        """The session whose snapshot is in ``agent_id``'s folder (``load_sessions``)."""
        with self._lock(session_id, shared=True):
            if stat_or_none(self.snapshot_path(agent_id, session_id)) is None:
                return None
            self._agent_of[session_id] = agent_id
            return self._read_locked(session_id, agent_id)

    def revision(self, session_id: str) -> int | None:
        if self.find(session_id) is None:
            return None
        with self._lock(session_id, shared=True):
            agent_id = self.find(session_id)
            if agent_id is None:
                return None
            return self._inspect(session_id, agent_id).revision

    def create(self, header: SessionHeader, items: list[HistoryItem]) -> None:
        session_id, agent_id = header.id, header.agent_id
        with self._lock(session_id):
            existing = self.find(session_id)
            if existing is not None:
                raise ConflictError(
                    f"session {session_id} already exists "
                    f"({self.snapshot_path(existing, session_id)})",
                    session_id=session_id,
                )
            ensure_dir(self.sessions_dir / agent_id)
            # A delete that died after removing the snapshot may have left its journal.
            remove(self.journal_path(agent_id, session_id))
            session = ChatSession.from_parts(header, items)
            stat = write_atomically(
                self.snapshot_path(agent_id, session_id), encode_snapshot(session)
            )
            self._agent_of[session_id] = agent_id
            self._snapshots[session_id] = _Snapshot(identity(stat), header.revision)
            self._journals.pop(session_id, None)

    def append(self, header: SessionHeader, items: list[HistoryItem], expected: int) -> bool:
        """Journal one write guarded by ``expected``; ``True`` while a journal remains."""
        session_id = header.id
        if self.find(session_id) is None:
            raise self._missing(session_id)
        with self._lock(session_id):
            agent_id = self.find(session_id)
            if agent_id is None:
                raise self._missing(session_id)
            if agent_id != header.agent_id:
                raise InvalidInputError(
                    f"session {session_id} belongs to agent {agent_id}; "
                    f"a session cannot move to another agent ({header.agent_id})",
                    session_id=session_id,
                    agent_id=header.agent_id,
                )
            state = self._inspect(session_id, agent_id)
            if state.revision != expected:
                raise ConflictError(
                    f"session {session_id} is at revision {state.revision}, "
                    f"not {expected}: reload it and try again",
                    session_id=session_id,
                    stored_revision=state.revision,
                    expected_revision=expected,
                )
            path = self.journal_path(agent_id, session_id)
            kept = state.journal if not state.journal_is_stale else None
            if state.journal is not None and kept is None:
                remove(path)
            elif kept is not None and state.journal_is_torn:
                # A torn line from an append that never returned: cut it off, or this
                # line would follow it and the journal would be corrupt from then on.
                truncate_durably(path, kept.complete)
            size_before = kept.complete if kept else 0
            stat = append_durably(path, encode_journal_line(header, items), size_before=size_before)
            self._journals[session_id] = _Journal(
                snapshot=state.snapshot.identity,
                file=(stat.st_dev, stat.st_ino),
                complete=stat.st_size,
                version=_version(stat),
                lines=(kept.lines if kept else 0) + 1,
                first=kept.first if kept and kept.first is not None else header.revision,
                last=header.revision,
            )
            if not self._fold_due(stat.st_size, state.snapshot.size):
                return True
            try:
                self._fold_locked(session_id, agent_id)
            except StorageError as error:
                # The write itself is durable in the journal; folding can wait for the next
                # write or close(), so its failure must not fail this call.
                logger.warning("could not fold the journal of session %s: %s", session_id, error)
                return True
            return False

    def fold(self, session_id: str) -> None:
        """Fold the session's journal into its snapshot, if it has one."""
        if self.find(session_id) is None:
            return
        with self._lock(session_id):
            agent_id = self.find(session_id)
            if agent_id is not None:
                self._fold_locked(session_id, agent_id)

    def delete(self, session_id: str) -> bool:
        if self.find(session_id) is None:
            return False
        ensure_dir(self.locks_dir)
        lock_path = self.lock_path(session_id)
        fd = lock_file(lock_path)
        assert fd is not None
        deleted = False
        try:
            agent_id = self.find(session_id)
            if agent_id is None:
                return False
            # A corrupt session is the only copy of what it held: deleting it is for a
            # person to decide, by hand, not for a call that cannot even show its content.
            self._read_locked(session_id, agent_id)
            # The snapshot goes first: without it the session does not exist, whereas a
            # journal left alone by a crash here is ignored and cleared by the next create.
            remove(self.snapshot_path(agent_id, session_id))
            remove(self.journal_path(agent_id, session_id))
            self._forget(session_id)
            # Without this a power cut could bring the deleted session back.
            fsync_dir(self.snapshot_path(agent_id, session_id).parent)
            deleted = True
            return True
        finally:
            unlock_file(fd, lock_path if deleted else None)

    # -- internals ----------------------------------------------------------------------------

    @contextmanager
    def _lock(self, session_id: str, *, shared: bool = False) -> Iterator[None]:
        ensure_dir(self.locks_dir)
        fd = lock_file(self.lock_path(session_id), shared=shared)
        assert fd is not None
        try:
            yield
        finally:
            unlock_file(fd)

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
            raise self._missing(session_id)
        data, stat = got
        if identity(stat) != snapshot.identity:  # only a program ignoring our locks does this
            raise StorageError(f"{snapshot_path} changed while locked", path=str(snapshot_path))
        applied = self._journal_entries(session_id, agent_id, snapshot)
        if applied:
            header = applied[-1].header
            items = [item for entry in applied for item in entry.items]
            folded = extend_snapshot(data, header, items)
            if folded is None:
                history = decode_record(ChatSession, data).history + items
                folded = encode_snapshot(ChatSession.from_parts(header, history))
            stat = write_atomically(snapshot_path, folded)
            self._snapshots[session_id] = _Snapshot(identity(stat), header.revision)
        # No directory sync needed: if this removal is lost, the journal comes back holding
        # only revisions the (durable) snapshot has, and replay skips them.
        remove(journal_path)
        self._journals.pop(session_id, None)

    def _forget(self, session_id: str) -> None:
        self._agent_of.pop(session_id, None)
        self._snapshots.pop(session_id, None)
        self._journals.pop(session_id, None)

    def _missing(self, session_id: str) -> ConflictError:
        return ConflictError(f"session {session_id} no longer exists", session_id=session_id)

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

    def _read_snapshot(self, session_id: str, agent_id: str) -> tuple[_Snapshot, ChatSession]:
        path = self.snapshot_path(agent_id, session_id)
        got = read_file(path)
        if got is None:
            raise self._missing(session_id)
        data, stat = got
        try:
            session = decode_record(ChatSession, data)
        except Unreadable as error:
            raise self._unreadable(session_id, path, error) from None
        if session.id != session_id or session.agent_id != agent_id:
            raise self._corrupt(
                session_id,
                path,
                f"the file holds session {session.id} of agent {session.agent_id}, "
                f"but its path says session {session_id} of agent {agent_id}",
            )
        snapshot = _Snapshot(identity(stat), session.revision)
        self._snapshots[session_id] = snapshot
        return snapshot, session

    def _read_locked(self, session_id: str, agent_id: str) -> ChatSession:
        snapshot, session = self._read_snapshot(session_id, agent_id)
        applied = self._journal_entries(session_id, agent_id, snapshot)
        if not applied:
            return session
        history = session.history + [item for entry in applied for item in entry.items]
        return ChatSession.from_parts(applied[-1].header, history)

    def _journal_entries(
        self, session_id: str, agent_id: str, snapshot: _Snapshot
    ) -> list[JournalEntry]:
        """The whole journal's lines that come after ``snapshot``, checked."""
        got = read_file(self.journal_path(agent_id, session_id))
        if got is None:
            self._journals.pop(session_id, None)
            return []
        data, stat = got
        start = _Journal(snapshot.identity, (stat.st_dev, stat.st_ino), 0, (0, 0, 0), 0, None, None)
        journal, entries = self._check_journal(session_id, agent_id, snapshot, start, data, stat)
        self._journals[session_id] = journal
        return [entry for entry in entries if entry.revision > snapshot.revision]

    def _inspect(self, session_id: str, agent_id: str) -> _State:
        """The session's revision state, reading only what the memos cannot vouch for."""
        stat = stat_or_none(self.snapshot_path(agent_id, session_id))
        if stat is None:
            raise self._missing(session_id)
        snapshot = self._snapshots.get(session_id)
        if snapshot is None or snapshot.identity != identity(stat):
            snapshot, _ = self._read_snapshot(session_id, agent_id)
        path = self.journal_path(agent_id, session_id)
        stat = stat_or_none(path)
        if stat is None:
            self._journals.pop(session_id, None)
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
            self._journals.pop(session_id, None)
            return _State(snapshot, None)
        journal, _ = self._check_journal(session_id, agent_id, snapshot, start, *got)
        self._journals[session_id] = journal
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


def _version(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
