"""``send_message``: typed history, exact replay, statistics, and the checks before a turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, WebSearchTool
from agents.testing import ScriptedModel, assistant_message, function_call
from openai.types.responses import ResponseFunctionWebSearch, ResponseReasoningItem
from openai.types.responses.response_function_web_search import ActionSearch
from openai.types.responses.response_reasoning_item import Summary

from chatruntime import ErrorCode, SessionManager
from chatruntime.models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    ItemUsage,
    Message,
    MessageItem,
    ProviderItem,
    ReasoningItem,
    SessionContext,
)
from chatruntime.session._replay import history_to_input
from support.turns import (
    STORE_KINDS,
    TurnHarness,
    crash,
    lookup,
    open_turn_harness,
    sdk_chained_inputs,
    usage,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=STORE_KINDS)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


def text_part(text: str) -> dict[str, Any]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": []}


async def test_a_plain_reply_is_returned_and_stored(h: TurnHarness) -> None:
    agent_id = h.agent("Helper", {"output": [assistant_message("Hi!", item_id="msg_1")]})
    session_id = await h.session(agent_id)

    reply = (await h.manager.send_message(session_id, "Hello")).unwrap()

    stored = await h.stored(session_id)
    user, answer = stored.history
    assert user == MessageItem(id=user.id, timestamp=user.timestamp, role="user", content="Hello")
    assert answer == MessageItem(
        id=answer.id,
        timestamp=answer.timestamp,
        agent_id=agent_id,
        role="assistant",
        content=[text_part("Hi!")],
        status="completed",
        item_id="msg_1",
        usage=ItemUsage(requests=1),
    )
    assert reply == Message.from_item(answer)
    assert (reply.content, reply.role, reply.agent_id) == ("Hi!", "assistant", agent_id)
    assert stored.revision == 1
    assert (await h.manager.get_session(session_id)).unwrap() == stored


async def test_the_next_turn_sends_what_the_sdk_itself_would_send(h: TurnHarness) -> None:
    steps: list[Any] = [
        [
            ResponseReasoningItem(
                id="rs_1",
                type="reasoning",
                summary=[Summary(text="Look it up", type="summary_text")],
                encrypted_content="gAAA-secret",
            ),
            function_call("lookup", {"n": 1}, call_id="call_1", item_id="fc_1"),
        ],
        [assistant_message("It is result 1", item_id="msg_1")],
        [function_call("crash", {"n": 2}, call_id="call_2")],
        [assistant_message("That failed", item_id="msg_2")],
        [assistant_message("Bye", item_id="msg_3")],
    ]
    agent_id = h.agent("Helper", *steps, tools=[lookup, crash])
    session_id = await h.session(agent_id)
    reference = Agent(name="Helper", model=ScriptedModel(steps), tools=[lookup, crash])
    messages = ["Look up 1", "Crash on 2", "Bye"]

    for text in messages:
        (await h.manager.send_message(session_id, text)).unwrap()

    sdk_history, sdk_starts = await sdk_chained_inputs(reference, messages)
    model = h.models[0]
    ours = [model.calls[i].input for i in (0, 2, 4)]
    assert ours == sdk_starts
    assert history_to_input((await h.stored(session_id)).history) == sdk_history


async def test_tool_calls_and_results_are_stored_as_typed_items(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [function_call("lookup", {"n": 7}, call_id="call_7", item_id="fc_7")],
        [assistant_message("Found result 7", item_id="msg_1")],
        tools=[lookup],
    )
    session_id = await h.session(agent_id)

    reply = (await h.manager.send_message(session_id, "Look up 7")).unwrap()

    history = (await h.stored(session_id)).history
    assert [type(item) for item in history] == [
        MessageItem,
        FunctionCallItem,
        FunctionCallResultItem,
        MessageItem,
    ]
    call, result = history[1], history[2]
    assert isinstance(call, FunctionCallItem) and isinstance(result, FunctionCallResultItem)
    assert (call.name, call.arguments, call.call_id, call.item_id, call.agent_id) == (
        "lookup",
        '{"n":7}',
        "call_7",
        "fc_7",
        agent_id,
    )
    assert (result.name, result.call_id, result.output, result.status) == (
        "lookup",
        "call_7",
        "result 7",
        "completed",
    )
    assert reply.content == "Found result 7"
    assert h.models[0].calls[1].input[-1] == {
        "call_id": "call_7",
        "output": "result 7",
        "type": "function_call_output",
    }


async def test_a_tool_that_raised_is_stored_as_a_failed_result(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [function_call("crash", {"n": 1}, call_id="call_1")],
        [assistant_message("The tool is broken", item_id="msg_1")],
        tools=[crash],
    )
    session_id = await h.session(agent_id)

    reply = (await h.manager.send_message(session_id, "Crash")).unwrap()

    result = (await h.stored(session_id)).history[2]
    assert isinstance(result, FunctionCallResultItem)
    assert (result.status, result.output) == (
        "failed",
        "An error occurred while running the tool. Please try again.",
    )
    assert reply.content == "The tool is broken"


async def test_a_handoff_is_stored_with_both_agents_and_counted(h: TurnHarness) -> None:
    billing_model = ScriptedModel([[assistant_message("Billing here", item_id="msg_2")]])
    billing = Agent(name="Billing", model=billing_model)
    billing_id = h.agents.register(billing)
    triage_id = h.agent(
        "Triage",
        [
            assistant_message("Passing you on", item_id="msg_1"),
            function_call("transfer_to_billing", {}, call_id="call_h", item_id="fc_h"),
        ],
        handoffs=[billing],
    )
    session_id = await h.session(triage_id)

    reply = (await h.manager.send_message(session_id, "My invoice")).unwrap()

    stored = await h.stored(session_id)
    _, first, handoff, second = stored.history
    assert isinstance(handoff, HandoffItem)
    assert (handoff.from_agent_id, handoff.to_agent_id, handoff.agent_id) == (
        triage_id,
        billing_id,
        triage_id,
    )
    assert (handoff.call_id, handoff.name, handoff.item_id, handoff.output) == (
        "call_h",
        "transfer_to_billing",
        "fc_h",
        '{"assistant": "Billing"}',
    )
    assert (first.agent_id, second.agent_id) == (triage_id, billing_id)
    assert (reply.content, reply.agent_id) == ("Billing here", billing_id)
    assert (stored.context.total_handoffs, stored.context.last_agent_id) == (1, billing_id)
    assert stored.context.total_messages == 3


async def test_after_a_handoff_the_next_turn_is_answered_by_the_new_agent(
    h: TurnHarness,
) -> None:
    billing_model = ScriptedModel(
        [
            [assistant_message("Billing here", item_id="msg_2")],
            [assistant_message("Still billing", item_id="msg_3")],
        ]
    )
    billing_id = h.agents.register(Agent(name="Billing", model=billing_model))
    billing = await h.agents.resolve(billing_id)
    triage_id = h.agent(
        "Triage",
        [function_call("transfer_to_billing", {}, call_id="call_h", item_id="fc_h")],
        handoffs=[billing],
    )
    session_id = await h.session(triage_id)
    (await h.manager.send_message(session_id, "My invoice")).unwrap()

    reply = (await h.manager.send_message(session_id, "And the refund?")).unwrap()

    assert (reply.content, reply.agent_id) == ("Still billing", billing_id)
    assert len(billing_model.calls) == 2
    assert h.models[0].remaining_steps == 0
    assert (await h.stored(session_id)).agent_id == triage_id


async def test_a_deleted_last_agent_hands_the_session_back_to_its_own_agent(
    h: TurnHarness,
) -> None:
    billing_model = ScriptedModel([[assistant_message("Billing here", item_id="msg_2")]])
    billing_id = h.agents.register(Agent(name="Billing", model=billing_model))
    billing = await h.agents.resolve(billing_id)
    triage_id = h.agent(
        "Triage",
        [function_call("transfer_to_billing", {}, call_id="call_h", item_id="fc_h")],
        [assistant_message("Triage again", item_id="msg_4")],
        handoffs=[billing],
    )
    session_id = await h.session(triage_id)
    (await h.manager.send_message(session_id, "My invoice")).unwrap()
    (await h.agents.delete_agent(billing_id)).unwrap()

    reply = (await h.manager.send_message(session_id, "Hello?")).unwrap()

    assert (reply.content, reply.agent_id) == ("Triage again", triage_id)


async def test_reasoning_is_stored_and_sent_back_exactly(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Thinker",
        [
            ResponseReasoningItem(
                id="rs_1",
                type="reasoning",
                summary=[Summary(text="Consider it", type="summary_text")],
                encrypted_content="gAAA-1",
            ),
            assistant_message("Done thinking", item_id="msg_1"),
        ],
        [assistant_message("Again", item_id="msg_2")],
    )
    session_id = await h.session(agent_id)

    (await h.manager.send_message(session_id, "Think")).unwrap()
    (await h.manager.send_message(session_id, "More")).unwrap()

    reasoning = (await h.stored(session_id)).history[1]
    assert reasoning == ReasoningItem(
        id=reasoning.id,
        timestamp=reasoning.timestamp,
        agent_id=agent_id,
        item_id="rs_1",
        summary=[{"text": "Consider it", "type": "summary_text"}],
        encrypted_content="gAAA-1",
    )
    assert h.models[0].calls[1].input[1] == {
        "id": "rs_1",
        "summary": [{"text": "Consider it", "type": "summary_text"}],
        "type": "reasoning",
        "encrypted_content": "gAAA-1",
    }


async def test_statistics_equal_the_usage_the_model_reported(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        {
            "output": [function_call("lookup", {"n": 1}, call_id="call_1")],
            "usage": usage(100, 10),
        },
        {"output": [assistant_message("One", item_id="msg_1")], "usage": usage(130, 5)},
        {"output": [assistant_message("Two", item_id="msg_2")], "usage": usage(150, 7)},
        tools=[lookup],
    )
    session_id = await h.session(agent_id)

    first = (await h.manager.send_message(session_id, "Look up 1")).unwrap()
    second = (await h.manager.send_message(session_id, "Again")).unwrap()

    assert first.usage == ItemUsage(
        requests=2, input_tokens=230, output_tokens=15, total_tokens=245
    )
    assert second.usage == ItemUsage(
        requests=1, input_tokens=150, output_tokens=7, total_tokens=157
    )
    stored = await h.stored(session_id)
    assert stored.context == SessionContext(
        total_tokens=402,
        total_messages=4,
        total_function_calls=1,
        last_activity=stored.history[-1].timestamp,
        last_agent_id=agent_id,
        input_tokens=380,
        output_tokens=22,
        requests=3,
        total_turns=2,
        total_handoffs=0,
    )


async def test_a_new_manager_finds_the_stored_turns(h: TurnHarness) -> None:
    agent_id = h.agent("Helper", [assistant_message("Hi!", item_id="msg_1")])
    session_id = await h.session(agent_id)
    (await h.manager.send_message(session_id, "Hello")).unwrap()
    before = await h.stored(session_id)

    again = SessionManager(h.store, h.agents)
    (await again.initialize()).unwrap()
    assert (await again.get_session(session_id)).unwrap() == before


@pytest.mark.parametrize("status", ["paused", "completed"])
async def test_a_session_that_is_not_active_refuses_messages(h: TurnHarness, status: str) -> None:
    agent_id = h.agent("Helper", [assistant_message("never", item_id="msg_1")])
    session_id = await h.session(agent_id)
    (await h.manager.update_session(session_id, status=status)).unwrap()  # type: ignore[arg-type]
    before = await h.snapshot(session_id)

    result = await h.manager.send_message(session_id, "Hello")

    assert result.error is not None
    assert result.error.code is ErrorCode.SESSION_NOT_ACTIVE
    assert result.error.details == {"session_id": session_id, "status": status}
    assert h.models[0].calls == ()
    assert await h.snapshot(session_id) == before


@pytest.mark.parametrize("content", ["", "   ", "\n\t"])
async def test_empty_content_is_refused(h: TurnHarness, content: str) -> None:
    agent_id = h.agent("Helper")
    session_id = await h.session(agent_id)

    result = await h.manager.send_message(session_id, content)

    assert result.error is not None
    assert (result.error.code, result.error.details) == (
        ErrorCode.VALIDATION_ERROR,
        {"field": "content"},
    )


async def test_unknown_session_and_deleted_agent_have_their_codes(h: TurnHarness) -> None:
    agent_id = h.agent("Helper")
    session_id = await h.session(agent_id)
    unknown = "123e4567-e89b-42d3-a456-426614174000"

    missing = await h.manager.send_message(unknown, "Hello")
    (await h.agents.delete_agent(agent_id)).unwrap()
    orphaned = await h.manager.send_message(session_id, "Hello")

    assert missing.error is not None and missing.error.code is ErrorCode.SESSION_NOT_FOUND
    assert orphaned.error is not None and orphaned.error.code is ErrorCode.AGENT_NOT_FOUND
    assert (await h.stored(session_id)).history == []


async def test_bad_timeout_is_a_validation_error(h: TurnHarness) -> None:
    session_id = await h.session(h.agent("Helper"))

    result = await h.manager.send_message(session_id, "Hello", timeout=0)

    assert result.error is not None
    assert (result.error.code, result.error.details) == (
        ErrorCode.VALIDATION_ERROR,
        {"field": "timeout"},
    )


def test_manager_options_are_checked() -> None:
    from chatruntime import AgentManager, MemoryStore

    store = MemoryStore()
    with pytest.raises(ValueError, match="max_turns"):
        SessionManager(store, AgentManager(store), max_turns=0)
    with pytest.raises(ValueError, match="default_timeout"):
        SessionManager(store, AgentManager(store), default_timeout=-1)


async def test_without_a_provider_or_key_the_offline_model_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chatruntime import AgentManager, MemoryStore

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHATRUNTIME_OFFLINE", "CHATRUNTIME_MODEL"):
        monkeypatch.delenv(name, raising=False)
    store = MemoryStore()
    agents = AgentManager(store)
    async with SessionManager(store, agents) as manager:
        agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
        session_id = (await manager.create_session(agent.id, "Chat")).unwrap().id

        reply = (await manager.send_message(session_id, "Hello")).unwrap()

    assert (reply.content, reply.agent_id) == ("[offline] You said: Hello (turn 1)", agent.id)


async def test_turns_on_a_closed_manager_are_a_usage_error(h: TurnHarness) -> None:
    from chatruntime import UsageError

    session_id = await h.session(h.agent("Helper"))
    await h.manager.close()

    with pytest.raises(UsageError, match="closed"):
        await h.manager.send_message(session_id, "Hello")
    with pytest.raises(UsageError, match="closed"):
        async for _ in h.manager.stream_message(session_id, "Hello"):
            pass


async def test_hosted_tool_items_are_kept_raw_and_replayed_as_the_sdk_sends_them(
    h: TurnHarness,
) -> None:
    search = ResponseFunctionWebSearch(
        id="ws_1",
        status="completed",
        type="web_search_call",
        action=ActionSearch(type="search", query="paris weather"),
    )
    steps: list[Any] = [
        [search, assistant_message("It is sunny", item_id="msg_1")],
        [assistant_message("Still sunny", item_id="msg_2")],
    ]
    agent_id = h.agent("Helper", *steps, tools=[WebSearchTool()])
    session_id = await h.session(agent_id)
    reference = Agent(name="Helper", model=ScriptedModel(steps), tools=[WebSearchTool()])
    messages = ["Weather in Paris?", "And now?"]
    for text in messages:
        (await h.manager.send_message(session_id, text)).unwrap()

    sdk_history, sdk_starts = await sdk_chained_inputs(reference, messages)
    assert [call.input for call in h.models[0].calls] == sdk_starts
    stored = await h.stored(session_id)
    assert history_to_input(stored.history) == sdk_history
    raw = [item for item in stored.history if isinstance(item, ProviderItem)]
    assert [(item.kind, item.item["action"]["query"]) for item in raw] == [
        ("web_search_call", "paris weather")
    ]
    assert stored.context.total_function_calls == 1
