"""The REPL's commands: what a typed line means, and what each ``/command`` does."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from anyio import get_cancelled_exc_class

from ..agent import TOOL_COMMAND
from ..models import ChatSession, Checkpoint, Result, SessionStatus, is_uuid
from ..session._manager import RECENT_LIMIT_MAX
from ._chat import Chat
from ._progress import Progress
from ._render import (
    agent_row,
    checkpoint_row,
    checkpoint_summary,
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
        "/checkpoint saves the session as it is; /restore rewinds to one (and saves the state",
        "before, so a restore can be undone); /fork starts a new session from one.",
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


# -- checkpoints ----------------------------------------------------------------------------


@_command(
    "checkpoint",
    "/checkpoint [label]",
    "save a checkpoint of the session in use",
    takes_argument=True,
)
async def _checkpoint(chat: Chat, argument: str) -> None:
    saved = await chat.manager.save_checkpoint(
        chat.session_id, argument or None, user_id=chat.user_id
    )
    if not saved.success or saved.data is None:
        chat.say(error_line(saved.error))
        return
    listed = await _checkpoints_of(chat)
    if listed is None:
        return
    number = next(n for n, found in listed if found.id == saved.data.id)
    chat.say(f"saved {checkpoint_summary(number, saved.data)}; /restore {number} goes back to it")


@_command("checkpoints", "/checkpoints", "list the checkpoints of the session, newest first")
async def _checkpoints(chat: Chat, argument: str) -> None:
    listed = await _checkpoints_of(chat)
    if listed is None:
        return
    if not listed:
        chat.say("(no checkpoints: /checkpoint saves one)")
        return
    chat.say(*(checkpoint_row(number, found) for number, found in listed))


@_command(
    "restore",
    "/restore <n|id>",
    "rewind the session in use to checkpoint n (undo: restore the point it saves)",
    takes_argument=True,
)
async def _restore(chat: Chat, argument: str) -> None:
    if not argument:
        chat.say("usage: /restore <n|id>")
        return
    listed = await _checkpoints_of(chat)
    if listed is None:
        return
    found = _find_checkpoint(chat, listed, argument)
    if found is None:
        return
    number, target = found
    restored = await chat.manager.restore_checkpoint(
        chat.session_id, target.id, user_id=chat.user_id
    )
    if not restored.success or restored.data is None:
        chat.say(error_line(restored.error))
        return
    # The restore saved the state before it as the newest checkpoint: its number undoes it.
    undo = len(listed) + 1
    summary = session_summary(chat.number_of(restored.data.id), restored.data)
    chat.say(f"restored {summary} to checkpoint {number}; /restore {undo} undoes it")


@_command(
    "fork",
    "/fork [checkpoint] [name]",
    "start a new session from this one (now, or at a checkpoint) and switch to it",
    takes_argument=True,
)
async def _fork(chat: Chat, argument: str) -> None:
    first, _, rest = argument.partition(" ")
    listed = await _checkpoints_of(chat)
    if listed is None:
        return
    origin: tuple[int, Checkpoint] | None = None
    name = argument
    if first and _names_checkpoint(listed, first):
        origin = _find_checkpoint(chat, listed, first)
        if origin is None:
            return
        name = rest.strip()
    source = chat.session_id
    forked = await chat.manager.fork_session(
        source,
        origin[1].id if origin is not None else None,
        name or None,
        user_id=chat.user_id,
    )
    if not forked.success or forked.data is None:
        chat.say(error_line(forked.error))
        return
    chat.session_id = forked.data.id
    at = f" at checkpoint {origin[0]}" if origin is not None else ""
    summary = session_summary(chat.number_of(forked.data.id), forked.data)
    chat.say(f"forked session {chat.number_of(source)}{at} into {summary}")


async def _checkpoints_of(chat: Chat) -> list[tuple[int, Checkpoint]] | None:
    """The checkpoints of the session in use, newest first, numbered in the order they
    were saved (1 is the oldest, so a number stays as new ones are saved); ``None`` after
    saying why there are none to show."""
    listing = await chat.manager.list_checkpoints(chat.session_id, user_id=chat.user_id)
    if not listing.success or listing.data is None:
        chat.say(error_line(listing.error))
        return None
    total = len(listing.data)
    return [(total - index, found) for index, found in enumerate(listing.data)]


def _names_checkpoint(listed: list[tuple[int, Checkpoint]], reference: str) -> bool:
    """Whether ``reference`` reads as a checkpoint (a number, or an id prefix of one)."""
    if reference.isdigit():
        return True
    prefix = reference.lower()
    return len(prefix) >= MIN_ID_PREFIX and any(c.id.startswith(prefix) for _, c in listed)


def _find_checkpoint(
    chat: Chat, listed: list[tuple[int, Checkpoint]], reference: str
) -> tuple[int, Checkpoint] | None:
    """The checkpoint ``reference`` names (a number of /checkpoints, or the start of its
    id), or ``None`` after saying why there is none."""
    if reference.isdigit():
        by_number = [row for row in listed if row[0] == int(reference)]
        if not by_number:
            chat.say(f"no checkpoint {int(reference)}: /checkpoints shows the numbers")
            return None
        return by_number[0]
    prefix = reference.lower()
    if len(prefix) < MIN_ID_PREFIX:
        chat.say(f"type a /checkpoints number or at least {MIN_ID_PREFIX} characters of an id")
        return None
    matches = [row for row in listed if row[1].id.startswith(prefix)]
    if len(matches) > 1:
        chat.say(f"{len(matches)} checkpoints have ids starting with {reference!r}; type more")
        return None
    if not matches:
        chat.say(f"no checkpoint of this session has an id starting with {reference!r}")
        return None
    return matches[0]


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
