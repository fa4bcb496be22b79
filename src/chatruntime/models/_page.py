"""A page of session headers, as listing answers it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ._session import SessionHeader

LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 1000


class SessionPage(BaseModel):
    """One page of a session listing: headers (no history), most recent activity first.

    Pass ``next_cursor`` back as ``cursor=`` for the next page; it is ``None`` on the last.
    Sessions are ordered by last activity, newest first, and by id among equal times, so a
    listing walks every session exactly once even when many share a millisecond. A session
    active again while a listing is walked moves to the front and is not shown twice.

    Example:
        >>> page = (await manager.list_sessions(limit=100)).unwrap()
        >>> while page.next_cursor:
        ...     page = (await manager.list_sessions(limit=100, cursor=page.next_cursor)).unwrap()
    """

    model_config = ConfigDict(frozen=True)

    sessions: list[SessionHeader]
    next_cursor: str | None = None
