"""Idempotent turns: a turn sent with an ``idempotency_key`` is stored with that key in the
session's header, in the same write as the turn, so a retry with the same key finds the stored
turn, and its reply, if and only if the turn was stored.

The header keeps the last :data:`~chatruntime.models.IDEMPOTENCY_KEYS_KEPT` keys: a retry comes
soon after its original, so an older key is one no caller still waits on.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..models import (
    FunctionCallResultItem,
    HistoryItem,
    InvalidInputError,
    Message,
    MessageItem,
    TurnKey,
)
from ..models._common import describe_unprintable, unicode_problem
from ..models._session import IDEMPOTENCY_KEY_MAX_LENGTH, IDEMPOTENCY_KEYS_KEPT


def check_key(key: str | None) -> None:
    """Validate an ``idempotency_key``: ``None``, or 1..200 printable characters.

    Raises:
        InvalidInputError: Anything else.
    """
    if key is None:
        return
    if not isinstance(key, str) or not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidInputError(
            f"idempotency_key must be a string of 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters",
            field="idempotency_key",
        )
    if not key.isprintable() or unicode_problem(key) is not None:
        raise InvalidInputError(
            "idempotency_key must hold printable characters only; got one with "
            + describe_unprintable(key),
            field="idempotency_key",
        )


def find_key(turn_keys: Sequence[TurnKey], key: str) -> TurnKey | None:
    """The stored turn sent with ``key``, if the header still remembers it."""
    return next((found for found in reversed(turn_keys) if found.key == key), None)


def remember_key(
    turn_keys: Sequence[TurnKey], key: str, items: Sequence[HistoryItem], *, at: int
) -> list[TurnKey]:
    """``turn_keys`` with ``key`` added for the turn that stores ``items``, trimmed to the
    most recent :data:`IDEMPOTENCY_KEYS_KEPT`."""
    added = TurnKey(key=key, item_id=items[0].id, item_count=len(items), created_at=at)
    return [*turn_keys, added][-IDEMPOTENCY_KEYS_KEPT:]


def turn_items(history: Sequence[HistoryItem], found: TurnKey) -> list[HistoryItem] | None:
    """The items of the turn ``found`` names, when ``history`` (a tail is enough) holds its
    first item; ``None`` when it does not."""
    for index in range(len(history) - 1, -1, -1):
        if history[index].id == found.item_id:
            return list(history[index : index + found.item_count])
    return None


def stored_reply(items: Sequence[HistoryItem]) -> Message:
    """The reply of a stored turn, as ``send_message`` returned it: its last assistant
    message, or (for a run a tool ended) its last tool result.

    Raises:
        InvalidInputError: The items hold neither (the turn was not one ``send_message``
            stored).
    """
    for item in reversed(items):
        if isinstance(item, MessageItem) and item.role == "assistant":
            return Message.from_item(item)
    for item in reversed(items):
        if isinstance(item, FunctionCallResultItem):
            return Message(
                id=item.id,
                role="assistant",
                content=item.output_text,
                timestamp=item.timestamp,
            )
    raise InvalidInputError("the turn stored under this idempotency_key has no reply")
