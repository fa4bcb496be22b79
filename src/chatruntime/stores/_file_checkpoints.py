"""``FileStore``'s checkpoints: one JSON file each, beside their session.

A session's checkpoints live in ``sessions/<agentId>/<sessionId>.checkpoints/``, one
``<checkpointId>.json`` each (indented JSON, camelCase keys, as every record of this store),
written atomically (a temporary file, ``fsync``, ``rename``, ``fsync`` of the folder). A
checkpoint holds only the items the session's own history cannot give it (see
:class:`~chatruntime.models.Checkpoint`), so ten checkpoints of a long session are ten small
files.

Every change holds the session's lock exclusively, every read holds it shared (see
``_file_sessions``), as for the session's own files. The temporary file of a checkpoint has one
fixed name, ``.<checkpointId>.json.tmp``: one found under the session's lock is what a writer
killed before its rename left, and is removed by the next listing, clear or delete.

All functions block; ``FileStore`` calls them in worker threads.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..models import Checkpoint, CorruptDataError, StoreVersionError, is_uuid
from ._errors import session_missing
from ._file_codec import Unreadable, decode_record, encode_record
from ._file_io import (
    TEMPORARY_SUFFIX,
    ensure_dir,
    fsync_dir,
    list_dir,
    read_file,
    remove,
    storage_error,
    write_atomically,
)

if TYPE_CHECKING:
    from ._file_sessions import SessionFiles

logger = logging.getLogger("chatruntime.stores")

CHECKPOINTS_SUFFIX = ".checkpoints"
"""The suffix of a session's checkpoints folder, beside its ``.json``."""
_RECORD_SUFFIX = ".json"


def checkpoints_folder(sessions_dir: Path, agent_id: str, session_id: str) -> Path:
    """Where the checkpoints of a session of ``agent_id`` live."""
    return sessions_dir / agent_id / f"{session_id}{CHECKPOINTS_SUFFIX}"


def _checkpoint_id(name: str) -> str | None:
    """The checkpoint id a file name in a checkpoints folder stands for, if it is one's."""
    stem, _, suffix = name.rpartition(".")
    return stem if f".{suffix}" == _RECORD_SUFFIX and is_uuid(stem) else None


def _is_temporary(name: str) -> bool:
    return (
        name.startswith(".")
        and name.endswith(TEMPORARY_SUFFIX)
        and _checkpoint_id(name[1 : -len(TEMPORARY_SUFFIX)]) is not None
    )


def remove_checkpoints(folder: Path) -> int:
    """Remove a session's checkpoints (and temporary files of checkpoints), then the folder
    if nothing else is in it; how many checkpoints there were. The caller holds the session's
    lock and syncs the folder's parent.

    Raises:
        StorageError: A file or the folder cannot be removed.
    """
    count = 0
    names = list_dir(folder)
    for name in names:
        if _checkpoint_id(name) is not None:
            count += remove(folder / name)
        elif _is_temporary(name):
            remove(folder / name)
    try:
        os.rmdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        pass  # none, or a file of someone else's in its place
    except OSError as error:
        if error.errno != errno.ENOTEMPTY:
            raise storage_error("remove", folder, error) from error
        # Files that are not ours: left for a person, as everywhere in the store.
        logger.info("left %s in place: it holds files that are not checkpoints", folder)
    return count


class CheckpointFiles:
    """Reads and writes the checkpoints of the sessions of ``files`` (worker threads only)."""

    def __init__(self, files: SessionFiles) -> None:
        self._files = files

    def _folder(self, agent_id: str, session_id: str) -> Path:
        return checkpoints_folder(self._files.sessions_dir, agent_id, session_id)

    def save(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint, replacing one with its id.

        Raises:
            ConflictError: Its session does not exist (checkpoints live with their session).
            StorageError: It cannot be written; the stored checkpoints are unchanged.
        """
        data = encode_record(checkpoint)
        session_id = checkpoint.session_id
        with self._files.session_locked(session_id, shared=False) as agent_id:
            if agent_id is None:
                raise session_missing(session_id)
            folder = self._folder(agent_id, session_id)
            ensure_dir(folder)
            write_atomically(folder / f"{checkpoint.id}{_RECORD_SUFFIX}", data, locked=True)

    def get(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        """The checkpoint, or ``None``.

        Raises:
            CorruptDataError: Its file cannot be read as this checkpoint.
            StoreVersionError: It was written by a newer chatruntime.
        """
        with self._files.session_locked(session_id, shared=True) as agent_id:
            if agent_id is None:
                return None
            path = self._folder(agent_id, session_id) / f"{checkpoint_id}{_RECORD_SUFFIX}"
            got = read_file(path)
            return None if got is None else _decode(session_id, checkpoint_id, path, got[0])

    def list(self, session_id: str) -> list[Checkpoint]:
        """Every readable checkpoint of the session, newest first (``created_at``, then
        ``id``, descending); a damaged one is logged and left out, as damaged agents are
        from their listing. Temporary files left by killed writers are removed on the way
        (unless ``read_only``)."""
        found: list[Checkpoint] = []
        with self._files.session_locked(session_id, shared=True) as agent_id:
            if agent_id is None:
                return found
            folder = self._folder(agent_id, session_id)
            for name in list_dir(folder):
                checkpoint_id = _checkpoint_id(name)
                if checkpoint_id is None:
                    # No writer holds the session's lock while this reads under it: a
                    # temporary file here is a leftover.
                    if _is_temporary(name) and self._files.read_only_reason is None:
                        remove(folder / name)
                    continue
                got = read_file(folder / name)
                if got is None:
                    continue
                try:
                    found.append(_decode(session_id, checkpoint_id, folder / name, got[0]))
                except (CorruptDataError, StoreVersionError) as error:
                    logger.warning("skipping checkpoint %s: %s", checkpoint_id, error.message)
        return sorted(found, key=lambda each: (each.created_at, each.id), reverse=True)

    def delete(self, session_id: str, checkpoint_id: str) -> bool:
        """Remove one checkpoint; ``False`` if there was none."""
        with self._files.session_locked(session_id, shared=False) as agent_id:
            if agent_id is None:
                return False
            folder = self._folder(agent_id, session_id)
            if not remove(folder / f"{checkpoint_id}{_RECORD_SUFFIX}"):
                return False
            fsync_dir(folder)
            return True

    def clear(self, session_id: str) -> int:
        """Remove every checkpoint of the session and its folder; how many there were."""
        with self._files.session_locked(session_id, shared=False) as agent_id:
            if agent_id is None:
                return 0
            folder = self._folder(agent_id, session_id)
            count = remove_checkpoints(folder)
            if count:
                fsync_dir(folder.parent)
            return count


def _decode(session_id: str, checkpoint_id: str, path: Path, data: bytes) -> Checkpoint:
    try:
        checkpoint = decode_record(Checkpoint, data)
    except Unreadable as error:
        kind = StoreVersionError if error.newer else CorruptDataError
        raise kind(
            f"checkpoint {checkpoint_id} of session {session_id} cannot be read from {path}: "
            f"{error.reason}",
            session_id=session_id,
            checkpoint_id=checkpoint_id,
            path=str(path),
            reason=error.reason,
        ) from None
    if checkpoint.id != checkpoint_id or checkpoint.session_id != session_id:
        reason = f"the file holds checkpoint {checkpoint.id} of session {checkpoint.session_id}"
        raise CorruptDataError(
            f"checkpoint {checkpoint_id} of session {session_id} cannot be read from {path}: "
            f"{reason}",
            session_id=session_id,
            checkpoint_id=checkpoint_id,
            path=str(path),
            reason=reason,
        )
    return checkpoint
