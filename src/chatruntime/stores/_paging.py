"""Keyset paging of session listings: the order, the cursor and the checks every store shares.

Listings are ordered by ``(context.last_activity, id)``, descending. A cursor names the last
header of a page; the next page holds the headers strictly below it in that order. It is
opaque to callers (URL-safe base64 of ``"<last_activity>:<id>"``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from ..models import (
    SESSION_STATUSES,
    InvalidInputError,
    SessionHeader,
    SessionStatus,
    is_uuid,
)
from ..models._page import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, SessionPage

__all__ = [
    "LIST_LIMIT_DEFAULT",
    "LIST_LIMIT_MAX",
    "Position",
    "check_listing",
    "decode_cursor",
    "encode_cursor",
    "page_from_sorted",
    "position",
]

Position = tuple[int, str]
"""Where a header sits in a listing: ``(last_activity, id)``; greater is listed first."""


def position(header: SessionHeader) -> Position:
    """The sort key of ``header`` in a listing (listed in descending order)."""
    return (header.context.last_activity, header.id)


def encode_cursor(after: Position) -> str:
    """The cursor that continues a listing below ``after``."""
    raw = f"{after[0]}:{after[1]}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor continues below.

    Raises:
        InvalidInputError: ``cursor`` was not made by :func:`encode_cursor`.
    """
    bad = InvalidInputError(
        "cursor is not one a listing returned; pass next_cursor from the previous page "
        "unchanged, or none for the first page",
        field="cursor",
    )
    if not isinstance(cursor, str) or not 0 < len(cursor) <= 200:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    millis, _, session_id = raw.partition(":")
    if not millis.lstrip("-").isdigit() or not is_uuid(session_id):
        raise bad
    return (int(millis), session_id)


def check_listing(
    *,
    agent_id: str | None,
    user_id: str | None,
    status: SessionStatus | None,
    limit: int,
    cursor: str | None,
) -> Position | None:
    """Validate a listing's arguments; return the decoded cursor (``None``: first page).

    Raises:
        InvalidInputError: An argument is out of range (the message names it).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidInputError(
            f"limit must be an integer from 1 to {LIST_LIMIT_MAX}; got {limit!r}", field="limit"
        )
    if status is not None and status not in SESSION_STATUSES:
        raise InvalidInputError(
            f"status must be one of {', '.join(SESSION_STATUSES)}; got {status!r}",
            field="status",
        )
    if agent_id is not None and not is_uuid(agent_id):
        raise InvalidInputError(f"agent_id must be a UUID, got {agent_id!r}", field="agent_id")
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        raise InvalidInputError("user_id must be a non-empty string", field="user_id")
    return None if cursor is None else decode_cursor(cursor)


def page_from_sorted(headers: Iterable[SessionHeader], limit: int) -> SessionPage:
    """A page from headers already filtered, below the cursor and in listing order; reads
    at most ``limit + 1`` of them to learn whether another page follows."""
    chosen: list[SessionHeader] = []
    more = False
    for header in headers:
        if len(chosen) == limit:
            more = True
            break
        chosen.append(header)
    next_cursor = encode_cursor(position(chosen[-1])) if more and chosen else None
    return SessionPage(sessions=chosen, next_cursor=next_cursor)
