"""``ChatruntimeSession``: the Agents SDK's ``Session`` protocol over every store.

The first part ports the SDK's own session tests (``tests/memory/test_session.py`` and
``test_session_limit.py``, written for ``SQLiteSession``) to a chatruntime session; the rest
checks what chatruntime adds: lossless items of every kind, revisions and statistics, user
scoping, and turns of ``send_message`` and ``Runner.run(session=...)`` on one history.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent, RunConfig, Runner, SessionSettings
from agents.items import TResponseInputItem
from agents.memory import Session
from agents.testing import ModelStep, ScriptedModel, assistant_message

from chatruntime import ErrorCode
from chatruntime.models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    InvalidInputError,
    MessageItem,
    ProviderItem,
    ReasoningItem,
    SessionNotActiveError,
    SessionNotFoundError,
)
from chatruntime.session._sdk_session import ChatruntimeSession
from support.stores import store_params
from support.turns import TurnHarness, open_turn_harness

pytestmark = pytest.mark.anyio

NO_TRACES = RunConfig(tracing_disabled=True)


@pytest.fixture(params=store_params())
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


@pytest.fixture
def model() -> ScriptedModel:
    return ScriptedModel()


@pytest.fixture
def agent(h: TurnHarness, model: ScriptedModel) -> Agent[Any]:
    """The agent of every session here, registered so ``send_message`` answers with it too."""
    made: Agent[Any] = Agent(name="test", model=model)
    h.agents.register(made)
    return made


async def new_session(
    h: TurnHarness, agent: Agent[Any], settings: SessionSettings | dict[str, Any] | None = None
) -> ChatruntimeSession:
    agent_id = h.agents.agent_id_of(agent)
    assert agent_id is not None
    session_id = await h.session(agent_id)
    return ChatruntimeSession(h.manager, session_id, settings=settings)


def user(text: str) -> TResponseInputItem:
    return {"role": "user", "content": text}


def reply(text: str, item_id: str = "msg_1") -> TResponseInputItem:
    """An assistant message as the SDK sends it back after a run of ``ScriptedModel``."""
    return {
        "id": item_id,
        "content": [{"annotations": [], "logprobs": [], "text": text, "type": "output_text"}],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    }


RunMethod = Callable[..., Any]


async def run_plain(agent: Agent[Any], given: Any, **options: Any) -> Any:
    return await Runner.run(agent, given, **options)


async def run_streamed(agent: Agent[Any], given: Any, **options: Any) -> Any:
    result = Runner.run_streamed(agent, given, **options)
    async for _event in result.stream_events():
        pass
    return result


# run_sync is left out: it runs its own event loop, and a manager serves the loop it lives on.
RUNNERS = [pytest.param(run_plain, id="run"), pytest.param(run_streamed, id="run_streamed")]


def contents(items: list[TResponseInputItem]) -> list[Any]:
    return [item.get("content") for item in items]


# -- ported from the SDK: the protocol itself --------------------------------------------------


async def test_it_is_an_sdk_session(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)

    assert isinstance(session, Session)


async def test_items_come_back_in_order_and_clear_empties_the_session(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    items = [user("Hello"), {"role": "assistant", "content": "Hi there!"}]

    await session.add_items(items)
    retrieved = await session.get_items()
    await session.clear_session()

    assert retrieved == items
    assert await session.get_items() == []


async def test_pop_item_removes_the_newest_first_and_none_when_empty(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    assert await session.pop_item() is None
    items = [user("Hello"), {"role": "assistant", "content": "Hi there!"}, user("How are you?")]
    await session.add_items(items)

    popped = [await session.pop_item() for _ in range(4)]

    assert popped == [items[2], items[1], items[0], None]
    assert await session.get_items() == []


async def test_pop_item_leaves_the_items_before_it(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)
    items = [user("Hello"), {"role": "assistant", "content": "Hi there!"}, user("How are you?")]
    await session.add_items(items)

    await session.pop_item()

    assert await session.get_items() == items[:2]


async def test_pop_item_affects_only_its_own_session(h: TurnHarness, agent: Agent[Any]) -> None:
    first = await new_session(h, agent)
    second = await new_session(h, agent)
    await first.add_items([user("Session 1 message")])
    await second.add_items([user("Session 2 message 1"), user("Session 2 message 2")])

    popped = await second.pop_item()

    assert popped == user("Session 2 message 2")
    assert await first.get_items() == [user("Session 1 message")]
    assert await second.get_items() == [user("Session 2 message 1")]


async def test_get_items_with_a_limit_gives_the_latest_in_order(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    items: list[TResponseInputItem] = []
    for n in (1, 2, 3):
        items += [user(f"Message {n}"), {"role": "assistant", "content": f"Response {n}"}]
    await session.add_items(items)

    assert await session.get_items() == items
    assert contents(await session.get_items(limit=2)) == ["Message 3", "Response 3"]
    assert await session.get_items(limit=4) == items[2:]
    assert await session.get_items(limit=10) == items
    assert await session.get_items(limit=0) == []


async def test_get_items_with_a_limit_reads_past_the_cache(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    items = [user(f"Message {n}") for n in range(100)]
    await session.add_items(items)
    (await h.manager.refresh()).unwrap()

    assert await session.get_items(limit=70) == items[30:]
    assert await session.get_items(limit=1) == items[99:]


async def test_unicode_content_comes_back_unchanged(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)
    items = [user("こんにちは"), {"role": "assistant", "content": "😊👍"}, user("Привет")]

    await session.add_items(items)

    assert await session.get_items() == items


async def test_special_characters_and_sql_keywords_come_back_unchanged(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    items = [
        user("O'Reilly"),
        {"role": "assistant", "content": "DROP TABLE sessions;"},
        user('"SELECT * FROM users WHERE name = "admin";"'),
        {"role": "assistant", "content": "Robert'); DROP TABLE students;--"},
        user("Normal message"),
    ]

    await session.add_items(items)

    assert await session.get_items() == items


async def test_concurrent_adds_keep_every_item(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)
    items = [user(f"Message {n}") for n in range(10)]

    async with anyio.create_task_group() as tasks:
        for item in items:
            tasks.start_soon(session.add_items, [item])

    retrieved = await session.get_items()
    assert sorted(contents(retrieved)) == sorted(contents(items))
    assert (await h.stored(session.session_id)).revision == 10


async def test_session_settings_default_to_no_limit(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)

    assert session.session_settings == SessionSettings(limit=None)


async def test_session_settings_are_taken_from_the_constructor(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent, SessionSettings(limit=5))

    assert session.session_settings == SessionSettings(limit=5)


async def test_session_settings_given_as_a_dict_are_normalized(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent, {"limit": 0})

    assert session.session_settings == SessionSettings(limit=0)
    assert session.session_settings.resolve({"limit": 4}).limit == 4


async def test_session_settings_with_an_unknown_field_are_refused(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    with pytest.raises(TypeError, match="Unknown session settings: limitt"):
        await new_session(h, agent, {"limitt": 1})


async def test_get_items_uses_the_settings_limit(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent, SessionSettings(limit=3))
    await session.add_items([user(f"Message {n}") for n in range(5)])

    assert contents(await session.get_items()) == ["Message 2", "Message 3", "Message 4"]


async def test_an_explicit_limit_overrides_the_settings(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent, SessionSettings(limit=5))
    await session.add_items([user(f"Message {n}") for n in range(10)])

    assert contents(await session.get_items(limit=2)) == ["Message 8", "Message 9"]


async def test_a_negative_limit_reads_everything_as_sqlite_session_does(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    items = [user(f"Message {n}") for n in range(3)]
    await session.add_items(items)

    assert await session.get_items(limit=-1) == items


# -- ported from the SDK: the runner with a session --------------------------------------------


@pytest.mark.parametrize("run", RUNNERS)
async def test_the_second_run_sends_the_first_runs_conversation(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    model.extend([{"output": [assistant_message("San Francisco", item_id="msg_1")]}])
    model.extend([{"output": [assistant_message("California", item_id="msg_2")]}])

    first = await run(agent, "What city is the Golden Gate Bridge in?", session=session)
    second = await run(agent, "What state is it in?", session=session, run_config=NO_TRACES)

    assert (first.final_output, second.final_output) == ("San Francisco", "California")
    assert model.calls[-1].input == [
        user("What city is the Golden Gate Bridge in?"),
        reply("San Francisco", "msg_1"),
        user("What state is it in?"),
    ]


@pytest.mark.parametrize("run", RUNNERS)
async def test_sessions_keep_separate_histories(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    cats = await new_session(h, agent)
    dogs = await new_session(h, agent)
    model.extend(
        [
            {"output": [assistant_message("I like cats", item_id="msg_1")]},
            {"output": [assistant_message("I like dogs", item_id="msg_2")]},
            {"output": [assistant_message("Yes, you mentioned cats", item_id="msg_3")]},
        ]
    )

    await run(agent, "I like cats", session=cats, run_config=NO_TRACES)
    await run(agent, "I like dogs", session=dogs, run_config=NO_TRACES)
    third = await run(agent, "What did I say I like?", session=cats, run_config=NO_TRACES)

    assert third.final_output == "Yes, you mentioned cats"
    assert model.calls[-1].input == [
        user("I like cats"),
        reply("I like cats", "msg_1"),
        user("What did I say I like?"),
    ]


@pytest.mark.parametrize("run", RUNNERS)
async def test_list_input_is_appended_to_the_history(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    history = [user("Earlier message"), {"role": "assistant", "content": "Saved reply"}]
    await session.add_items(history)
    model.extend([{"output": [assistant_message("This should run")]}])

    await run(agent, [user("Test message")], session=session, run_config=NO_TRACES)

    assert model.calls[-1].input == [*history, user("Test message")]


@pytest.mark.parametrize("run", RUNNERS)
async def test_a_session_input_callback_prepares_the_input(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    history = [user("Hello there."), {"role": "assistant", "content": "Hi, I'm here to assist."}]
    await session.add_items(history)
    model.extend([{"output": [assistant_message("I'm gpt-4o")]}])

    def users_only(
        stored: list[TResponseInputItem], new: list[TResponseInputItem]
    ) -> list[TResponseInputItem]:
        return [item for item in stored if item.get("role") == "user"] + new

    config = RunConfig(tracing_disabled=True, session_input_callback=users_only)
    await run(agent, [user("What is your name?")], session=session, run_config=config)

    assert model.calls[-1].input == [history[0], user("What is your name?")]


@pytest.mark.parametrize("run", RUNNERS)
async def test_a_callback_that_repeats_history_does_not_grow_the_session(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)

    def repeat_first(
        stored: list[TResponseInputItem], new: list[TResponseInputItem]
    ) -> list[TResponseInputItem]:
        return new if not stored else [*stored, stored[0], *new]

    config = RunConfig(tracing_disabled=True, session_input_callback=repeat_first)
    for turn in range(3):
        model.extend([{"output": [assistant_message(f"assistant {turn}", item_id=f"m{turn}")]}])
        await run(agent, f"user {turn}", session=session, run_config=config)

    stored = await session.get_items()
    assert [item.get("content") for item in stored if item.get("role") == "user"] == [
        "user 0",
        "user 1",
        "user 2",
    ]
    assert len(stored) == 6


@pytest.mark.parametrize("run", RUNNERS)
async def test_run_config_session_settings_override_the_sessions(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent, SessionSettings(limit=100))
    await session.add_items([user(f"Turn {n}") for n in range(10)])
    model.extend([{"output": [assistant_message("Got it")]}])

    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
    await run(agent, "New question", session=session, run_config=config)

    assert model.calls[-1].input == [user("Turn 8"), user("Turn 9"), user("New question")]


async def run_three_turns(
    session: ChatruntimeSession, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    for n in (1, 2, 3):
        model.extend([{"output": [assistant_message(f"Reply {n}", item_id=f"msg_{n}")]}])
        await run(agent, f"Message {n}", session=session, run_config=NO_TRACES)


@pytest.mark.parametrize("run", RUNNERS)
async def test_a_session_limit_sends_only_the_latest_items(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    await run_three_turns(session, agent, model, run)
    assert len(await session.get_items()) == 6
    model.extend([{"output": [assistant_message("Reply 4")]}])

    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
    await run(agent, "Message 4", session=session, run_config=config)

    assert model.calls[-1].input == [
        user("Message 3"),
        reply("Reply 3", "msg_3"),
        user("Message 4"),
    ]


@pytest.mark.parametrize("run", RUNNERS)
async def test_a_limit_that_cuts_a_tool_call_sends_no_orphan_output(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    answer: TResponseInputItem = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}],
    }
    history: list[TResponseInputItem] = [
        user("What is the weather?"),
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        answer,
    ]
    await session.add_items(history)
    assert await session.get_items(limit=2) == history[-2:]
    model.extend([{"output": [assistant_message("Tomorrow is sunny too.")]}])

    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
    await run(agent, "What about tomorrow?", session=session, run_config=config)

    assert model.calls[-1].input == [answer, user("What about tomorrow?")]


@pytest.mark.parametrize("run", RUNNERS)
async def test_a_session_limit_of_zero_sends_only_the_new_message(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    await run_three_turns(session, agent, model, run)
    model.extend([{"output": [assistant_message("Reply 4")]}])

    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=0))
    await run(agent, "Message 4", session=session, run_config=config)

    assert model.calls[-1].input == [user("Message 4")]


@pytest.mark.parametrize("run", RUNNERS)
async def test_no_session_limit_sends_the_whole_history(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    await run_three_turns(session, agent, model, run)
    model.extend([{"output": [assistant_message("Reply 4")]}])

    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=None))
    await run(agent, "Message 4", session=session, run_config=config)

    assert model.calls[-1].input == [
        user("Message 1"),
        reply("Reply 1", "msg_1"),
        user("Message 2"),
        reply("Reply 2", "msg_2"),
        user("Message 3"),
        reply("Reply 3", "msg_3"),
        user("Message 4"),
    ]


@pytest.mark.parametrize("run", RUNNERS)
async def test_a_limit_larger_than_the_history_sends_it_all(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel, run: RunMethod
) -> None:
    session = await new_session(h, agent)
    model.extend([{"output": [assistant_message("Reply 1", item_id="msg_1")]}])
    await run(agent, "Message 1", session=session, run_config=NO_TRACES)
    model.extend([{"output": [assistant_message("Reply 2")]}])

    config = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=100))
    await run(agent, "Message 2", session=session, run_config=config)

    assert model.calls[-1].input == [
        user("Message 1"),
        reply("Reply 1", "msg_1"),
        user("Message 2"),
    ]


# -- lossless storage -------------------------------------------------------------------------

EVERY_KIND: list[TResponseInputItem] = [
    {"role": "user", "content": "Plain text"},
    {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "What is in it?"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"},
            {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"},
        ],
    },
    {"type": "message", "role": "user", "content": "A typed user message"},
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Answer in French."},
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Thinking"}],
        "encrypted_content": "gAAA-1",
    },
    {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"n":1}',
        "status": "completed",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "result 1"},
    {
        "type": "function_call_output",
        "call_id": "call_2",
        "output": [{"type": "input_text", "text": "listed"}],
    },
    {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "paris weather"},
    },
    {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "docs",
        "name": "search",
        "arguments": "{}",
        "output": "found",
    },
    {"type": "item_reference", "id": "msg_0"},
    reply("Hi!", "msg_1"),
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "No id"}]},
    {"role": "assistant", "content": "Plain assistant text"},
]


async def test_items_of_every_kind_come_back_exactly_as_added(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)

    await session.add_items(EVERY_KIND)

    assert await session.get_items() == EVERY_KIND
    (await h.manager.refresh()).unwrap()
    assert await session.get_items() == EVERY_KIND
    assert await session.get_items(limit=5) == EVERY_KIND[-5:]


async def test_items_are_stored_as_their_dedicated_history_types(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)

    await session.add_items(EVERY_KIND)

    stored = (await h.stored(session.session_id)).history
    assert [type(item) for item in stored] == [
        MessageItem,
        MessageItem,
        ProviderItem,  # "type": "message" on a user message is not what a MessageItem sends
        MessageItem,
        MessageItem,
        ReasoningItem,
        FunctionCallItem,
        FunctionCallResultItem,
        FunctionCallResultItem,
        ProviderItem,
        ProviderItem,
        ProviderItem,
        MessageItem,
        ProviderItem,  # an output message without an id
        MessageItem,
    ]
    assert isinstance(stored[9], ProviderItem) and stored[9].item == EVERY_KIND[9]


async def test_added_items_do_not_follow_later_changes_to_the_callers_dicts(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    item: dict[str, Any] = {"type": "web_search_call", "id": "ws_1", "action": {"query": "a"}}
    await session.add_items([item])  # type: ignore[list-item]

    item["action"]["query"] = "changed"
    retrieved = await session.get_items()
    retrieved[0]["action"]["query"] = "changed too"  # type: ignore[typeddict-item]

    assert await session.get_items() == [
        {"type": "web_search_call", "id": "ws_1", "action": {"query": "a"}}
    ]


async def test_an_item_that_is_not_a_dict_is_refused_and_nothing_is_stored(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)

    with pytest.raises(InvalidInputError, match="a session item must be a dict, got str"):
        await session.add_items([user("Fine"), "not an item"])  # type: ignore[list-item]

    assert await session.get_items() == []
    assert (await h.stored(session.session_id)).revision == 0


async def test_popping_a_handoff_gives_its_output_and_keeps_its_call(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel
) -> None:
    session = await new_session(h, agent)
    await session.add_items([user("Hi")])
    stored = await h.stored(session.session_id)
    handoff = HandoffItem(
        from_agent_id="a",
        to_agent_id="b",
        call_id="call_h",
        name="transfer_to_b",
        arguments="{}",
        output='{"assistant": "b"}',
    )
    header = h.manager._next_header(stored)
    await h.store.write_session(header, [handoff], expected_revision=stored.revision)

    popped = await session.pop_item()

    assert popped == {
        "call_id": "call_h",
        "output": '{"assistant": "b"}',
        "type": "function_call_output",
    }
    assert await session.get_items() == [
        user("Hi"),
        {"arguments": "{}", "call_id": "call_h", "name": "transfer_to_b", "type": "function_call"},
    ]


# -- revision, statistics, users ----------------------------------------------------------------


async def test_each_write_moves_the_revision_and_the_activity_on(
    h: TurnHarness, agent: Agent[Any]
) -> None:
    session = await new_session(h, agent)
    created = await h.stored(session.session_id)

    await session.add_items([user("Hello"), reply("Hi"), EVERY_KIND[6], EVERY_KIND[9]])
    added = await h.stored(session.session_id)
    await session.pop_item()
    popped = await h.stored(session.session_id)
    await session.clear_session()
    cleared = await h.stored(session.session_id)

    assert [created.revision, added.revision, popped.revision, cleared.revision] == [0, 1, 2, 3]
    assert created.context.last_activity <= added.context.last_activity
    assert added.context.last_activity <= popped.context.last_activity <= cleared.updated_at
    # Messages and calls counted as a turn counts them; a removal does not undo a count.
    assert (added.context.total_messages, added.context.total_function_calls) == (2, 2)
    assert (cleared.context.total_messages, cleared.context.total_function_calls) == (2, 2)
    assert (cleared.name, cleared.history) == (created.name, [])


async def test_adding_nothing_writes_nothing(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)

    await session.add_items([])

    assert (await h.stored(session.session_id)).revision == 0


async def test_an_unknown_session_is_not_found(h: TurnHarness) -> None:
    session = ChatruntimeSession(h.manager, "00000000-0000-4000-8000-000000000000")

    for call in (session.get_items, session.pop_item, session.clear_session):
        with pytest.raises(SessionNotFoundError):
            await call()
    with pytest.raises(SessionNotFoundError):
        await session.add_items([user("Hello")])
    with pytest.raises(SessionNotFoundError):
        await session.get_items(limit=3)


async def test_another_users_session_is_not_found(h: TurnHarness, agent: Agent[Any]) -> None:
    agent_id = h.agents.agent_id_of(agent)
    assert agent_id is not None
    alice = (await h.manager.for_user("alice").create_session(agent_id, "Chat")).unwrap()
    as_bob = ChatruntimeSession(h.manager, alice.id, user_id="bob")
    as_alice = ChatruntimeSession(h.manager, alice.id, user_id="alice")
    await as_alice.add_items([user("Mine")])

    with pytest.raises(SessionNotFoundError) as raised:
        await as_bob.get_items()
    with pytest.raises(SessionNotFoundError):
        await as_bob.add_items([user("Not yours")])

    assert raised.value.message == f"no session has id {alice.id}"
    assert await as_alice.get_items() == [user("Mine")]


async def test_a_paused_session_takes_no_items(h: TurnHarness, agent: Agent[Any]) -> None:
    session = await new_session(h, agent)
    (await h.manager.update_session(session.session_id, status="paused")).unwrap()

    with pytest.raises(SessionNotActiveError) as raised:
        await session.add_items([user("Hello")])

    assert raised.value.code is ErrorCode.SESSION_NOT_ACTIVE
    assert await session.get_items() == []


async def test_a_bad_session_id_is_refused_at_once(h: TurnHarness) -> None:
    with pytest.raises(InvalidInputError):
        ChatruntimeSession(h.manager, "not-a-uuid")


# -- one history for send_message and Runner.run --------------------------------------------------


async def test_runner_turns_and_send_message_turns_share_one_history(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel
) -> None:
    session = await new_session(h, agent)
    model.extend(
        [
            {"output": [assistant_message("One", item_id="msg_1")]},
            {"output": [assistant_message("Two", item_id="msg_2")]},
            {"output": [assistant_message("Three", item_id="msg_3")]},
        ]
    )

    await Runner.run(agent, "First", session=session, run_config=NO_TRACES)
    second = (await h.manager.send_message(session.session_id, "Second")).unwrap()
    await Runner.run(agent, "Third", session=session, run_config=NO_TRACES)

    conversation = [
        user("First"),
        reply("One", "msg_1"),
        user("Second"),
        reply("Two", "msg_2"),
        user("Third"),
    ]
    assert second.content == "Two"
    assert [call.input for call in model.calls] == [
        conversation[:1],
        conversation[:3],
        conversation,
    ]
    assert await session.get_items() == [*conversation, reply("Three", "msg_3")]
    stored = await h.stored(session.session_id)
    assert [type(item) for item in stored.history] == [MessageItem] * 6
    assert (stored.context.total_messages, stored.context.total_turns) == (6, 1)


async def test_an_add_waits_for_a_turn_in_progress_and_never_interleaves(
    h: TurnHarness, agent: Agent[Any], model: ScriptedModel
) -> None:
    session = await new_session(h, agent)
    turn_started = anyio.Event()

    async def slow(call: Any) -> Any:
        turn_started.set()
        await anyio.sleep(0.3)
        return [assistant_message("Slow answer", item_id="msg_1")]

    model.extend([ModelStep.respond(slow)])

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(h.manager.send_message, session.session_id, "Question")
        await turn_started.wait()
        await session.add_items([user("Added meanwhile")])

    assert contents(await session.get_items()) == [
        "Question",
        reply("Slow answer")["content"],
        "Added meanwhile",
    ]
    assert (await h.stored(session.session_id)).revision == 2
