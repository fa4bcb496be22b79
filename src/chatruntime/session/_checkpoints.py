"""The manager's checkpoint calls: save, get, list, delete, restore and fork.

A checkpoint records the session's header (statistics, status, metadata, state modules) and
how many history items it had; the items themselves stay where they are, in the session's
stored history, which only grows. The one call that shrinks a history, a restore, first moves
the items it drops into the checkpoints that still need them, so every checkpoint can be
materialised exactly, and ten checkpoints of a 1,000-item session store no item twice.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio

from ..models import (
    CHECKPOINT_LABEL_MAX_LENGTH,
    NAME_MAX_LENGTH,
    SCHEMA_VERSION,
    ChatRuntimeError,
    ChatSession,
    Checkpoint,
    CheckpointNotFoundError,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    OutcomeUnknownError,
    Result,
    SessionHeader,
    check_metadata,
    check_name,
    check_user_id,
    guard,
    new_id,
    now_ms,
    require_uuid,
)
from ..models._common import unicode_problem
from ._cache import Entry
from ._core import SessionCore

FORK_SUFFIX = " (fork)"
"""Added to the source's name to name a fork when the call names none."""


class CheckpointOps(SessionCore):
    """Checkpoints, restore and fork (part of ``SessionManager``)."""

    # -- saving and reading -----------------------------------------------------------------

    async def save_checkpoint(
        self,
        session_id: str,
        label: str | None = None,
        data: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
    ) -> Result[Checkpoint]:
        """Remember the session as it is now: its history, statistics, status, metadata and
        saved state modules, plus the caller's ``data``.

        The history is not copied: the checkpoint shares the session's stored items
        (``shared_count`` of them, ``items`` empty). Saving a checkpoint is not activity: it
        does not move the session's expiry.

        Args:
            session_id: The session.
            label: A name for the checkpoint (1-200 printable characters), if any.
            data: The caller's own JSON data, kept with it (the rules of ``metadata``).
            user_id: The caller's user (another user's session answers
                ``SESSION_NOT_FOUND``).

        Fails with ``VALIDATION_ERROR`` (bad label or data), ``SESSION_NOT_FOUND``,
        ``SESSION_EXPIRED``, ``BUSY`` or ``STORAGE_ERROR``.

        Example:
            >>> saved = (await manager.save_checkpoint(session.id, "before the quiz")).unwrap()
        """

        async def save() -> Checkpoint:
            check_user_id(user_id)
            _check_label(label)
            if data is not None:
                check_metadata(data, "data")
            async with self._exclusive(session_id) as (entry, _lease):
                self._usable(entry.session, user_id)
                count = len(entry.session.history)
                checkpoint = Checkpoint(
                    id=new_id(),
                    session_id=session_id,
                    label=label,
                    created_at=await self._checkpoint_time(session_id),
                    kind="manual",
                    data=copy.deepcopy(data or {}),
                    header=entry.session.header(),
                    item_count=count,
                    shared_count=count,
                )
                await self.store.save_checkpoint(checkpoint)
            return checkpoint

        return await guard(save)

    async def get_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> Result[Checkpoint]:
        """One checkpoint of the session, as stored (``items`` holds only the items it
        does not share with the session; :meth:`get_checkpoint_history` gives them all).

        Fails with ``CHECKPOINT_NOT_FOUND``, ``SESSION_NOT_FOUND`` or ``SESSION_EXPIRED``.
        """

        async def get() -> Checkpoint:
            check_user_id(user_id)
            await self._current_header(session_id, user_id)
            return await self._checkpoint(session_id, checkpoint_id)

        return await guard(get)

    async def get_latest_checkpoint(
        self, session_id: str, *, user_id: str | None = None
    ) -> Result[Checkpoint]:
        """The session's newest checkpoint (by ``created_at``, which strictly grows within a
        session, so two saved in one millisecond keep their order).

        Fails with ``CHECKPOINT_NOT_FOUND`` when the session has none.
        """

        async def latest() -> Checkpoint:
            check_user_id(user_id)
            await self._current_header(session_id, user_id)
            found = await self.store.list_checkpoints(session_id)
            if not found:
                raise CheckpointNotFoundError(
                    f"session {session_id} has no checkpoints; save one first",
                    session_id=session_id,
                )
            return found[0]

        return await guard(latest)

    async def list_checkpoints(
        self, session_id: str, *, user_id: str | None = None
    ) -> Result[list[Checkpoint]]:
        """Every checkpoint of the session, newest first (empty when it has none)."""

        async def listing() -> list[Checkpoint]:
            check_user_id(user_id)
            await self._current_header(session_id, user_id)
            return await self.store.list_checkpoints(session_id)

        return await guard(listing)

    async def get_checkpoint_history(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> Result[list[HistoryItem]]:
        """The whole history as it was at a checkpoint: the shared items read from the
        session plus the checkpoint's own.

        Fails with ``CHECKPOINT_NOT_FOUND``, ``SESSION_NOT_FOUND`` or ``SESSION_EXPIRED``.
        """

        async def history() -> list[HistoryItem]:
            check_user_id(user_id)
            # Held, so that no restore moves items between the two reads.
            async with self._exclusive(session_id) as (entry, _lease):
                self._usable(entry.session, user_id)
                checkpoint = await self._checkpoint(session_id, checkpoint_id)
                return _materialise(entry, checkpoint)

        return await guard(history)

    # -- removing ---------------------------------------------------------------------------

    async def delete_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> Result[None]:
        """Delete one checkpoint; the session is unchanged.

        Fails with ``CHECKPOINT_NOT_FOUND`` when the session has no such checkpoint (as
        :meth:`delete_session` answers ``SESSION_NOT_FOUND``), ``SESSION_NOT_FOUND`` or
        ``SESSION_EXPIRED``.
        """

        async def delete() -> None:
            check_user_id(user_id)
            require_uuid(checkpoint_id, "checkpoint_id")
            async with self._held(session_id, user_id):
                if not await self.store.delete_checkpoint(session_id, checkpoint_id):
                    raise _not_found(session_id, checkpoint_id)

        return await guard(delete)

    async def clear_checkpoints(
        self, session_id: str, *, user_id: str | None = None
    ) -> Result[int]:
        """Delete every checkpoint of the session; how many there were."""

        async def clear() -> int:
            check_user_id(user_id)
            async with self._held(session_id, user_id):
                return await self.store.clear_checkpoints(session_id)

        return await guard(clear)

    # -- restore and fork -------------------------------------------------------------------

    async def restore_checkpoint(
        self, session_id: str, checkpoint_id: str, *, user_id: str | None = None
    ) -> Result[ChatSession]:
        """Rewind the session to a checkpoint: its history, statistics, name, status,
        metadata and saved state become the checkpoint's, in one write (a new revision).

        The session as it was just before is saved first as a checkpoint of kind
        ``restore`` (the newest one, so :meth:`get_latest_checkpoint` finds it): restoring
        that one undoes the restore. Every checkpoint keeps its full history.

        Returns:
            The restored session (a copy).

        Fails with ``CHECKPOINT_NOT_FOUND``, ``SESSION_NOT_FOUND``, ``SESSION_EXPIRED``,
        ``BUSY``, ``CORRUPT_DATA`` (the checkpoint shares more items than the session has)
        or ``STORAGE_ERROR``.

        Example:
            >>> restored = await manager.restore_checkpoint(session.id, saved.id)
            >>> undo = (await manager.get_latest_checkpoint(session.id)).unwrap()
            >>> await manager.restore_checkpoint(session.id, undo.id)  # back again
        """

        async def restore() -> ChatSession:
            check_user_id(user_id)
            async with self._exclusive(session_id) as (entry, lease):
                self._usable(entry.session, user_id)
                target = await self._checkpoint(session_id, checkpoint_id)
                history = entry.session.history
                keep = target.shared_count
                if keep > len(history):
                    raise _inconsistent(target, len(history))
                # The undo point holds the items the restore drops; _commit gives the other
                # checkpoints that share them their own copies before it drops them.
                undo = await self._save_undo(entry, target, keep)
                current = entry.session
                context = target.header.context.model_copy(
                    update={"last_activity": max(current.context.last_activity, now_ms())}
                )
                header = self._next_header(
                    current,
                    name=target.header.name,
                    status=target.header.status,
                    metadata=copy.deepcopy(target.header.metadata),
                    state=copy.deepcopy(target.header.state),
                    turn_keys=list(target.header.turn_keys),
                    context=context,
                )
                try:
                    updated = await self._commit(
                        entry, header, _copies(target.items), lease, keep=keep
                    )
                except OutcomeUnknownError:
                    raise
                except ChatRuntimeError:
                    # Nothing was restored: the undo point would undo nothing.
                    with anyio.CancelScope(shield=True), suppress(ChatRuntimeError):
                        await self.store.delete_checkpoint(session_id, undo.id)
                    raise
            return updated.model_copy(deep=True)

        return await guard(restore)

    async def fork_session(
        self,
        session_id: str,
        checkpoint_id: str | None = None,
        name: str | None = None,
        *,
        user_id: str | None = None,
    ) -> Result[ChatSession]:
        """Start a new session from this one as it is now, or as it was at a checkpoint:
        the same agent and user, a copy of the history, statistics, metadata and saved
        state. The two are independent afterwards (their histories never mix).

        Args:
            session_id: The session to fork.
            checkpoint_id: Fork from this checkpoint (default: from now).
            name: The new session's name (default: the source's, with " (fork)").
            user_id: The caller's user; the fork belongs to the source's user.

        Returns:
            The new session (active, revision 0, its own id).

        Fails with ``VALIDATION_ERROR``, ``CHECKPOINT_NOT_FOUND``, ``SESSION_NOT_FOUND``,
        ``SESSION_EXPIRED``, ``LIMIT_EXCEEDED`` or ``STORAGE_ERROR``.

        Example:
            >>> retry = (await manager.fork_session(session.id, saved.id)).unwrap()
            >>> await manager.send_message(retry.id, "Let me ask that differently")
        """

        async def fork() -> ChatSession:
            check_user_id(user_id)
            if checkpoint_id is not None:
                require_uuid(checkpoint_id, "checkpoint_id")
            if name is not None:
                check_name(name)
            async with self._exclusive(session_id) as (entry, _lease):
                self._usable(entry.session, user_id)
                source: SessionHeader = entry.session
                history: Sequence[HistoryItem] = entry.session.history
                if checkpoint_id is not None:
                    checkpoint = await self._checkpoint(session_id, checkpoint_id)
                    source, history = checkpoint.header, _materialise(entry, checkpoint)
                items = _copies(history)
                owner = entry.session.user_id
            now = now_ms()
            header = SessionHeader(
                id=new_id(),
                agent_id=source.agent_id,
                name=name if name is not None else _fork_name(source.name),
                created_at=now,
                updated_at=now,
                context=source.context.model_copy(update={"last_activity": now}),
                status="active",
                schema_version=SCHEMA_VERSION,
                revision=0,
                user_id=owner,
                metadata=copy.deepcopy(source.metadata),
                expires_at=self.lifetime.expires_at(None),
                state=copy.deepcopy(source.state),
            )
            forked = await self._insert(header, items)
            return forked.model_copy(deep=True)

        return await guard(fork)

    # -- helpers ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _held(self, session_id: str, user_id: str | None) -> AsyncIterator[SessionHeader]:
        """Hold the session (lock and lease) without reading its history; yield its header,
        checked with :meth:`_usable`."""
        self._require_open()
        require_uuid(session_id, "session_id")
        async with (
            self._tracked(),
            self._locks.hold(session_id),
            self.store.lease(session_id, ttl=self.lease_ttl, timeout=self.lease_timeout),
        ):
            yield await self._current_header(session_id, user_id)

    async def _checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        require_uuid(checkpoint_id, "checkpoint_id")
        found = await self.store.get_checkpoint(session_id, checkpoint_id)
        if found is None:
            raise _not_found(session_id, checkpoint_id)
        return found

    async def _checkpoint_time(self, session_id: str) -> int:
        """Now, or just after the newest checkpoint when that is not earlier: within a
        session ``created_at`` strictly grows, so newest first is the order of saving."""
        newest = await self.store.list_checkpoints(session_id)
        now = self.lifetime.now()
        return max(now, newest[0].created_at + 1) if newest else now

    async def _save_undo(self, entry: Entry, target: Checkpoint, keep: int) -> Checkpoint:
        """Save the session as it is, before it is restored to ``target``, as a ``restore``
        checkpoint that holds the items the restore drops (after the first ``keep``)."""
        history = entry.session.history
        undo = Checkpoint(
            id=new_id(),
            session_id=entry.session.id,
            label="before restore",
            created_at=await self._checkpoint_time(entry.session.id),
            kind="restore",
            data={"restoredCheckpointId": target.id},
            header=entry.session.header(),
            item_count=len(history),
            shared_count=keep,
            items=_copies(history[keep:]),
        )
        await self.store.save_checkpoint(undo)
        return undo


def _materialise(entry: Entry, checkpoint: Checkpoint) -> list[HistoryItem]:
    history = entry.session.history
    if checkpoint.shared_count > len(history):
        raise _inconsistent(checkpoint, len(history))
    return _copies(history[: checkpoint.shared_count]) + _copies(checkpoint.items)


def _copies(items: Sequence[HistoryItem]) -> list[HistoryItem]:
    return [item.model_copy(deep=True) for item in items]


def _fork_name(name: str) -> str:
    return name[: NAME_MAX_LENGTH - len(FORK_SUFFIX)].rstrip() + FORK_SUFFIX


def _check_label(label: object) -> None:
    if label is None:
        return
    if not isinstance(label, str) or not label.strip():
        raise InvalidInputError("label must be a non-empty string or None", field="label")
    if len(label) > CHECKPOINT_LABEL_MAX_LENGTH:
        raise InvalidInputError(
            f"label is {len(label)} characters long; the limit is {CHECKPOINT_LABEL_MAX_LENGTH}",
            field="label",
            length=len(label),
            limit=CHECKPOINT_LABEL_MAX_LENGTH,
        )
    if unicode_problem(label) is not None or not label.isprintable():
        raise InvalidInputError("label must be one line of printable text", field="label")


def _not_found(session_id: str, checkpoint_id: str) -> CheckpointNotFoundError:
    return CheckpointNotFoundError(
        f"session {session_id} has no checkpoint {checkpoint_id}",
        session_id=session_id,
        checkpoint_id=checkpoint_id,
    )


def _inconsistent(checkpoint: Checkpoint, stored: int) -> CorruptDataError:
    return CorruptDataError(
        f"checkpoint {checkpoint.id} shares {checkpoint.shared_count} items of session "
        f"{checkpoint.session_id}, which holds {stored}: it cannot be materialised",
        session_id=checkpoint.session_id,
        checkpoint_id=checkpoint.id,
        reason="checkpoint shares more items than the session holds",
    )
