"""Durable file primitives for ``FileStore``: blocking calls, meant for worker threads only.

Every function here may block (disk I/O, ``fsync``), so ``FileStore`` runs them
through ``anyio.to_thread.run_sync`` and never on the event loop. Each one turns ``OSError``
into :class:`~chatruntime.StorageError` naming the path and the operating system's reason.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..models import StorageError

Identity = tuple[int, int, int, int, int]
"""What tells two versions of a file apart: device, inode, size, mtime and ctime (ns)."""


def identity(stat: os.stat_result) -> Identity:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def storage_error(action: str, path: Path, error: OSError) -> StorageError:
    """A ``StorageError`` saying what failed on which path and why, e.g. "No space left"."""
    reason = error.strerror or str(error)
    return StorageError(
        f"cannot {action} {path}: {reason}",
        path=str(path),
        reason=reason,
        errno=errno.errorcode.get(error.errno or 0, str(error.errno)),
    )


def stat_or_none(path: Path) -> os.stat_result | None:
    """The stat of ``path``, or ``None`` if it is absent (or a parent is not a directory)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise storage_error("inspect", path, error) from error


def list_dir(path: Path) -> list[str]:
    """Names in a directory, sorted; an absent directory (or a file in its place) is empty."""
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as error:
        raise storage_error("list", path, error) from error


def read_file(path: Path, offset: int = 0) -> tuple[bytes, os.stat_result] | None:
    """The bytes of ``path`` from ``offset`` to its end, and its stat; ``None`` if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise storage_error("read", path, error) from error
    try:
        stat = os.fstat(fd)
        chunks: list[bytes] = []
        position = offset
        while position < stat.st_size:
            chunk = os.pread(fd, stat.st_size - position, position)
            if not chunk:
                break
            chunks.append(chunk)
            position += len(chunk)
        return b"".join(chunks), stat
    except OSError as error:
        raise storage_error("read", path, error) from error
    finally:
        os.close(fd)


@contextmanager
def opened(path: Path) -> Iterator[tuple[int, os.stat_result] | None]:
    """``path`` open for reading as ``(descriptor, stat)``, or ``None`` if it is absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        yield None
        return
    except OSError as error:
        raise storage_error("read", path, error) from error
    try:
        try:
            stat = os.fstat(fd)
        except OSError as error:
            raise storage_error("read", path, error) from error
        yield fd, stat
    finally:
        os.close(fd)


