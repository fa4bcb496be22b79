"""The REPL's commands in-process: what each typed line prints and changes, exactly."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio
import pytest

from chatruntime import AgentManager, MemoryStore, OfflineModelProvider, SessionManager
from chatruntime.cli._chat import CANCELLED_LINE, DEFAULT_INSTRUCTIONS, Chat, pick_session
from chatruntime.cli._commands import Command, Outcome, Say, command_names, parse_line, run_line
from chatruntime.cli._render import snippet
from chatruntime.cli._tools import calculate, repl_tools
from chatruntime.stores import SessionStore

pytestmark = pytest.mark.anyio


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
        "history", "stats", "agents", "help", "quit",
    ]  # fmt: skip


# -- starting --------------------------------------------------------------------------------


async def test_first_start_creates_the_assistant_and_a_first_session() -> None:
    store = MemoryStore()
    chat = await open_chat(store)
    agents = await store.list_agents()
    assert [(a.name, a.instructions, a.tools) for a in agents] == [
        ("Assistant", DEFAULT_INSTRUCTIONS, ["calculate", "current_time"])
    ]
    sessions = (await chat.sessions()).unwrap()
    assert [(s.id, s.name, s.agent_id, s.status) for s in sessions] == [
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
    assert len((await second.sessions()).unwrap()) == 1


async def test_start_resumes_the_most_recently_active_session_that_takes_messages(
    chat: Chat,
) -> None:
    first = chat.session_id
    await typed(chat, "/new Second")
    await typed(chat, "/pause")
    listing = (await chat.manager.list_sessions()).unwrap()
    assert [s.name for s in listing] == ["Second", "Chat 1"]
    chosen = pick_session(listing)
    assert chosen is not None and chosen.id == first


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
    assert len((await chat.sessions()).unwrap()) == 1


async def test_list_numbers_sessions_oldest_first_and_marks_the_current_one(chat: Chat) -> None:
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
    assert await typed(chat, "/switch 7") == ["no session 7: /list shows 1"]


async def test_switch_to_an_unknown_id_says_so(chat: Chat) -> None:
    assert await typed(chat, "/switch wxyz") == ["no session id starts with 'wxyz'"]


async def test_short_references_are_list_numbers_never_id_prefixes(chat: Chat) -> None:
    assert await typed(chat, "/switch abc") == [
        "type a /list number or at least 4 characters of an id"
    ]
    assert await typed(chat, "/switch 70") == ["no session 70: /list shows 1"]


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
    assert [s.id for s in (await chat.sessions()).unwrap()] == [first]


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
    assert await typed(chat, "/delete") == [
        "deleted session 1: Chat 1 (active, 0 messages)",
        "new session 1: Chat 1 (active, 0 messages)",
    ]
    assert chat.session_id != first
    assert (await chat.manager.get_session(first)).error is not None


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


async def test_an_unknown_command_says_so(chat: Chat) -> None:
    assert await typed(chat, "/frobnicate") == [
        "unknown command: /frobnicate (/help lists the commands)"
    ]


async def test_a_command_without_arguments_refuses_one(chat: Chat) -> None:
    assert await typed(chat, "/list everything") == ["usage: /list"]


@pytest.mark.parametrize("line", ["/quit", "/exit", "/QUIT"])
async def test_quit(chat: Chat, line: str) -> None:
    assert await run_line(chat, line) is Outcome.QUIT


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
