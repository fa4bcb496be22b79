"""The REPL's commands in-process: what each typed line prints and changes, exactly."""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator

import anyio
import pytest

from chatruntime import AgentManager, MemoryStore, OfflineModelProvider, SessionManager
from chatruntime.cli._chat import CANCELLED_LINE, DEFAULT_INSTRUCTIONS, Chat
from chatruntime.cli._commands import Command, Outcome, Say, command_names, parse_line, run_line
from chatruntime.cli._progress import Progress
from chatruntime.cli._render import snippet
from chatruntime.cli._tools import calculate, repl_tools
from chatruntime.models import (
    ChatSession,
    Ok,
    Result,
    SessionHeader,
    SessionPage,
    SessionStatus,
    now_ms,
)
from chatruntime.session import CheckProgress, CheckReport
from chatruntime.stores import CorruptRecord, SessionStore

pytestmark = pytest.mark.anyio


class WatchedStore(MemoryStore):
    """A memory store that notes how sessions are read, and in which some are damaged.

    A damaged session reads as a store reports a record it cannot parse: ``get_session``
    raises ``CorruptDataError`` and ``scan_sessions`` yields a :class:`CorruptRecord`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.damaged: set[str] = set()

    @staticmethod
    def record(session_id: str) -> CorruptRecord:
        return CorruptRecord(session_id, f"memory/{session_id}", "not valid JSON")

    async def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        self.calls.append(f"list_sessions(status={status!r}, limit={limit})")
        return await super().list_sessions(
            agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
        )

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        self.calls.append(f"get_session(last={last})")
        if session_id in self.damaged:
            raise self.record(session_id).error()
        return await super().get_session(session_id, last=last)

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        self.calls.append("scan_sessions()")
        async for found in super().scan_sessions():
            damaged = isinstance(found, ChatSession) and found.id in self.damaged
            yield self.record(found.id) if isinstance(found, ChatSession) and damaged else found


class TerminalOutput(io.StringIO):
    """Output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


async def open_chat(store: SessionStore, *, delay: float = 0.0, user: str | None = None) -> Chat:
    agents = AgentManager(
        store, tools=repl_tools(), model_provider=OfflineModelProvider(delay=delay)
    )
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    return (await Chat.start(manager, agents, out=io.StringIO(), user_id=user)).unwrap()


@pytest.fixture
async def chat() -> AsyncIterator[Chat]:
    chat = await open_chat(MemoryStore())
    try:
        yield chat
    finally:
        await chat.manager.close()


async def typed(chat: Chat, line: str) -> list[str]:
    """Type ``line`` at the REPL; return the lines it printed."""
    chat.out = io.StringIO()
    assert await run_line(chat, line) is Outcome.CONTINUE
    return chat.out.getvalue().splitlines()


def short(chat: Chat) -> str:
    return chat.session_id[:8]