def read_at(fd: int, path: Path, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes of the open file ``fd`` (at ``path``) from ``offset``."""
    chunks: list[bytes] = []
    try:
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
    except OSError as error:
        raise storage_error("read", path, error) from error
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (files created, renamed, removed in it) durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise storage_error("sync directory", path, error) from error


def ensure_dir(path: Path) -> None:
    """Create ``path`` and missing parents, each made durable in its parent directory."""
    if os.path.isdir(path):
        return
    ensure_dir(path.parent)
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if os.path.isdir(path):
            return  # another process made it meanwhile
        error = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
        raise storage_error("create directory", path, error) from None
    except OSError as error:
        raise storage_error("create directory", path, error) from error
    fsync_dir(path.parent)


def temporary_of(path: Path) -> Path:
    """The one temporary name of ``path`` for writers that hold its lock (see
    :func:`write_atomically`): ``.<name>.tmp`` beside it."""
    return path.with_name(f".{path.name}{TEMPORARY_SUFFIX}")


TEMPORARY_SUFFIX = ".tmp"


def write_atomically(path: Path, data: bytes, *, locked: bool = False) -> os.stat_result:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    Writes a temporary file in the same directory, syncs it, renames it over ``path`` and
    syncs the directory. Returns the stat of the new file.

    ``locked``: the caller holds a lock that no other writer of ``path`` gets past (a
    session's lock, for its snapshot and checkpoints). The temporary file then has one fixed
    name (:func:`temporary_of`), so one left by a writer killed before its rename is
    overwritten by the next write, and whoever finds it while holding the lock knows it is
    such a leftover. Without a lock, its name is random, so concurrent writers never share one.

    If that last directory sync fails where ``path`` did not exist before, the new file is
    removed again before the error is raised, so a failed create leaves nothing behind. (A
    replaced file cannot be put back: then the new content stays, not known to be durable.)
    """
    if locked:
        temporary = temporary_of(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    else:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        created = not os.path.lexists(path)
        os.replace(temporary, path)
    except OSError as error:
        with suppress(OSError):
            os.unlink(temporary)
        raise storage_error("write", path, error) from error
    try:
        fsync_dir(path.parent)
    except StorageError:
        if created:
            with suppress(OSError):
                os.unlink(path)
        raise
    try:
        return os.stat(path)
    except OSError as error:
        raise storage_error("inspect", path, error) from error


def append_durably(path: Path, data: bytes, *, size_before: int) -> os.stat_result:
    """Append ``data`` to ``path`` (created if absent) and sync it; returns the new stat.

    On failure the file is cut back to ``size_before``, so a failed append leaves no partial
    line behind for the next one to follow; that includes a failure of the directory sync
    that makes a new file's name durable.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise storage_error("append to", path, error) from error
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
            stat = os.fstat(fd)
        except OSError as error:
            _cut_back(fd, size_before)
            raise storage_error("append to", path, error) from error
        if size_before == 0:
            # The file may be new, or left empty by a failed first append whose directory
            # entry was never synced: either way its name must be made durable too.
            try:
                fsync_dir(path.parent)
            except StorageError:
                _cut_back(fd, size_before)
                raise
    finally:
        os.close(fd)
    return stat


def _cut_back(fd: int, size: int) -> None:
    """Best effort, after a failed append: cut the file back to ``size`` bytes and sync it."""
    with suppress(OSError):
        os.ftruncate(fd, size)
        os.fsync(fd)


def truncate_durably(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes and sync it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        raise storage_error("truncate", path, error) from error


def remove(path: Path) -> bool:
    """Unlink ``path``; ``False`` if it was not there. The caller syncs the directory."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise storage_error("remove", path, error) from error
    return True


def last_lines(
    fd: int, path: Path, start: int, end: int, count: int, block: int = 1 << 14
) -> tuple[int, bytes, int]:
    """The last ``count`` lines of bytes ``start``..``end`` of an open file, as one slice.

    Lines are separated by ``\\n``; the last line is whatever follows the last separator
    (empty when the range ends with one). Returns ``(offset, data, lines)``: ``data`` is the
    bytes from ``offset`` to ``end``, which hold ``lines`` lines (``count``, or all the range
    holds if fewer) and their separators, not the separator before the first. Reads from the
    end, ``block`` bytes first, then what the lines still missing take at the length of
    those found (up to 1 MiB at a time), so taking a few lines costs what those lines cost,
    however long the file is; the lines are found with ``rfind``, not split one by one, so
    the caller can parse them in one call.
    """
    if end <= start or count <= 0:
        return end, b"", 0
    data = b""
    position = end
    cut = 0  # where the separators found so far begin, counted from the end of data
    found = 0
    while True:
        size = min(block, position - start)
        position -= size
        data = read_at(fd, path, position, size) + data
        at = len(data) - cut
        while found < count:
            at = data.rfind(b"\n", 0, at)
            if at < 0:
                break
            found += 1
            cut = len(data) - at
        if found == count:
            first = len(data) - cut + 1
            return position + first, data[first:], count
        if position <= start:
            return start, data, found + 1
        # Enough for the lines still missing at the length of those found so far (and a
        # quarter more), or twice as much as last time if none was found yet.
        wanted = (count - found) * cut // found * 5 // 4 if found else block * 2
        block = min(max(wanted, 4096), 1 << 20)
