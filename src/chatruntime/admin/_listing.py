"""Walking a store's session listing page by page (``ls``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..models import LIST_LIMIT_MAX, SessionHeader, SessionStatus
from ..stores import SessionStore


async def walk_sessions(
    store: SessionStore,
    *,
    agent_id: str | None = None,
    user_id: str | None = None,
    status: SessionStatus | None = None,
    limit: int | None = None,
    page_size: int = 100,
) -> AsyncIterator[SessionHeader]:
    """Session headers from the store's listing, most recent activity first, following the
    listing's cursor a page at a time: each page costs the same however many are stored.

    Args:
        store: An initialized store.
        agent_id: Only this agent's sessions.
        user_id: Only this user's sessions.
        status: Only sessions with this status.
        limit: Stop after this many (``None``: all).
        page_size: Headers asked for at a time (1 to 1000).

    Raises:
        InvalidInputError: A filter the store refuses (a bad status).
    """
    left = limit
    cursor: str | None = None
    while left is None or left > 0:
        size = min(page_size, LIST_LIMIT_MAX, left if left is not None else LIST_LIMIT_MAX)
        page = await store.list_sessions(
            agent_id=agent_id, user_id=user_id, status=status, limit=size, cursor=cursor
        )
        for header in page.sessions:
            yield header
        if left is not None:
            left -= len(page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            return
