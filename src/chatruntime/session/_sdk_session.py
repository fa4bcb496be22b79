"""The Agents SDK's ``Session`` protocol over a chatruntime session.

``Runner.run(agent, input, session=manager.sdk_session(session_id))`` then reads and writes
the same history as ``send_message``, in any store. Each item the SDK adds is stored as the
history item of its kind (:func:`~chatruntime.session._replay.history_from_input`) or raw as
a :class:`~chatruntime.models.ProviderItem`, and read back exactly as it was given.

Writes take the session's lock and lease, as a turn does, so they never interleave with a
``send_message`` on the same session in this process or another; each write is one store
call that moves the revision on and stamps the session's activity.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from agents.items import TResponseInputItem
from agents.memory import SessionSettings
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit

from ..models import (
    FunctionCallItem,
    HistoryItem,
    InvalidInputError,
    MessageItem,
    ProviderItem,
    SessionContext,
    SessionNotActiveError,
    SessionNotFoundError,
    now_ms,
    require_uuid,
)
from ._replay import history_from_input, item_inputs
from ._window import WindowPolicy

if TYPE_CHECKING:
    from ._core import SessionCore


class ChatruntimeSession:
    """A chatruntime session seen through the Agents SDK's ``Session`` protocol.

    Made by ``SessionManager.sdk_session``; the session must exist (create it with
    ``create_session`` first). It keeps the SDK's semantics: items in the order added,
    ``get_items(limit)`` the latest ``limit`` in order, ``session_settings.limit`` as the
    default limit, ``pop_item`` the newest (``None`` when empty), an empty ``add_items`` a
    no-op. ``clear_session`` empties the history and keeps the session itself.

    Failures raise the chatruntime exception that names them (``SessionNotFoundError``,
    ``SessionNotActiveError`` for adding to a paused or completed session, ``BusyError``,
    ``StorageError``...), which the SDK lets through ``Runner.run``.

    Example:
        >>> session = manager.sdk_session(chat.id)
        >>> result = await Runner.run(agent, "Hello", session=session)

    Args:
        manager: The manager whose store, cache and locks the session shares.
        session_id: The chatruntime session.
        user_id: The caller's user: another user's session answers ``SESSION_NOT_FOUND``.
        settings: The SDK's session settings (``limit``: how many items ``get_items``
            returns by default); a ``SessionSettings`` or its dict.
    """

    def __init__(
        self,
        manager: SessionCore,
        session_id: str,
        user_id: str | None = None,
        settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        require_uuid(session_id, "session_id")
        self.session_id = session_id
        self.user_id = user_id
        self.session_settings: SessionSettings | None = (
            coerce_session_settings(settings) if settings is not None else SessionSettings()
        )
        self._core = manager

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The session's items, oldest first: all of them, or the latest ``limit``.

        Args:
            limit: How many of the latest items (``None``: ``session_settings.limit``, and
                all items when that is ``None`` too).
        """
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is None or wanted < 0:
            # A negative limit reads everything, as the SDK's SQLiteSession does.
            entry = await self._core._lookup(self.session_id)
            self._check_usable(entry.session)
            return _inputs(entry.session.history)
        if wanted == 0:
            await self._core._current_header(self.session_id, self.user_id)
            return []
        return await self._latest(wanted)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` to the history in one write (nothing for an empty list).

        Raises:
            InvalidInputError: An item is not a dict (nothing is stored).
            SessionNotActiveError: The session is paused or completed.
        """
        if not items:
            return
        at = now_ms()
        try:
            # Deep copies: the caller may reuse its dicts, and the memory store keeps ours.
            new_items = [history_from_input(copy.deepcopy(item), timestamp=at) for item in items]
        except TypeError as error:
            raise InvalidInputError(str(error), field="items") from None
        async with self._core._exclusive(self.session_id, window=_NO_HISTORY) as (entry, lease):
            self._check_usable(entry.session)
            current = entry.session
            if current.status != "active":
                raise SessionNotActiveError(
                    f"session {current.id} is {current.status}; set it active to add items",
                    session_id=current.id,
                    status=current.status,
                )
            header = self._core._next_header(
                current, context=_added(current.context, new_items, at)
            )
            await self._core._commit(entry, header, new_items, lease)

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it; ``None`` when there is none.

        A stored item that stands for two input items (a handoff: its call and its output)
        gives its output, and its call stays as the newest item. Items that send nothing
        (the original's handoffs without a call id) are skipped and kept.
        """
        async with self._core._exclusive(self.session_id) as (entry, lease):
            self._check_usable(entry.session)
            history = entry.session.history
            position = len(history) - 1
            while position >= 0 and not item_inputs(history[position]):
                position -= 1
            if position < 0:
                return None
            *rest, popped = item_inputs(history[position])
            at = now_ms()
            # What stays of the popped item, then the silent items after it, in order.
            kept: list[HistoryItem] = [history_from_input(sent, timestamp=at) for sent in rest]
            kept.extend(history[position + 1 :])
            header = self._core._next_header(
                entry.session, context=_touched(entry.session.context, at)
            )
            await self._core._commit(entry, header, kept, lease, keep=position)
        return cast(TResponseInputItem, copy.deepcopy(popped))

    async def clear_session(self) -> None:
        """Remove every item; the session, its name, metadata and statistics stay."""
        async with self._core._exclusive(self.session_id, window=_NO_HISTORY) as (entry, lease):
            self._check_usable(entry.session)
            header = self._core._next_header(
                entry.session, context=_touched(entry.session.context, now_ms())
            )
            await self._core._commit(entry, header, [], lease, keep=0)

    async def _latest(self, limit: int) -> list[TResponseInputItem]:
        """The latest ``limit`` input items, from the cache when it holds them, else from a
        tail read (not cached), read further while stored items send fewer inputs."""
        core = self._core
        core._require_open()
        entry = core._cache.get(self.session_id)
        if entry is not None and entry.revision == await core.store.get_revision(self.session_id):
            self._check_usable(entry.session)
            inputs = _inputs(entry.session.history[-limit:])
            if len(inputs) >= limit or entry.complete:
                return inputs[-limit:]
        want = limit
        while True:
            found = await core._read(self.session_id, last=want)
            if found is None:
                raise SessionNotFoundError(
                    f"no session has id {self.session_id}", session_id=self.session_id
                )
            self._check_usable(found)
            # Read for this call alone: nobody else holds these items.
            inputs = _inputs(found.history, copy_items=False)
            if len(inputs) >= limit or len(found.history) < want:
                return inputs[-limit:]
            want *= 2

    def _check_usable(self, session: Any) -> None:
        self._core._usable(session, self.user_id)

    def __repr__(self) -> str:
        return f"ChatruntimeSession(session_id={self.session_id!r}, user_id={self.user_id!r})"


class _NoHistory(WindowPolicy):
    """A window that needs none of the history: what a write that only appends or clears
    reads of a session not in the cache (its header)."""

    def cut(self, history: Sequence[HistoryItem], new_message: str) -> int:
        return len(history)

    def first_read(self) -> int | None:
        return 0

    def tail_suffices(self, tail: Sequence[HistoryItem], new_message: str) -> bool:
        return True


_NO_HISTORY = _NoHistory()


def _inputs(history: Sequence[HistoryItem], *, copy_items: bool = True) -> list[TResponseInputItem]:
    """The input items ``history`` was given as, each item alone (orphans included: a
    session gives back what it was given)."""
    sent = [inputs for item in history for inputs in item_inputs(item)]
    # Input items share nested lists with the cached history: a caller must not change it.
    return cast(list[TResponseInputItem], copy.deepcopy(sent) if copy_items else sent)


def _added(context: SessionContext, items: Sequence[HistoryItem], at: int) -> SessionContext:
    """The statistics after ``items`` were added: messages and tool calls counted as a turn
    counts them, the last activity moved on (tokens are unknown here)."""
    messages = sum(
        1 for item in items if isinstance(item, MessageItem) and item.role in ("user", "assistant")
    )
    calls = sum(
        1
        for item in items
        if isinstance(item, FunctionCallItem) or (isinstance(item, ProviderItem) and item.is_call)
    )
    return context.model_copy(
        update={
            "total_messages": context.total_messages + messages,
            "total_function_calls": context.total_function_calls + calls,
            "last_activity": max(at, context.last_activity),
        }
    )


def _touched(context: SessionContext, at: int) -> SessionContext:
    """The statistics after a removal: counts are of what happened and stay; activity moves."""
    return context.model_copy(update={"last_activity": max(at, context.last_activity)})
