"""Byte-range locks on one lock file: every lock ``FileStore`` takes, with no file per session.

``FileStore`` keeps a single, always empty file, ``<root>/sessions.lock``, and locks one byte
of it per purpose: a session's read/write lock and its lease sit at offsets derived from a
hash of the session id, each open index's "my process lives" lock at a random offset of its
own, the index's lock and the "a store has this folder open" lock at fixed offsets (see
:class:`Slot`). Locking a byte beyond the end of a file is allowed, so the file
never grows, and taking or giving back a lock writes nothing: it costs one ``fcntl`` call.
The kernel drops every lock of a process that dies, so a crashed holder never blocks anyone.

A store open read-only opens the file for reading only, which takes shared locks (all it
needs to read) but no exclusive ones; when the file is missing or cannot be opened at all,
it locks only between its own threads (see :class:`LockFile`).

On Linux the locks are open-file-description locks (``F_OFD_SETLK``): they belong to the
descriptor, and the kernel runs no deadlock detection over them. Elsewhere they are classic
POSIX record locks (``lockf``), which belong to the process and are all dropped when *any*
descriptor of the file is closed. Both behave the same here because each process opens the
file once (:func:`lock_file_for`) and keeps it open, and a table in this process decides
between its own threads: one exclusive holder or any number of shared holders per byte, the
first shared holder taking the OS lock and the last giving it back.

All methods block (waits for other threads or processes): call them in worker threads only.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ._file_io import storage_error

_SESSIONS_BASE: Final = 16
_SESSION_SPAN: Final = 1 << 61
_OWNERS_BASE: Final = _SESSIONS_BASE + 2 * _SESSION_SPAN
OWNER_SPAN: Final = 1 << 60
"""Owner numbers (see :meth:`Slot.owner`) are below this."""

_OFD = hasattr(fcntl, "F_OFD_SETLKW") and hasattr(fcntl, "F_OFD_SETLK")
# struct flock as Linux lays it out: l_type, l_whence, l_start, l_len, l_pid, padded to the
# alignment of its 64-bit members ("0q"), which native mode computes for this platform.
_FLOCK = "hhqqi0q"
_DEADLOCK_RETRY = 0.005
_NO_FILE: Final = -2
"""``LockFile._fd`` of a read-only lock file that could not be opened: no OS locks."""


@dataclass(frozen=True)
class Slot:
    """Where one lock sits in the lock file."""

    offset: int

    @classmethod
    def session(cls, session_id: str) -> Slot:
        """The read/write lock of a session (shared to read, exclusive to change it)."""
        return cls(_SESSIONS_BASE + 2 * _session_number(session_id))

    @classmethod
    def lease(cls, session_id: str) -> Slot:
        """The lease of a session, held for a whole turn."""
        return cls(_SESSIONS_BASE + 2 * _session_number(session_id) + 1)

    @classmethod
    def owner(cls, number: int) -> Slot:
        """Held by an open session index for its whole life, under a random ``number``
        (below :data:`OWNER_SPAN`): whoever can take it knows that index's process is gone."""
        return cls(_OWNERS_BASE + number % OWNER_SPAN)


INDEX: Final = Slot(0)
"""Shared by every change to session files, exclusive while the index is rebuilt."""
PRESENCE: Final = Slot(1)
"""Shared by every open store; whoever gets it exclusively is the last one open."""
CREATE: Final = Slot(2)
"""Shared by every creation of a session, exclusive by one that checks creation limits: so
the sessions it counts cannot change under it, in any process, until it has created its own."""


