"""``UserSessions``: a manager seen by one user, so a service cannot forget to scope a call."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from ..models import (
    ChatSession,
    Checkpoint,
    HistoryItem,
    Message,
    Result,
    SessionPage,
    SessionStatus,
)
from ..models._common import UNSET, Unset
from ..models._page import LIST_LIMIT_DEFAULT
from ._events import StreamEvent
from ._input import UserContent

if TYPE_CHECKING:
    from agents.memory import SessionSettings

    from ..state import StateModule
    from ._manager import SessionManager
    from ._sdk_session import ChatruntimeSession


class UserSessions:
    """The calls of a :class:`SessionManager`, each scoped to one user.

    Made by :meth:`SessionManager.for_user`. Sessions are created for the user, listings list
    only theirs, and a call naming another user's session answers ``SESSION_NOT_FOUND``
    exactly as an unknown id does.
    """

    def __init__(self, manager: SessionManager, user_id: str) -> None:
        self.manager = manager
        self.user_id = user_id

    def __repr__(self) -> str:
        return f"UserSessions(user_id={self.user_id!r})"

    async def create_session(
        self, agent_id: str, name: str, metadata: dict[str, Any] | None = None
    ) -> Result[ChatSession]:
        return await self.manager.create_session(agent_id, name, self.user_id, metadata)

    async def get_session(self, session_id: str) -> Result[ChatSession]:
        return await self.manager.get_session(session_id, user_id=self.user_id)

    async def session_exists(self, session_id: str) -> Result[bool]:
        return await self.manager.session_exists(session_id, user_id=self.user_id)

    async def list_sessions(
        self,
        agent_id: str | None = None,
        status: SessionStatus | None = None,
        *,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> Result[SessionPage]:
        return await self.manager.list_sessions(
            agent_id, self.user_id, status, limit=limit, cursor=cursor
        )

    async def update_session(
        self,
        session_id: str,
        *,
        name: str | Unset = UNSET,
        status: SessionStatus | Unset = UNSET,
        metadata: dict[str, Any] | Unset = UNSET,
    ) -> Result[ChatSession]:
        return await self.manager.update_session(
            session_id, name=name, status=status, metadata=metadata, user_id=self.user_id
        )

    async def delete_session(self, session_id: str) -> Result[None]:
        return await self.manager.delete_session(session_id, user_id=self.user_id)

    async def delete_all_sessions(self) -> Result[int]:
        """Delete every session of this user; how many were deleted."""
        return await self.manager.delete_user_sessions(self.user_id)

    async def get_active_session_count(self) -> Result[int]:
        return await self.manager.get_active_session_count(self.user_id)

    async def get_recent_messages(
        self, session_id: str, limit: int = 50
    ) -> Result[list[HistoryItem]]:
        return await self.manager.get_recent_messages(session_id, limit, user_id=self.user_id)

    async def send_message(
        self, session_id: str, content: UserContent, **options: Any
    ) -> Result[Message]:
        """See :meth:`SessionManager.send_message` (``timeout``, ``context``, ``hooks``,
        ``run_config``, ``max_turns``)."""
        return await self.manager.send_message(session_id, content, user_id=self.user_id, **options)

    async def stream_message(
        self, session_id: str, content: UserContent, **options: Any
    ) -> AsyncGenerator[StreamEvent, None]:
        """See :meth:`SessionManager.stream_message`."""
        # Closing this stream closes the manager's at once, which cancels the turn.
        async with aclosing(
            self.manager.stream_message(session_id, content, user_id=self.user_id, **options)
        ) as events:
            async for event in events:
                yield event

    def sdk_session(
        self, session_id: str, *, settings: SessionSettings | None = None
    ) -> ChatruntimeSession:
        """See :meth:`SessionManager.sdk_session`."""
        return self.manager.sdk_session(session_id, self.user_id, settings=settings)

    async def refresh_session(self, session_id: str) -> Result[ChatSession]:
        return await self.manager.refresh_session(session_id, user_id=self.user_id)

    # -- checkpoints ------------------------------------------------------------------------

    async def save_checkpoint(
        self, session_id: str, label: str | None = None, data: dict[str, Any] | None = None
    ) -> Result[Checkpoint]:
        return await self.manager.save_checkpoint(session_id, label, data, user_id=self.user_id)

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Result[Checkpoint]:
        return await self.manager.get_checkpoint(session_id, checkpoint_id, user_id=self.user_id)

    async def get_latest_checkpoint(self, session_id: str) -> Result[Checkpoint]:
        return await self.manager.get_latest_checkpoint(session_id, user_id=self.user_id)

    async def list_checkpoints(self, session_id: str) -> Result[list[Checkpoint]]:
        return await self.manager.list_checkpoints(session_id, user_id=self.user_id)

    async def get_checkpoint_history(
        self, session_id: str, checkpoint_id: str
    ) -> Result[list[HistoryItem]]:
        return await self.manager.get_checkpoint_history(
            session_id, checkpoint_id, user_id=self.user_id
        )

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> Result[None]:
        return await self.manager.delete_checkpoint(session_id, checkpoint_id, user_id=self.user_id)

    async def clear_checkpoints(self, session_id: str) -> Result[int]:
        return await self.manager.clear_checkpoints(session_id, user_id=self.user_id)

    async def restore_checkpoint(self, session_id: str, checkpoint_id: str) -> Result[ChatSession]:
        return await self.manager.restore_checkpoint(
            session_id, checkpoint_id, user_id=self.user_id
        )

    async def fork_session(
        self, session_id: str, checkpoint_id: str | None = None, name: str | None = None
    ) -> Result[ChatSession]:
        return await self.manager.fork_session(
            session_id, checkpoint_id, name, user_id=self.user_id
        )

    # -- state modules ----------------------------------------------------------------------

    async def save_session_state(self, session_id: str, **modules: StateModule) -> Result[None]:
        return await self.manager.save_session_state(session_id, self.user_id, **modules)

    async def get_session_state(self, session_id: str) -> Result[dict[str, Any]]:
        return await self.manager.get_session_state(session_id, self.user_id)

    async def replace_session_state(self, session_id: str, state: dict[str, Any]) -> Result[None]:
        return await self.manager.replace_session_state(session_id, state, self.user_id)

    async def load_session_state(
        self, session_id: str, allow_not_exist: bool = True, **modules: StateModule
    ) -> Result[list[str]]:
        return await self.manager.load_session_state(
            session_id, self.user_id, allow_not_exist, **modules
        )
