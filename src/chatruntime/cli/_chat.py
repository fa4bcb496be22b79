"""``Chat``: what the REPL is talking to — the manager, the session in use, and the screen."""

from __future__ import annotations

from contextlib import aclosing
from typing import TextIO

from anyio import get_cancelled_exc_class

from ..agent import AgentManager
from ..models import (
    LIST_LIMIT_DEFAULT,
    AgentSpec,
    ChatSession,
    ErrorCode,
    Ok,
    Result,
    SessionPage,
    SessionStatus,
)
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
# A session listed but unreadable, or deleted since it was listed, is no reason to fail.
_PASSED_OVER = frozenset({ErrorCode.CORRUPT_DATA, ErrorCode.SESSION_NOT_FOUND})


class Chat:
    """The REPL's state: which session is in use, for which user, and where output goes.

    Args:
        manager: An initialized session manager.
        agents: The agent manager behind ``manager``.
        session_id: The session in use.
        default_agent_id: The agent new sessions talk to when the current one has none.
        out: Where replies and command output are written.
        user_id: The user sessions belong to; ``None`` sees every session.

    Attributes:
        page_size: How many sessions a page of ``/list`` shows.
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
        self.page_size = LIST_LIMIT_DEFAULT
        self._ids: list[str] = []
        self._numbers: dict[str, int] = {}
        self._next_cursor: str | None = None

    @classmethod
    async def start(
        cls, manager: SessionManager, agents: AgentManager, *, out: TextIO, user_id: str | None
    ) -> Result[Chat]:
        """Find (or on the first run create) the default agent and the session to resume.

        The session resumed is the one :meth:`most_recent` names, else a new one. Starting
        reads one page of the listing and one session: it costs the same however many
        sessions the store holds.
        """
        agent = await ensure_default_agent(agents)
        if not agent.success:
            return agent
        assert agent.data is not None
        chat = cls(
            manager, agents, session_id="", default_agent_id=agent.data.id, out=out, user_id=user_id
        )
        resumed = await chat.most_recent()
        if not resumed.success:
            return resumed
        if resumed.data is not None:
            chat.session_id = resumed.data.id
            chat.number_of(resumed.data.id)
            return Ok(chat)
        created = await chat.start_session()
        if not created.success:
            return created
        return Ok(chat)

    # -- sessions -------------------------------------------------------------------------

    async def current(self) -> Result[ChatSession]:
        """The session in use."""
        return await self.manager.get_session(self.session_id)

    def number_of(self, session_id: str) -> int:
        """The number the REPL shows for a session, given the first time it is shown.

        A number is kept for the whole run and never given to another session (not even
        after a deletion), so ``/switch 3`` means what the screen said 3 was, however the
        sessions moved in the listing since.
        """
        number = self._numbers.get(session_id)
        if number is None:
            self._ids.append(session_id)
            number = self._numbers[session_id] = len(self._ids)
        return number

    def numbered(self, number: int) -> str | None:
        """The id of the session shown as ``number``, if one was."""
        return self._ids[number - 1] if 1 <= number <= len(self._ids) else None

    def numbered_ids(self) -> list[str]:
        """The ids of every session shown so far, by number."""
        return list(self._ids)

    @property
    def has_more(self) -> bool:
        """Whether the last page :meth:`list_page` returned has a next one."""
        return self._next_cursor is not None

    async def list_page(self, *, more: bool = False) -> Result[SessionPage]:
        """A page of the user's sessions, most recent activity first: the first page, or
        (``more``) the one after the page listed last. Every session in it gets a number.
        """
        cursor = self._next_cursor if more else None
        page = await self.manager.list_sessions(
            user_id=self.user_id, limit=self.page_size, cursor=cursor
        )
        if page.success and page.data is not None:
            self._next_cursor = page.data.next_cursor
            for header in page.data.sessions:
                self.number_of(header.id)
        return page

    async def most_recent(self) -> Result[ChatSession | None]:
        """The session to carry on in: the user's most recently active one that takes
        messages, else their most recently active one; ``None`` when they have none.

        Only the first page of each listing is looked at. A session that cannot be read is
        passed over (:attr:`SessionManager.corrupt_sessions` names it), and so is one deleted
        since it was listed.
        """
        tried: set[str] = set()
        status: SessionStatus | None
        for status in ("active", None):
            page = await self.manager.list_sessions(
                user_id=self.user_id, status=status, limit=self.page_size
            )
            if not page.success or page.data is None:
                return page
            for header in page.data.sessions:
                if header.id in tried:
                    continue
                tried.add(header.id)
                found = await self.manager.get_session(header.id)
                if found.success:
                    return Ok(found.data)
                assert found.error is not None
                if found.error.code not in _PASSED_OVER:
                    return found
        return Ok(None)

    async def start_session(self, name: str | None = None) -> Result[ChatSession]:
        """Create a session with the current session's agent (or the default agent) and use
        it. Without a name it is called ``Chat <n>``, a name no recent session has."""
        recent = await self.manager.list_sessions(user_id=self.user_id, limit=self.page_size)
        if not recent.success or recent.data is None:
            return recent
        sessions = recent.data.sessions
        agent_id = self.default_agent_id
        if self.session_id:
            current = await self.current()
            if current.data is not None and await self.agents.exists(current.data.agent_id):
                agent_id = current.data.agent_id
        if name is None:
            taken = {session.name for session in sessions}
            number = len(sessions) + 1
            while f"Chat {number}" in taken:
                number += 1
            name = f"Chat {number}"
        created = await self.manager.create_session(agent_id, name, user_id=self.user_id)
        if created.success and created.data is not None:
            self.session_id = created.data.id
            self.number_of(created.data.id)
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
        return listing
    for spec in listing.data or []:
        if spec.name == DEFAULT_AGENT_NAME:
            return Ok(spec)
    return await agents.create_agent(
        DEFAULT_AGENT_NAME, DEFAULT_INSTRUCTIONS, tools=list(REPL_TOOL_NAMES)
    )
