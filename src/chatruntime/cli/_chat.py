"""``Chat``: what the REPL is talking to — the manager, the session in use, and the screen."""

from __future__ import annotations

from contextlib import aclosing
from typing import TextIO

from anyio import get_cancelled_exc_class

from ..agent import AgentManager
from ..models import AgentSpec, ChatSession, Result
from ..session import (
    AgentChanged,
    Done,
    Error,
    Handoff,
    SessionManager,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolResult,
)
from ._render import (
    ReplyPrinter,
    error_line,
    handoff_line,
    tool_call_line,
    tool_result_line,
)
from ._tools import REPL_TOOL_NAMES

DEFAULT_AGENT_NAME = "Assistant"
DEFAULT_INSTRUCTIONS = (
    "You are a helpful assistant in a terminal chat. Answer briefly and plainly. "
    "Use the calculate tool for arithmetic and current_time for the date or time."
)
CANCELLED_LINE = "[cancelled: this turn was not saved]"


class Chat:
    """The REPL's state: which session is in use, for which user, and where output goes.

    Args:
        manager: An initialized session manager.
        agents: The agent manager behind ``manager``.
        session_id: The session in use.
        default_agent_id: The agent new sessions talk to when the current one has none.
        out: Where replies and command output are written.
        user_id: The user sessions belong to; ``None`` sees every session.
    """

    def __init__(
        self,
        manager: SessionManager,
        agents: AgentManager,
        *,
        session_id: str,
        default_agent_id: str,
        out: TextIO,
        user_id: str | None = None,
    ) -> None:
        self.manager = manager
        self.agents = agents
        self.session_id = session_id
        self.default_agent_id = default_agent_id
        self.out = out
        self.user_id = user_id

    @classmethod
    async def start(
        cls, manager: SessionManager, agents: AgentManager, *, out: TextIO, user_id: str | None
    ) -> Result[Chat]:
        """Find (or on the first run create) the default agent and the session to resume.

        The session resumed is the user's most recently active one that takes messages, else
        their most recently active one, else a new one.
        """
        agent = await ensure_default_agent(agents)
        if not agent.success:
            return Result[Chat](success=False, error=agent.error)
        assert agent.data is not None
        listing = await manager.list_sessions(user_id=user_id)
        if not listing.success:
            return Result[Chat](success=False, error=listing.error)
        chat = cls(
            manager, agents, session_id="", default_agent_id=agent.data.id, out=out, user_id=user_id
        )
        resumed = pick_session(listing.data or [])
        if resumed is not None:
            chat.session_id = resumed.id
            return Result.ok(chat)
        created = await chat.start_session()
        if not created.success:
            return Result[Chat](success=False, error=created.error)
        return Result.ok(chat)

    # -- sessions -------------------------------------------------------------------------

    async def sessions(self) -> Result[list[ChatSession]]:
        """The user's sessions, oldest first: their position is the number ``/list`` shows,
        which stays put as sessions get used."""
        listing = await self.manager.list_sessions(user_id=self.user_id)
        if listing.success and listing.data is not None:
            listing.data.sort(key=lambda session: (session.created_at, session.id))
        return listing

    async def current(self) -> Result[ChatSession]:
        """The session in use."""
        return await self.manager.get_session(self.session_id)

    async def number_of(self, session_id: str) -> int:
        """The number ``/list`` shows for a session (0 when it is not listed)."""
        listing = await self.sessions()
        for number, session in enumerate(listing.data or [], start=1):
            if session.id == session_id:
                return number
        return 0

    async def start_session(self, name: str | None = None) -> Result[ChatSession]:
        """Create a session with the current session's agent (or the default agent) and use
        it. Without a name it is called ``Chat <n>``."""
        listing = await self.sessions()
        if not listing.success:
            return Result[ChatSession](success=False, error=listing.error)
        sessions = listing.data or []
        agent_id = self.default_agent_id
        for session in sessions:
            if session.id == self.session_id and await self.agents.exists(session.agent_id):
                agent_id = session.agent_id
        if name is None:
            taken = {session.name for session in sessions}
            number = len(sessions) + 1
            while f"Chat {number}" in taken:
                number += 1
            name = f"Chat {number}"
        created = await self.manager.create_session(agent_id, name, user_id=self.user_id)
        if created.success and created.data is not None:
            self.session_id = created.data.id
        return created

    async def agent_names(self) -> dict[str, str]:
        """Stored agents' names by id (empty when they cannot be listed)."""
        listing = await self.agents.list_agents()
        return {spec.id: spec.name for spec in listing.data or []}

    # -- output ---------------------------------------------------------------------------

    def say(self, *lines: str) -> None:
        """Write lines and flush."""
        for line in lines:
            self.out.write(line + "\n")
        self.out.flush()

    # -- turns ----------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        """Send ``text`` to the current session and show the reply as it streams.

        When the caller is cancelled (Ctrl-C) the stream is closed, which makes the manager
        drop the turn; a line says so and the cancellation goes on.
        """
        printer = ReplyPrinter(self.out, "assistant")
        try:
            names = await self.agent_names()
            current = await self.current()
            if current.data is not None:
                printer.speaker = names.get(current.data.agent_id, printer.speaker)
            async with aclosing(self.manager.stream_message(self.session_id, text)) as events:
                async for event in events:
                    _show(event, printer, names)
        except get_cancelled_exc_class():
            printer.line(CANCELLED_LINE)
            raise
        printer.end_line()


def _show(event: StreamEvent, printer: ReplyPrinter, names: dict[str, str]) -> None:
    if isinstance(event, TextDelta):
        printer.text(event.text)
    elif isinstance(event, ToolCall):
        printer.line(tool_call_line(event.name, event.arguments))
    elif isinstance(event, ToolResult):
        printer.line(tool_result_line(event.output, failed=event.failed))
    elif isinstance(event, Handoff):
        from_name = names.get(event.from_agent_id, printer.speaker)
        to_name = names.get(event.to_agent_id, "another agent")
        printer.line(handoff_line(from_name, to_name))
    elif isinstance(event, AgentChanged):
        printer.end_line()
        printer.speaker = event.name
        names.setdefault(event.agent_id, event.name)
    elif isinstance(event, Done):
        if not printer.wrote_text:
            # Models that do not stream text still send the whole reply at the end.
            printer.text(event.message.content)
        printer.end_line()
    elif isinstance(event, Error):
        printer.line(error_line(event.error))


async def ensure_default_agent(agents: AgentManager) -> Result[AgentSpec]:
    """The stored agent named ``Assistant`` (the oldest, if several), created on first use."""
    listing = await agents.list_agents()
    if not listing.success:
        return Result[AgentSpec](success=False, error=listing.error)
    for spec in listing.data or []:
        if spec.name == DEFAULT_AGENT_NAME:
            return Result.ok(spec)
    return await agents.create_agent(
        DEFAULT_AGENT_NAME, DEFAULT_INSTRUCTIONS, tools=list(REPL_TOOL_NAMES)
    )


def pick_session(sessions: list[ChatSession]) -> ChatSession | None:
    """The session to resume from a list ordered by most recent activity first."""
    for session in sessions:
        if session.status == "active":
            return session
    return sessions[0] if sessions else None