def _session_number(session_id: str) -> int:
    # 61 bits of a hash: two sessions share a byte with odds of one in 2**61, and if they
    # ever did, they would only wait for each other, never deadlock (one lock at a time).
    digest = hashlib.blake2b(session_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _SESSION_SPAN


class _Held:
    __slots__ = ("busy", "count", "hold")

    def __init__(self) -> None:
        self.count = 0
        """Shared holders in this process, or -1 for one exclusive holder."""
        self.busy = True
        """An OS lock call for this byte is under way; others wait for its outcome."""
        self.hold = 0
        """Which OS-level hold of the byte this is (numbered in this process, from 1)."""


class LockFile:
    """The byte-range locks of one lock file, for every thread of this process.

    Get it with :func:`lock_file_for`, so stores of one process on one folder share it.

    Args:
        path: The lock file.
        read_only: Open it for reading only, without creating it: shared locks work, an
            exclusive one raises ``StorageError``. If it is missing or cannot be opened, locks
            hold between this process's threads only (a folder nobody can write to has no
            writer to keep out).
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._fd = -1
        self._changed = threading.Condition(threading.Lock())
        self._held: dict[int, _Held] = {}
        self._holds = itertools.count(1)

    def hold_of(self, slot: Slot) -> int | None:
        """Which hold of ``slot`` this process has now (``None``: it holds none): the same
        number for as long as the operating system's lock has been held without a break,
        however many threads took and gave it back meanwhile."""
        with self._changed:
            held = self._held.get(slot.offset)
            return None if held is None or held.busy else held.hold

    def acquire(self, slot: Slot, *, shared: bool = False, wait: bool = True) -> bool:
        """Take the lock at ``slot``; ``False`` (only with ``wait=False``) if it is held.

        Raises:
            StorageError: The lock file cannot be opened or locked.
        """
        offset = slot.offset
        with self._changed:
            self._open()
            while True:
                held = self._held.get(offset)
                if held is None:
                    break
                if shared and not held.busy and held.count > 0:
                    held.count += 1
                    return True
                if not wait:
                    return False
                self._changed.wait()
            held = _Held()
            self._held[offset] = held
            fd = self._fd
        # The OS lock is taken without the guard, so a wait for another process does not hold
        # up this process's locks on other bytes.
        try:
            granted = fd == _NO_FILE or _lock(
                fd, offset, fcntl.F_RDLCK if shared else fcntl.F_WRLCK, wait
            )
        except OSError as error:
            self._forget(offset)
            raise storage_error("lock", self.path, error) from error
        except BaseException:
            self._forget(offset)
            raise
        if not granted:
            self._forget(offset)
            return False
        with self._changed:
            held.busy = False
            held.count = 1 if shared else -1
            held.hold = next(self._holds)
            self._changed.notify_all()
        return True

    def release(self, slot: Slot) -> None:
        """Give back one hold of the lock at ``slot`` (taken by :meth:`acquire`)."""
        offset = slot.offset
        with self._changed:
            held = self._held.get(offset)
            if held is None or held.busy:
                return
            if held.count > 1:
                held.count -= 1
                return
            del self._held[offset]
            try:
                if self._fd != _NO_FILE:
                    _unlock(self._fd, offset)
            except OSError:
                # Cannot happen for a byte this process holds; if it did, the lock would
                # stay until the process ends, which only makes others wait.
                pass
            self._changed.notify_all()

    def _forget(self, offset: int) -> None:
        with self._changed:
            self._held.pop(offset, None)
            self._changed.notify_all()

    def _open(self) -> None:
        if self._fd >= 0 or self._fd == _NO_FILE:
            return
        if self.read_only:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._fd = _NO_FILE
            return
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise storage_error("open lock file", self.path, error) from error

    def _after_fork(self) -> None:
        # A child must not use the parent's descriptor: with open-file-description locks it
        # would share the parent's locks. It opens its own on first use; the inherited copy
        # is closed (the parent's locks stay with the parent's descriptor).
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = -1
        self._held = {}
        self._changed = threading.Condition(threading.Lock())


def _lock(fd: int, offset: int, kind: int, wait: bool) -> bool:
    while True:
        try:
            if _OFD:
                command = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
                fcntl.fcntl(fd, command, struct.pack(_FLOCK, kind, os.SEEK_SET, offset, 1, 0))
            else:
                operation = fcntl.LOCK_SH if kind == fcntl.F_RDLCK else fcntl.LOCK_EX
                if not wait:
                    operation |= fcntl.LOCK_NB
                fcntl.lockf(fd, operation, 1, offset, os.SEEK_SET)
            return True
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES) and not wait:
                return False
            if error.errno == errno.EINTR:
                continue
            if error.errno == errno.EDEADLK:
                # Process-owned locks (not Linux) see a cycle between processes where the
                # threads involved wait for different things; waiting a moment breaks it.
                time.sleep(_DEADLOCK_RETRY)
                continue
            raise


def _unlock(fd: int, offset: int) -> None:
    if _OFD:
        unlock = struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0)
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, unlock)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)


_registry: dict[tuple[str, bool], LockFile] = {}
_registry_guard = threading.Lock()


def lock_file_for(path: Path, *, read_only: bool = False) -> LockFile:
    """The one :class:`LockFile` of this process for ``path`` (opened on first use), or the
    one for reading only. (Two open file descriptions of one file: on Linux their locks
    exclude each other as those of two processes do.)"""
    key = (os.path.realpath(path), read_only)
    with _registry_guard:
        found = _registry.get(key)
        if found is None:
            found = LockFile(Path(key[0]), read_only=read_only)
            _registry[key] = found
        return found


def _after_fork_in_child() -> None:
    global _registry_guard
    _registry_guard = threading.Lock()
    for lock_file in _registry.values():
        lock_file._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
