"""Input windows: trim what the model sees, never split a call from its output, keep all stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agents.testing import assistant_message, function_call

from chatruntime import LastItems, TokenBudget
from chatruntime.models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    MessageItem,
    ReasoningItem,
)
from chatruntime.session._replay import history_to_input
from support.turns import TurnHarness, lookup, open_turn_harness

pytestmark = pytest.mark.anyio


def user(text: str) -> MessageItem:
    return MessageItem(role="user", content=text)


def answer(text: str, agent: str = "a") -> MessageItem:
    return MessageItem(
        role="assistant",
        content=[{"annotations": [], "text": text, "type": "output_text"}],
        item_id=f"msg_{text}",
        status="completed",
        agent_id=agent,
    )


def call(call_id: str, agent: str = "a") -> FunctionCallItem:
    return FunctionCallItem(name="lookup", arguments="{}", call_id=call_id, agent_id=agent)


def result(call_id: str) -> FunctionCallResultItem:
    return FunctionCallResultItem(name="lookup", call_id=call_id, output=f"out {call_id}")


def thought(item_id: str) -> ReasoningItem:
    return ReasoningItem(item_id=item_id, summary=[{"text": "hm", "type": "summary_text"}])


HISTORY: list[HistoryItem] = [
    user("q1"),
    thought("rs_1"),
    call("c1"),
    call("c2"),
    result("c1"),
    result("c2"),
    thought("rs_2"),
    answer("a1"),
    user("q2"),
    answer("a2"),
    call("c3"),
    HandoffItem(
        from_agent_id="a",
        to_agent_id="b",
        call_id="h1",
        name="transfer_to_b",
        arguments="{}",
        output='{"assistant": "B"}',
        agent_id="a",
    ),
    result("c3"),
    answer("a3", agent="b"),
    user("q3"),
    call("c4"),
    result("c4"),
    answer("a4"),
]


def replayed_call_ids(items: list[HistoryItem]) -> tuple[list[str], list[str]]:
    sent = history_to_input(items)
    calls = [str(item["call_id"]) for item in sent if item.get("type") == "function_call"]
    outputs = [str(item["call_id"]) for item in sent if item.get("type") == "function_call_output"]
    return calls, outputs


@pytest.mark.parametrize("n", range(len(HISTORY) + 2))
def test_last_items_never_splits_a_call_or_a_step(n: int) -> None:
    kept = LastItems(n).apply(HISTORY, "next")

    assert len(kept) <= n
    assert kept == HISTORY[len(HISTORY) - len(kept) :]
    # Nothing inside the kept part is lost to orphan filtering: it replays as the tail of
    # the full replay.
    full, window = history_to_input(HISTORY), history_to_input(kept)
    assert window == full[len(full) - len(window) :]
    calls, outputs = replayed_call_ids(kept)
    assert sorted(calls) == sorted(outputs)
    assert len(window) == 0 or window[0].get("type") != "function_call_output"
    if kept and len(kept) < len(HISTORY):
        before = HISTORY[len(HISTORY) - len(kept) - 1]
        assert not isinstance(before, ReasoningItem | FunctionCallItem | HandoffItem)


@pytest.mark.parametrize(
    ("n", "first"),
    [
        (1, "a4"),  # after a tool output: an answer opens a step
        (3, "c4"),  # after a user message: a call opens a step
        (4, "q3"),
        (7, "a3"),  # the handoff and the output of the call beside it move the start on
        (8, "c3"),
        (11, "q2"),  # the answer after a reasoning item belongs to it
        (12, "rs_2"),
        (13, "rs_2"),  # never start at a tool output
    ],
)
def test_last_items_starts_at_the_next_safe_item(n: int, first: str) -> None:
    kept = LastItems(n).apply(HISTORY, "next")

    head = kept[0]
    if isinstance(head, ReasoningItem):
        assert head.item_id == first
    elif isinstance(head, FunctionCallItem):
        assert head.call_id == first
    else:
        assert isinstance(head, MessageItem) and head.text == first


def cost(items: list[HistoryItem], budget: TokenBudget) -> int:
    return sum(
        budget.estimate(json.dumps(sent, ensure_ascii=False, separators=(",", ":")))
        for sent in history_to_input(items)
    )


@pytest.mark.parametrize("max_tokens", [1, 10, 40, 80, 150, 400, 10_000])
def test_token_budget_keeps_the_newest_items_that_fit(max_tokens: int) -> None:
    budget = TokenBudget(max_tokens)

    kept = budget.apply(HISTORY, "next question")

    assert kept == HISTORY[len(HISTORY) - len(kept) :]
    assert cost(kept, budget) <= max(0, max_tokens - budget.estimate("next question"))
    calls, outputs = replayed_call_ids(kept)
    assert sorted(calls) == sorted(outputs)


def test_token_budget_keeps_everything_that_fits() -> None:
    assert TokenBudget(100_000).apply(HISTORY, "hi") == HISTORY
    assert TokenBudget(1).apply(HISTORY, "a long message over the budget") == []


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="n must be"):
        LastItems(-1)
    with pytest.raises(ValueError, match="max_tokens"):
        TokenBudget(0)
    with pytest.raises(ValueError, match="chars_per_token"):
        TokenBudget(10, chars_per_token=0)


@pytest.fixture
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness("file", tmp_path, request, window=LastItems(4)) as harness:
        yield harness


async def test_the_model_sees_the_window_and_the_store_keeps_everything(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [function_call("lookup", {"n": 1}, call_id="call_1")],
        [assistant_message("one", item_id="msg_1")],
        [assistant_message("two", item_id="msg_2")],
        [assistant_message("three", item_id="msg_3")],
        tools=[lookup],
    )
    session_id = await h.session(agent_id)

    for text in ["Look up 1", "Second", "Third"]:
        (await h.manager.send_message(session_id, text)).unwrap()

    history = (await h.stored(session_id)).history
    assert len(history) == 8
    # Four items back is the tool's output: the window starts after it, at its answer.
    assert h.models[0].calls[-1].input == [
        *history_to_input(history[3:6]),
        {"content": "Third", "role": "user"},
    ]


async def test_a_window_per_agent_overrides_the_managers(h: TurnHarness) -> None:
    agent_id = h.agent(
        "Helper",
        [assistant_message("one", item_id="msg_1")],
        [assistant_message("two", item_id="msg_2")],
        [assistant_message("three", item_id="msg_3")],
        [assistant_message("four", item_id="msg_4")],
    )
    session_id = await h.session(agent_id)

    h.manager.set_window(agent_id, LastItems(1))
    (await h.manager.send_message(session_id, "First")).unwrap()
    (await h.manager.send_message(session_id, "Second")).unwrap()
    assert h.manager.window_for(agent_id) == LastItems(1)
    h.manager.set_window(agent_id, None)
    (await h.manager.send_message(session_id, "Third")).unwrap()
    (await h.manager.send_message(session_id, "Fourth")).unwrap()

    inputs = [[item["content"] for item in call.input] for call in h.models[0].calls]
    assert inputs[1] == [
        [{"annotations": [], "text": "one", "type": "output_text", "logprobs": []}],
        "Second",
    ]
    assert [len(each) for each in inputs] == [1, 2, 5, 5]
