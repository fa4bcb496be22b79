"""The REPL's commands: what a typed line means, and what each ``/command`` does."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from anyio import get_cancelled_exc_class

from ..agent import TOOL_COMMAND
from ..models import ChatSession, Result, SessionStatus, is_uuid
from ..session._manager import RECENT_LIMIT_MAX
from ._chat import Chat
from ._progress import Progress
from ._render import (
    agent_row,
    corrupt_line,
    error_line,
    history_lines,
    plural,
    session_row,
    session_summary,
    stats_lines,
)

DEFAULT_HISTORY_ITEMS = 20


class Outcome(enum.Enum):
    """Whether the REPL goes on after a line."""

    CONTINUE = "continue"
    QUIT = "quit"


@dataclass(frozen=True)
class Command:
    """A ``/command`` and the rest of its line (stripped)."""

    name: str
    argument: str = ""


@dataclass(frozen=True)
class Say:
    """A message for the agent."""

    text: str


def parse_line(line: str) -> Command | Say | None:
    """What a typed line asks for.

    - blank: nothing (``None``);
    - ``/name [argument]``: a command (known or not: unknown ones answer with an error);
    - ``/tool ...``: a message, since it is how one asks the offline model to call a tool;
    - ``//text``: the message ``/text``, for messages that start with a slash;
    - anything else: a message, as typed (only surrounding blanks removed).
    """
    text = line.strip()
    if not text:
        return None
    if text.startswith("//"):
        return Say(text[1:])
    if not text.startswith("/"):
        return Say(text)
    name, _, argument = text[1:].partition(" ")
    if "/" + name == TOOL_COMMAND:
        return Say(text)
    return Command(name.lower(), argument.strip())


Handler = Callable[[Chat, str], Awaitable[Outcome | None]]


@dataclass(frozen=True)
class _Spec:
    usage: str
    summary: str
    handler: Handler
    takes_argument: bool


_COMMANDS: dict[str, _Spec] = {}
_ALIASES = {"exit": "quit", "q": "quit", "?": "help", "ls": "list", "sessions": "list"}


def _command(
    name: str, usage: str, summary: str, *, takes_argument: bool = False
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = _Spec(usage, summary, handler, takes_argument)
        return handler

    return register


async def run_line(chat: Chat, line: str) -> Outcome:
    """Do what ``line`` asks: run a command or send a message, writing to ``chat.out``."""
    parsed = parse_line(line)
    if parsed is None:
        return Outcome.CONTINUE
    if isinstance(parsed, Say):
        await chat.send(parsed.text)
        return Outcome.CONTINUE
    spec = _COMMANDS.get(_ALIASES.get(parsed.name, parsed.name))
    if spec is None:
        chat.say(f"unknown command: /{parsed.name} (/help lists the commands)")
        return Outcome.CONTINUE
    if parsed.argument and not spec.takes_argument:
        chat.say(f"usage: {spec.usage}")
        return Outcome.CONTINUE
    return await spec.handler(chat, parsed.argument) or Outcome.CONTINUE


def command_names() -> list[str]:
    """The names of the commands, in the order ``/help`` lists them."""
    return list(_COMMANDS)


def help_lines() -> list[str]:
    """The lines ``/help`` prints."""
    width = max(len(spec.usage) for spec in _COMMANDS.values())
    lines = [f"  {spec.usage:<{width}}  {spec.summary}" for spec in _COMMANDS.values()]
    return [
        "commands:",
        *lines,
        "Anything else is sent to the agent (start it with // to send a leading /).",
        f"With the offline model, {TOOL_COMMAND} NAME {{json}} asks it to call a tool, e.g.",
        f'  {TOOL_COMMAND} calculate {{"expression": "6*7"}}',
        "/list shows a page at a time, most recent first; its numbers stay until you quit.",
        "Damaged sessions are not looked for at start: /check reads every session, showing",
        "how far it got (Ctrl-C stops it), and lists those that cannot be read.",
        "Ctrl-C cancels a reply (nothing of it is saved) or clears the line; Ctrl-D quits.",
    ]


# -- sessions -----------------------------------------------------------------------------


@_command("new", "/new [name]", "start a session (and switch to it)", takes_argument=True)
async def _new(chat: Chat, argument: str) -> None:
    created = await chat.start_session(argument or None)
    if not created.success or created.data is None:
        chat.say(error_line(created.error))
        return
    chat.say("new " + session_summary(chat.number_of(created.data.id), created.data))


@_command(
    "list",
    "/list [more]",
    "list recent sessions (* marks the one in use); more: the next page",
    takes_argument=True,
)
async def _list(chat: Chat, argument: str) -> None:
    if argument.lower() not in ("", "more"):
        chat.say("usage: /list [more]")
        return
    more = bool(argument)
    if more and not chat.has_more:
        chat.say("(no more sessions: /list starts again from the most recent)")
        return
    listing = await chat.list_page(more=more)
    if not listing.success or listing.data is None:
        chat.say(error_line(listing.error))
        return
    page = listing.data
    if not page.sessions:
        chat.say("(no sessions)")
        return
    # Shown by number, which list_page gave in order of activity the first time a session
    # was listed: a list shown again keeps its rows in place as sessions get used.
    numbered = sorted(
        ((chat.number_of(session.id), session) for session in page.sessions),
        key=lambda row: row[0],
    )
    chat.say(
        *(
            session_row(number, session, current=session.id == chat.session_id)
            for number, session in numbered
        )
    )
    if page.next_cursor is not None:
        chat.say(f"(the {len(page.sessions)} most recently active; /list more shows older ones)")


@_command(
    "switch",
    "/switch <n|id>",
    "use session n of /list (or the one whose id starts so)",
    takes_argument=True,
)
async def _switch(chat: Chat, argument: str) -> None:
    if not argument:
        chat.say("usage: /switch <n|id>")
        return
    found = await _find(chat, argument)
    if found is None:
        return
    number, session = found
    chat.session_id = session.id
    chat.say("switched to " + session_summary(number, session))


@_command("rename", "/rename <name>", "rename the session in use", takes_argument=True)
async def _rename(chat: Chat, argument: str) -> None:
    if not argument:
        chat.say("usage: /rename <name>")
        return
    updated = await chat.manager.update_session(chat.session_id, name=argument)
    await _report(chat, "renamed", updated)


@_command("pause", "/pause", "pause the session in use (it takes no messages)")
async def _pause(chat: Chat, argument: str) -> None:
    await _set_status(chat, "paused", "paused")


@_command("resume", "/resume", "make the session in use active again")
async def _resume(chat: Chat, argument: str) -> None:
    await _set_status(chat, "active", "resumed")


@_command("complete", "/complete", "mark the session in use completed")
async def _complete(chat: Chat, argument: str) -> None:
    await _set_status(chat, "completed", "completed")


@_command(
    "delete",
    "/delete [n|id]",
    "delete a session and its history (default: the one in use)",
    takes_argument=True,
)
async def _delete(chat: Chat, argument: str) -> None:
    if argument:
        found = await _find(chat, argument)
        if found is None:
            return
        number, session = found
    else:
        current = await chat.current()
        if not current.success or current.data is None:
            chat.say(error_line(current.error))
            return
        number, session = chat.number_of(current.data.id), current.data
    deleted = await chat.manager.delete_session(session.id)
    if not deleted.success:
        chat.say(error_line(deleted.error))
        return
    chat.say("deleted " + session_summary(number, session))
    if session.id != chat.session_id:
        return
    # The session in use is gone: carry on in the one the next start would pick.
    following = await chat.most_recent()
    if not following.success:
        chat.say(error_line(following.error))
        return
    if following.data is not None:
        chat.session_id = following.data.id
        chat.say(
            "switched to " + session_summary(chat.number_of(following.data.id), following.data)
        )
        return
    await _new(chat, "")


# -- looking at a session -----------------------------------------------------------------


@_command(
    "history",
    "/history [n]",
    f"show the last n items (default {DEFAULT_HISTORY_ITEMS})",
    takes_argument=True,
)
async def _history(chat: Chat, argument: str) -> None:
    limit = DEFAULT_HISTORY_ITEMS
    if argument:
        if not argument.isdigit() or not 1 <= int(argument) <= RECENT_LIMIT_MAX:
            chat.say(f"usage: /history [n], with n from 1 to {RECENT_LIMIT_MAX}")
            return
        limit = int(argument)
    recent = await chat.manager.get_recent_messages(chat.session_id, limit)
    if not recent.success or recent.data is None:
        chat.say(error_line(recent.error))
        return
    if not recent.data:
        chat.say("(no history yet)")
        return
    chat.say(*history_lines(recent.data, await chat.agent_names()))


@_command("stats", "/stats", "show the session's messages, tokens and tool calls")
async def _stats(chat: Chat, argument: str) -> None:
    current = await chat.current()
    if not current.success or current.data is None:
        chat.say(error_line(current.error))
        return
    number = chat.number_of(current.data.id)
    chat.say(*stats_lines(number, current.data, await chat.agent_names()))


@_command("agents", "/agents", "list the agents (* marks the session's)")
async def _agents(chat: Chat, argument: str) -> None:
    listing = await chat.agents.list_agents()
    if not listing.success or listing.data is None:
        chat.say(error_line(listing.error))
        return
    current = await chat.current()
    agent_id = current.data.agent_id if current.data is not None else None
    if not listing.data:
        chat.say("(no stored agents)")
        return
    chat.say(*(agent_row(spec, current=spec.id == agent_id) for spec in listing.data))


@_command(
    "check",
    "/check",
    "find the sessions that cannot be read (reads them all)",
)
async def _check(chat: Chat, argument: str) -> None:
    progress = Progress(chat.out, "checking sessions")
    try:
        checked = await chat.manager.check(progress=progress)
    except get_cancelled_exc_class():
        progress.end()
        chat.say("(check stopped)")
        raise
    progress.end()
    if not checked.success or checked.data is None:
        chat.say(error_line(checked.error))
        return
    report = checked.data
    read = plural(report.sessions + len(report.corrupt), "session")
    if not report.corrupt:
        chat.say(f"checked {read}: all can be read")
        return
    chat.say(
        f"checked {read}: {len(report.corrupt)} cannot be read",
        *(corrupt_line(record) for record in report.corrupt),
        "They are left as they are (using one answers CORRUPT_DATA): repair or remove them "
        "by hand.",
    )


# -- the REPL itself ----------------------------------------------------------------------


@_command("help", "/help", "show this help")
async def _help(chat: Chat, argument: str) -> None:
    chat.say(*help_lines())


@_command("quit", "/quit", "leave (Ctrl-D does too)")
async def _quit(chat: Chat, argument: str) -> Outcome:
    return Outcome.QUIT


# -- helpers ------------------------------------------------------------------------------


MIN_ID_PREFIX = 4
"""The fewest characters of an id that name a session (shorter ones are list numbers)."""


async def _find(chat: Chat, reference: str) -> tuple[int, ChatSession] | None:
    """The session ``reference`` names, or ``None`` after saying why there is none.

    A reference is a number the REPL showed, the start of the id of a session it showed,
    or the whole id of any session: finding one never walks the whole store.
    """
    session_id = chat.numbered(int(reference)) if reference.isdigit() else None
    if session_id is None and len(reference) < MIN_ID_PREFIX:
        # Short references are list numbers only: "7" must never match an id starting "7".
        if reference.isdigit():
            chat.say(f"no session {int(reference)}: /list shows the numbers")
        else:
            chat.say(f"type a /list number or at least {MIN_ID_PREFIX} characters of an id")
        return None
    if session_id is None and is_uuid(reference.lower()):
        session_id = reference.lower()
    if session_id is None:
        prefix = reference.lower()
        matches = [shown for shown in chat.numbered_ids() if shown.startswith(prefix)]
        if len(matches) == 1:
            session_id = matches[0]
        elif matches:
            chat.say(f"{len(matches)} sessions have ids starting with {reference!r}; type more")
            return None
        else:
            chat.say(
                f"no session listed has an id starting with {reference!r} "
                "(/list shows sessions; a whole id finds any)"
            )
            return None
    found = await chat.manager.get_session(session_id)
    if not found.success or found.data is None:
        chat.say(error_line(found.error))
        return None
    return chat.number_of(session_id), found.data


async def _set_status(chat: Chat, status: SessionStatus, verb: str) -> None:
    updated = await chat.manager.update_session(chat.session_id, status=status)
    await _report(chat, verb, updated)


async def _report(chat: Chat, verb: str, updated: Result[ChatSession]) -> None:
    if not updated.success or updated.data is None:
        chat.say(error_line(updated.error))
        return
    chat.say(f"{verb} " + session_summary(chat.number_of(updated.data.id), updated.data))