async def stored(chat: Chat) -> list[SessionHeader]:
    """Every session of the chat's user in the store, most recent activity first."""
    return (await chat.manager.list_sessions(user_id=chat.user_id, limit=1000)).unwrap().sessions


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reading of the manager's clock is a millisecond after the one before.

    Listings order sessions by last activity, and sessions that share a millisecond by id,
    which is random: sessions made one after another in a test often share one. With this
    clock they never do, so "the most recent" is the one made last. (Ask for it before
    any fixture that makes sessions.)
    """
    ticks = itertools.count(now_ms())
    for module in ("chatruntime.session._manager", "chatruntime.session._turn"):
        monkeypatch.setattr(f"{module}.now_ms", lambda: next(ticks))


# -- reading a line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("", None),
        ("   ", None),
        ("Hello there ", Say("Hello there")),
        ("/list", Command("list")),
        ("/LIST", Command("list")),
        ("/new   Big plans  ", Command("new", "Big plans")),
        ("//etc/hosts is a file", Say("/etc/hosts is a file")),
        ('/tool calculate {"expression": "6*7"}', Say('/tool calculate {"expression": "6*7"}')),
    ],
)
def test_a_line_is_a_command_a_message_or_nothing(line: str, parsed: Command | Say | None) -> None:
    assert parse_line(line) == parsed


def test_commands_are_the_documented_ones() -> None:
    assert command_names() == [
        "new", "list", "switch", "rename", "pause", "resume", "complete", "delete",
        "checkpoint", "checkpoints", "restore", "fork",
        "history", "stats", "agents", "check", "help", "quit",
    ]  # fmt: skip


# -- starting --------------------------------------------------------------------------------


async def test_first_start_creates_the_assistant_and_a_first_session() -> None:
    store = MemoryStore()
    chat = await open_chat(store)
    agents = await store.list_agents()
    assert [(a.name, a.instructions, a.tools) for a in agents] == [
        ("Assistant", DEFAULT_INSTRUCTIONS, ["calculate", "current_time"])
    ]
    assert [(s.id, s.name, s.agent_id, s.status) for s in await stored(chat)] == [
        (chat.session_id, "Chat 1", agents[0].id, "active")
    ]
    await chat.manager.close()


async def test_a_later_start_resumes_the_same_agent_and_session() -> None:
    store = MemoryStore()
    first = await open_chat(store)
    second = await open_chat(store)
    assert (second.session_id, second.default_agent_id) == (
        first.session_id,
        first.default_agent_id,
    )
    assert len(await store.list_agents()) == 1
    assert len(await stored(second)) == 1


async def test_start_resumes_the_most_recently_active_session(clock: None) -> None:
    store = MemoryStore()
    chat = await open_chat(store)
    first = chat.session_id
    await typed(chat, "/new Second")
    await typed(chat, "/switch 1")
    await typed(chat, "Hello")
    again = await open_chat(store)
    assert again.session_id == first
    assert (await typed(again, "/stats"))[0] == "session 1: Chat 1 (active)"


async def test_start_resumes_the_most_recent_session_that_takes_messages(clock: None) -> None:
    store = MemoryStore()
    chat = await open_chat(store)
    first = chat.session_id
    await typed(chat, "/new Second")
    await typed(chat, "/pause")
    assert [s.name for s in await stored(chat)] == ["Second", "Chat 1"]
    assert (await open_chat(store)).session_id == first


async def test_start_resumes_the_most_recent_session_when_none_takes_messages(
    clock: None,
) -> None:
    store = MemoryStore()
    chat = await open_chat(store)
    await typed(chat, "/complete")
    await typed(chat, "/new Second")
    await typed(chat, "/pause")
    assert (await open_chat(store)).session_id == chat.session_id


async def test_start_reads_one_page_and_one_session_however_many_are_stored(
    clock: None,
) -> None:
    few, many = WatchedStore(), WatchedStore()
    await open_chat(few)
    filler = await open_chat(many)
    for _ in range(120):
        await filler.start_session()
    few.calls.clear()
    many.calls.clear()
    await open_chat(few)
    await open_chat(many)
    assert few.calls == ["list_sessions(status='active', limit=50)", "get_session(last=None)"]
    assert many.calls == few.calls


async def test_a_user_sees_and_resumes_only_their_sessions() -> None:
    store = MemoryStore()
    alice = await open_chat(store, user="alice")
    bob = await open_chat(store, user="bob")
    assert alice.session_id != bob.session_id
    assert await typed(bob, "/list") == [f"* 1. Chat 1  (active, 0 messages)  {short(bob)}"]
    again = await open_chat(store, user="alice")
    assert again.session_id == alice.session_id


# -- sessions --------------------------------------------------------------------------------


async def test_new_without_a_name_numbers_the_chat(chat: Chat) -> None:
    assert await typed(chat, "/new") == ["new session 2: Chat 2 (active, 0 messages)"]


async def test_new_with_a_name_switches_to_it(chat: Chat) -> None:
    first = chat.session_id
    assert await typed(chat, "/new Trip to Rome") == [
        "new session 2: Trip to Rome (active, 0 messages)"
    ]
    assert chat.session_id != first
    assert (await chat.current()).unwrap().name == "Trip to Rome"


async def test_new_with_a_name_too_long_is_refused_with_its_code(chat: Chat) -> None:
    lines = await typed(chat, "/new " + "x" * 101)
    assert len(lines) == 1 and lines[0].startswith("error: VALIDATION_ERROR: ")
    assert len(await stored(chat)) == 1


async def test_list_numbers_sessions_in_the_order_shown_and_marks_the_current_one(
    chat: Chat,
) -> None:
    first = short(chat)
    await typed(chat, "/new Second")
    assert await typed(chat, "/list") == [
        f"  1. Chat 1  (active, 0 messages)  {first}",
        f"* 2. Second  (active, 0 messages)  {short(chat)}",
    ]


async def test_switch_by_number(chat: Chat) -> None:
    first = chat.session_id
    await typed(chat, "/new Second")
    assert await typed(chat, "/switch 1") == ["switched to session 1: Chat 1 (active, 0 messages)"]
    assert chat.session_id == first


async def test_switch_by_id_prefix(chat: Chat) -> None:
    first = chat.session_id
    await typed(chat, "/new Second")
    assert await typed(chat, f"/switch {first[:6].upper()}") == [
        "switched to session 1: Chat 1 (active, 0 messages)"
    ]
    assert chat.session_id == first


async def test_switch_to_a_number_not_listed_says_so(chat: Chat) -> None:
    assert await typed(chat, "/switch 7") == ["no session 7: /list shows the numbers"]


async def test_switch_to_an_unknown_id_says_so(chat: Chat) -> None:
    assert await typed(chat, "/switch wxyz") == [
        "no session listed has an id starting with 'wxyz' (/list shows sessions; a whole id "
        "finds any)"
    ]


async def test_short_references_are_list_numbers_never_id_prefixes(chat: Chat) -> None:
    assert await typed(chat, "/switch abc") == [
        "type a /list number or at least 4 characters of an id"
    ]
    assert await typed(chat, "/switch 70") == ["no session 70: /list shows the numbers"]


async def test_switch_to_an_ambiguous_prefix_asks_for_more(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["abcd0000-0000-4000-8000-000000000001", "abcd0000-0000-4000-8000-000000000002"])
    monkeypatch.setattr("chatruntime.session._manager.new_id", lambda: next(ids))
    await typed(chat, "/new")
    await typed(chat, "/new")
    assert await typed(chat, "/switch ABCD") == [
        "2 sessions have ids starting with 'ABCD'; type more"
    ]
    assert await typed(chat, "/switch abcd0000-0000-4000-8000-000000000001") == [
        "switched to session 2: Chat 2 (active, 0 messages)"
    ]


async def test_switch_needs_an_argument(chat: Chat) -> None:
    assert await typed(chat, "/switch") == ["usage: /switch <n|id>"]


async def test_rename(chat: Chat) -> None:
    assert await typed(chat, "/rename Holiday ideas") == [
        "renamed session 1: Holiday ideas (active, 0 messages)"
    ]
    assert (await chat.current()).unwrap().name == "Holiday ideas"


async def test_rename_needs_a_name(chat: Chat) -> None:
    assert await typed(chat, "/rename") == ["usage: /rename <name>"]


async def test_pause_resume_and_complete_set_the_status(chat: Chat) -> None:
    assert await typed(chat, "/pause") == ["paused session 1: Chat 1 (paused, 0 messages)"]
    assert await typed(chat, "/resume") == ["resumed session 1: Chat 1 (active, 0 messages)"]
    assert await typed(chat, "/complete") == ["completed session 1: Chat 1 (completed, 0 messages)"]
    assert (await chat.current()).unwrap().status == "completed"


async def test_delete_another_session_keeps_the_current_one(chat: Chat) -> None:
    first = chat.session_id
    await typed(chat, "/new Second")
    await typed(chat, "/switch 1")
    assert await typed(chat, "/delete 2") == ["deleted session 2: Second (active, 0 messages)"]
    assert chat.session_id == first
    assert [s.id for s in await stored(chat)] == [first]


async def test_delete_the_current_session_moves_to_the_most_recent_other(chat: Chat) -> None:
    first = chat.session_id
    await typed(chat, "/new Second")
    assert await typed(chat, "/delete") == [
        "deleted session 2: Second (active, 0 messages)",
        "switched to session 1: Chat 1 (active, 0 messages)",
    ]
    assert chat.session_id == first


async def test_delete_the_last_session_starts_a_new_one(chat: Chat) -> None:
    first = chat.session_id
    # A number is never given to another session, not even one the deleted session left.
    assert await typed(chat, "/delete") == [
        "deleted session 1: Chat 1 (active, 0 messages)",
        "new session 2: Chat 1 (active, 0 messages)",
    ]
    assert chat.session_id != first
    assert (await chat.manager.get_session(first)).error is not None


async def test_sessions_is_another_name_for_list(chat: Chat) -> None:
    assert await typed(chat, "/sessions") == await typed(chat, "/list")


async def test_list_takes_only_more(chat: Chat) -> None:
    assert await typed(chat, "/list everything") == ["usage: /list [more]"]


async def test_list_shows_one_page_and_says_how_to_see_more(clock: None, chat: Chat) -> None:
    chat.page_size = 2
    await typed(chat, "/new")
    await typed(chat, "/new")
    third, second, first = (s.id[:8] for s in await stored(chat))
    assert await typed(chat, "/list") == [
        f"  2. Chat 2  (active, 0 messages)  {second}",
        f"* 3. Chat 3  (active, 0 messages)  {third}",
        "(the 2 most recently active; /list more shows older ones)",
    ]
    assert await typed(chat, "/list more") == [f"  1. Chat 1  (active, 0 messages)  {first}"]
    assert await typed(chat, "/list more") == [
        "(no more sessions: /list starts again from the most recent)"
    ]


async def test_list_numbers_sessions_first_shown_in_order_of_activity(clock: None) -> None:
    store = MemoryStore()
    first = await open_chat(store)
    for _ in range(3):
        await first.start_session()
    ids = [s.id for s in await stored(first)]
    chat = await open_chat(store)
    chat.page_size = 2
    assert chat.session_id == ids[0]
    assert await typed(chat, "/list") == [
        f"* 1. Chat 4  (active, 0 messages)  {ids[0][:8]}",
        f"  2. Chat 3  (active, 0 messages)  {ids[1][:8]}",
        "(the 2 most recently active; /list more shows older ones)",
    ]
    assert await typed(chat, "/list more") == [
        f"  3. Chat 2  (active, 0 messages)  {ids[2][:8]}",
        f"  4. Chat 1  (active, 0 messages)  {ids[3][:8]}",
    ]
    assert await typed(chat, "/switch 4") == ["switched to session 4: Chat 1 (active, 0 messages)"]


async def test_a_number_keeps_its_session_as_sessions_move_in_the_listing(
    clock: None, chat: Chat
) -> None:
    first = short(chat)
    await typed(chat, "/new Second")
    second = short(chat)
    await typed(chat, "/switch 1")
    await typed(chat, "Hello")
    # Chat 1 now has the latest activity and leads the listing; its number stays 1.
    assert [s.name for s in await stored(chat)] == ["Chat 1", "Second"]
    assert await typed(chat, "/list") == [
        f"* 1. Chat 1  (active, 2 messages)  {first}",
        f"  2. Second  (active, 0 messages)  {second}",
    ]
    assert await typed(chat, "/switch 2") == ["switched to session 2: Second (active, 0 messages)"]


async def test_switch_by_a_whole_id_finds_a_session_never_listed(clock: None) -> None:
    store = MemoryStore()
    chat = await open_chat(store)
    old = chat.session_id
    await chat.manager.update_session(old, name="Old one")
    for _ in range(3):
        await chat.start_session()
    again = await open_chat(store)
    again.page_size = 1
    assert await typed(again, "/list") == [
        f"* 1. Chat 4  (active, 0 messages)  {again.session_id[:8]}",
        "(the 1 most recently active; /list more shows older ones)",
    ]
    assert await typed(again, f"/switch {old[:8]}") == [
        f"no session listed has an id starting with '{old[:8]}' (/list shows sessions; "
        "a whole id finds any)"
    ]
    assert await typed(again, f"/switch {old.upper()}") == [
        "switched to session 2: Old one (active, 0 messages)"
    ]
    assert again.session_id == old


async def test_switch_to_a_deleted_session_says_it_is_gone(chat: Chat) -> None:
    await typed(chat, "/new Second")
    gone = chat.session_id
    await typed(chat, "/delete")
    assert await typed(chat, "/switch 2") == [f"error: SESSION_NOT_FOUND: no session has id {gone}"]


async def test_delete_the_current_session_passes_over_a_damaged_one(clock: None) -> None:
    store = WatchedStore()
    before = await open_chat(store)
    first = before.session_id
    await typed(before, "/new Damaged")
    damaged = before.session_id
    store.damaged.add(damaged)
    await typed(before, "/new Third")
    chat = await open_chat(store)
    assert await typed(chat, "/delete") == [
        "deleted session 1: Third (active, 0 messages)",
        "switched to session 2: Chat 1 (active, 0 messages)",
    ]
    assert chat.session_id == first
    assert chat.manager.corrupt_sessions == [WatchedStore.record(damaged)]


async def test_start_passes_over_a_damaged_session_and_names_it(clock: None) -> None:
    store = WatchedStore()
    before = await open_chat(store)
    first = before.session_id
    await typed(before, "/new Damaged")
    store.damaged.add(before.session_id)
    chat = await open_chat(store)
    assert chat.session_id == first
    assert chat.manager.corrupt_sessions == [WatchedStore.record(before.session_id)]


# -- looking at a session --------------------------------------------------------------------


async def test_history_of_a_new_session(chat: Chat) -> None:
    assert await typed(chat, "/history") == ["(no history yet)"]


async def test_history_needs_a_positive_count(chat: Chat) -> None:
    assert await typed(chat, "/history 0") == ["usage: /history [n], with n from 1 to 10000"]
    assert await typed(chat, "/history two") == ["usage: /history [n], with n from 1 to 10000"]


async def test_stats_of_a_new_session(chat: Chat) -> None:
    assert await typed(chat, "/stats") == [
        "session 1: Chat 1 (active)",
        "messages: 0, turns: 0, tool calls: 0, handoffs: 0",
        "tokens: 0 (0 input, 0 output) in 0 requests",
        "last agent: none",
        f"id: {chat.session_id}",
    ]


async def test_agents_lists_stored_agents_and_marks_the_sessions(chat: Chat) -> None:
    # Agents are listed oldest first: make sure the second is younger even on a fast machine
    # that would create both in one millisecond.
    await anyio.sleep(0.002)
    other = (await chat.agents.create_agent("Critic", "Find flaws.", model="gpt-4.1")).unwrap()
    assert await typed(chat, "/agents") == [
        f"* Assistant  (default model; tools: calculate, current_time)  "
        f"{chat.default_agent_id[:8]}",
        f"  Critic  (gpt-4.1; tools: none)  {other.id[:8]}",
    ]


async def test_help_lists_every_command(chat: Chat) -> None:
    lines = await typed(chat, "/help")
    assert lines[0] == "commands:"
    listed = [line.split()[0] for line in lines[1 : 1 + len(command_names())]]
    assert listed == [f"/{name}" for name in command_names()]
    assert lines[-6:] == [
        "/list shows a page at a time, most recent first; its numbers stay until you quit.",
        "/checkpoint saves the session as it is; /restore rewinds to one (and saves the state",
        "before, so a restore can be undone); /fork starts a new session from one.",
        "Damaged sessions are not looked for at start: /check reads every session, showing",
        "how far it got (Ctrl-C stops it), and lists those that cannot be read.",
        "Ctrl-C cancels a reply (nothing of it is saved) or clears the line; Ctrl-D quits.",
    ]


async def test_an_unknown_command_says_so(chat: Chat) -> None:
    assert await typed(chat, "/frobnicate") == [
        "unknown command: /frobnicate (/help lists the commands)"
    ]


async def test_a_command_without_arguments_refuses_one(chat: Chat) -> None:
    assert await typed(chat, "/stats everything") == ["usage: /stats"]


@pytest.mark.parametrize("line", ["/quit", "/exit", "/QUIT"])
async def test_quit(chat: Chat, line: str) -> None:
    assert await run_line(chat, line) is Outcome.QUIT


# -- checking the store ---------------------------------------------------------------------


async def test_check_reports_every_session_readable(chat: Chat) -> None:
    await typed(chat, "/new")
    assert await typed(chat, "/check") == ["checked 2 sessions: all can be read"]


async def test_check_lists_the_sessions_that_cannot_be_read_and_keeps_them() -> None:
    store = WatchedStore()
    chat = await open_chat(store)
    damaged = chat.session_id
    await typed(chat, "/new Fine")
    store.damaged.add(damaged)
    assert await typed(chat, "/check") == [
        "checked 2 sessions: 1 cannot be read",
        f"warning: cannot read memory/{damaged}: not valid JSON",
        "They are left as they are (using one answers CORRUPT_DATA): repair or remove them "
        "by hand.",
    ]
    assert len(await stored(chat)) == 2


async def test_check_off_a_terminal_writes_a_count_every_thousand_sessions(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scan(progress: CheckProgress | None = None) -> Result[CheckReport]:
        assert progress is not None
        for read in range(1, 2501):
            progress(read, 2500)
        return Ok(CheckReport(sessions=2500, corrupt=[]))

    monkeypatch.setattr(chat.manager, "check", scan)
    assert await typed(chat, "/check") == [
        "checking sessions: 1000 of 2500 (40%)",
        "checking sessions: 2000 of 2500 (80%)",
        "checked 2500 sessions: all can be read",
    ]


async def test_check_cancelled_erases_its_progress_and_says_so() -> None:
    store = WatchedStore()
    chat = await open_chat(store)
    chat.out = TerminalOutput()

    async def stalling_scan() -> AsyncIterator[ChatSession | CorruptRecord]:
        async for found in MemoryStore.scan_sessions(store):
            yield found
        await anyio.sleep_forever()

    store.scan_sessions = stalling_scan  # type: ignore[method-assign]
    # As Ctrl-C in the REPL does: the command's scope is cancelled mid-scan.
    with anyio.move_on_after(0.2):
        await run_line(chat, "/check")
    assert chat.out.getvalue() == (
        "\rchecking sessions: 1 of 1 (100%)" + "\r" + " " * 32 + "\r" + "(check stopped)\n"
    )


# -- progress ----------------------------------------------------------------------------------


def test_progress_on_a_terminal_rewrites_one_line_as_the_percentage_changes() -> None:
    out = TerminalOutput()
    progress = Progress(out, "checking sessions")
    for done in range(1, 1001):
        progress(done, 400 if done <= 400 else done)
    writes = out.getvalue().split("\r")[1:]
    assert len(writes) == 101
    assert writes[:3] == [
        "checking sessions: 1 of 400 (0%)",
        "checking sessions: 4 of 400 (1%)",
        "checking sessions: 8 of 400 (2%)",
    ]
    assert writes[-1] == "checking sessions: 400 of 400 (100%)"
    progress.end()
    assert out.getvalue().endswith("\r" + " " * len(writes[-1]) + "\r")


def test_progress_on_a_terminal_pads_a_shorter_text_over_a_longer_one() -> None:
    out = TerminalOutput()
    progress = Progress(out, "reading")
    progress(999, 1000)
    progress(10, 10)
    assert out.getvalue().split("\r")[1:] == [
        "reading: 999 of 1000 (99%)",
        "reading: 10 of 10 (100%)  ",
    ]


def test_progress_off_a_terminal_writes_a_line_every_n_items() -> None:
    out = io.StringIO()
    progress = Progress(out, "checking sessions", every=2)
    for done in range(1, 6):
        progress(done, 5)
    progress.end()
    assert out.getvalue().splitlines() == [
        "checking sessions: 2 of 5 (40%)",
        "checking sessions: 4 of 5 (80%)",
    ]


# -- checkpoints ----------------------------------------------------------------------------


async def test_checkpoint_saves_one_and_says_how_to_go_back(chat: Chat) -> None:
    await typed(chat, "Hello")
    assert await typed(chat, "/checkpoint before the quiz") == [
        "saved checkpoint 1: before the quiz (2 messages); /restore 1 goes back to it"
    ]
    assert await typed(chat, "/checkpoint") == [
        "saved checkpoint 2: (no label) (2 messages); /restore 2 goes back to it"
    ]
    saved = (await chat.manager.list_checkpoints(chat.session_id)).unwrap()
    assert [c.label for c in saved] == [None, "before the quiz"]


async def test_checkpoint_with_a_label_too_long_prints_the_error_code(chat: Chat) -> None:
    lines = await typed(chat, "/checkpoint " + "x" * 201)
    assert len(lines) == 1 and lines[0].startswith("error: VALIDATION_ERROR: label is 201 ")


async def test_checkpoints_lists_newest_first_numbered_oldest_first(chat: Chat) -> None:
    assert await typed(chat, "/checkpoints") == ["(no checkpoints: /checkpoint saves one)"]
    await typed(chat, "/checkpoint empty")
    await typed(chat, "Hello")
    await typed(chat, "/checkpoint greeted")
    ids = [c.id[:8] for c in (await chat.manager.list_checkpoints(chat.session_id)).unwrap()]
    assert await typed(chat, "/checkpoints") == [
        f"  2. greeted  (2 messages)  {ids[0]}",
        f"  1. empty  (0 messages)  {ids[1]}",
    ]


async def test_restore_rewinds_and_names_the_checkpoint_that_undoes_it(chat: Chat) -> None:
    await typed(chat, "Hello")
    await typed(chat, "/checkpoint greeted")
    await typed(chat, "More")
    assert await typed(chat, "/restore 1") == [
        "restored session 1: Chat 1 (active, 2 messages) to checkpoint 1; /restore 2 undoes it"
    ]
    assert await typed(chat, "/history") == [
        "you: Hello",
        "Assistant: [offline] You said: Hello (turn 1)",
    ]
    undo = (await chat.manager.get_latest_checkpoint(chat.session_id)).unwrap()
    assert (await typed(chat, "/checkpoints"))[0] == (
        f"  2. before restore  (4 messages, saved by a restore, to undo it)  {undo.id[:8]}"
    )
    assert await typed(chat, f"/restore {undo.id[:6].upper()}") == [
        "restored session 1: Chat 1 (active, 4 messages) to checkpoint 2; /restore 3 undoes it"
    ]
    assert len((await chat.current()).unwrap().history) == 4


async def test_restore_needs_a_checkpoint_it_can_find(chat: Chat) -> None:
    await typed(chat, "/checkpoint")
    assert await typed(chat, "/restore") == ["usage: /restore <n|id>"]
    assert await typed(chat, "/restore 5") == ["no checkpoint 5: /checkpoints shows the numbers"]
    assert await typed(chat, "/restore ab") == [
        "type a /checkpoints number or at least 4 characters of an id"
    ]
    assert await typed(chat, "/restore zzzz") == [
        "no checkpoint of this session has an id starting with 'zzzz'"
    ]


async def test_fork_from_now_switches_to_the_new_session(chat: Chat) -> None:
    source = chat.session_id
    await typed(chat, "Hello")
    assert await typed(chat, "/fork") == [
        "forked session 1 into session 2: Chat 1 (fork) (active, 2 messages)"
    ]
    assert chat.session_id != source
    await typed(chat, "Only here")
    assert len((await chat.current()).unwrap().history) == 4
    assert len((await chat.manager.get_session(source)).unwrap().history) == 2


async def test_fork_from_a_checkpoint_with_a_name(chat: Chat) -> None:
    await typed(chat, "/checkpoint start")
    await typed(chat, "Hello")
    assert await typed(chat, "/fork 1 Try again") == [
        "forked session 1 at checkpoint 1 into session 2: Try again (active, 0 messages)"
    ]
    assert await typed(chat, "/fork Just a name") == [
        "forked session 2 into session 3: Just a name (active, 0 messages)"
    ]
    assert await typed(chat, "/fork 9") == ["no checkpoint 9: /checkpoints shows the numbers"]


# -- messages --------------------------------------------------------------------------------


async def test_a_message_gets_the_streamed_offline_reply(chat: Chat) -> None:
    assert await typed(chat, "Hello there") == [
        "Assistant: [offline] You said: Hello there (turn 1)"
    ]
    assert await typed(chat, "/history") == [
        "you: Hello there",
        "Assistant: [offline] You said: Hello there (turn 1)",
    ]


async def test_stats_after_a_turn_count_the_offline_models_words(chat: Chat) -> None:
    await typed(chat, "Hello there")
    # The offline model counts words: instructions and input in, the reply out.
    input_words = len(DEFAULT_INSTRUCTIONS.split()) + 2
    output_words = len("[offline] You said: Hello there (turn 1)".split())
    assert (await typed(chat, "/stats"))[1:4] == [
        "messages: 2, turns: 1, tool calls: 0, handoffs: 0",
        f"tokens: {input_words + output_words} ({input_words} input, {output_words} output)"
        " in 1 request",
        "last agent: Assistant",
    ]


async def test_a_tool_call_is_shown_with_its_result(chat: Chat) -> None:
    assert await typed(chat, '/tool calculate {"expression": "6*7"}') == [
        '  [tool call] calculate {"expression":"6*7"}',
        "  [tool result] 42",
        "Assistant: [offline] calculate returned: 42",
    ]
    assert await typed(chat, "/history") == [
        'you: /tool calculate {"expression": "6*7"}',
        '  [tool call] calculate {"expression":"6*7"}',
        "  [tool result] 42",
        "Assistant: [offline] calculate returned: 42",
    ]


async def test_a_failing_tool_is_shown_as_a_tool_error(chat: Chat) -> None:
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("the fuse blew")

    chat.agents.tools.add(explode)
    tools = ["calculate", "current_time", "explode"]
    (await chat.agents.update_agent(chat.default_agent_id, tools=tools)).unwrap()
    # The SDK tells the model (and so the REPL) only that the tool failed, not why.
    failure = "An error occurred while running the tool. Please try again."
    assert await typed(chat, "/tool explode") == [
        "  [tool call] explode {}",
        f"  [tool error] {failure}",
        f"Assistant: [offline] explode returned: {failure}",
    ]
    assert (await typed(chat, "/history"))[1:3] == [
        "  [tool call] explode {}",
        f"  [tool error] {failure}",
    ]


async def test_a_handoff_is_shown_and_the_new_agent_speaks(chat: Chat) -> None:
    desk = (await chat.agents.create_agent("Weather desk", "Talk about weather.")).unwrap()
    (await chat.agents.update_agent(chat.default_agent_id, handoffs=[desk.id])).unwrap()
    reply = '[offline] transfer_to_weather_desk returned: {"assistant": "Weather desk"}'
    assert await typed(chat, "/tool transfer_to_weather_desk") == [
        "  [handoff] Assistant -> Weather desk",
        f"Weather desk: {reply}",
    ]
    assert await typed(chat, "/history") == [
        "you: /tool transfer_to_weather_desk",
        "  [handoff] Assistant -> Weather desk",
        f"Weather desk: {reply}",
    ]
    assert (await typed(chat, "/stats"))[1::2] == [
        "messages: 2, turns: 1, tool calls: 0, handoffs: 1",
        "last agent: Weather desk",
    ]


async def test_history_shows_the_last_n_items(chat: Chat) -> None:
    await typed(chat, "one")
    await typed(chat, "two")
    assert await typed(chat, "/history 3") == [
        "Assistant: [offline] You said: one (turn 1)",
        "you: two",
        "Assistant: [offline] You said: two (turn 2)",
    ]


async def test_a_message_to_a_paused_session_prints_the_error_code(chat: Chat) -> None:
    await typed(chat, "/pause")
    lines = await typed(chat, "Hello")
    assert len(lines) == 1 and lines[0].startswith("error: SESSION_NOT_ACTIVE: ")
    assert await typed(chat, "/history") == ["(no history yet)"]


async def test_cancelling_a_reply_says_so_and_keeps_the_history_unchanged() -> None:
    chat = await open_chat(MemoryStore(), delay=0.05)
    try:
        await typed(chat, "first")
        before = (await chat.current()).unwrap()
        chat.out = io.StringIO()
        with anyio.move_on_after(0.3) as scope:
            await chat.send("one two three four five six seven eight nine ten eleven twelve")
        assert scope.cancelled_caught
        printed = chat.out.getvalue()
        assert printed.startswith("Assistant: [offline]")
        assert printed.endswith("\n" + CANCELLED_LINE + "\n")
        after = (await chat.current()).unwrap()
        assert (after.history, after.context, after.revision) == (
            before.history,
            before.context,
            before.revision,
        )
    finally:
        await chat.manager.close()


# -- pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "answer"),
    [
        ("6*7", "42"),
        ("(2 + 3) * -1.5", "-7.5"),
        ("7 / 2", "3.5"),
        ("2 ** 10", "1024"),
        ("1 / 0", "error: division by zero"),
        ("2 ** 100000", "error: exponents above 1000 are not supported"),
        ("__import__('os')", "error: only numbers and + - * / // % ** are supported, "
         "not __import__('os')"),
        ("True + 1", "error: not a number: True"),
        ("6 *", "error: not an arithmetic expression: 6 *"),
    ],
)  # fmt: skip
def test_calculate(expression: str, answer: str) -> None:
    assert calculate(expression) == answer


def test_snippet_flattens_and_cuts_long_text() -> None:
    assert snippet("a\n b\tc") == "a b c"
    assert snippet("x" * 300) == "x" * 197 + "..."
