"""The ``Summarize`` window: long conversations folded into stored summaries, within budget."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage

from chatruntime import ErrorCode
from chatruntime.models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HistoryItem,
    MessageItem,
)
from chatruntime.session._replay import SUMMARY_KEY, history_to_input, summary_of
from chatruntime.session._sdk_session import ChatruntimeSession
from chatruntime.session._summarize import SUMMARY_PREFIX, Summarize, transcript
from support.stores import store_params
from support.turns import TurnHarness, lookup, open_turn_harness

pytestmark = pytest.mark.anyio

BUDGET = 600


@pytest.fixture(params=store_params("memory", "file"))
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


def cost(items: Sequence[Any]) -> int:
    """Estimated tokens of input items as sent: the measure the window uses."""
    return sum(
        math.ceil(len(json.dumps(item, ensure_ascii=False, separators=(",", ":"))) / 4)
        for item in items
    )


def numbered_summaries() -> tuple[ScriptedModel, list[ModelCall]]:
    """A summarizer model answering "Summary 1", "Summary 2"... and the calls it got."""
    calls: list[ModelCall] = []

    def summarize(call: ModelCall) -> Any:
        calls.append(call)
        return [assistant_message(f"Summary {len(calls)}", item_id=f"sum_{len(calls)}")]

    model = ScriptedModel([ModelStep.respond(summarize) for _ in range(500)])
    return model, calls


def answers(count: int, words: int = 30) -> list[ModelStep]:
    """Steps answering "Answer n" padded to about ``words`` words."""
    steps = []
    for n in range(1, count + 1):
        text = f"Answer {n}: " + " ".join(["word"] * words)
        steps.append(ModelStep(output=[assistant_message(text, item_id=f"msg_{n}")]))
    return steps


def summaries_in(history: Sequence[HistoryItem]) -> list[MessageItem]:
    return [item for item in history if isinstance(item, MessageItem) and summary_of(item)]


async def test_200_turns_stay_under_the_budget_with_each_summary_stored_once(
    h: TurnHarness,
) -> None:
    summarizer_model, summarizer_calls = numbered_summaries()
    window = Summarize(BUDGET, summarizer=Agent(name="Summarizer", model=summarizer_model))
    agent_id = h.agent("Helper", *answers(200))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)

    for n in range(1, 201):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()

    calls = h.models[0].calls
    assert len(calls) == 200
    assert max(cost(call.input) for call in calls) <= BUDGET
    history = (await h.stored(session_id)).history
    summaries = summaries_in(history)
    # One stored summary per summarizer call, each stored once, in the order made.
    assert len(summaries) == len(summarizer_calls) >= 10
    assert [item.text for item in summaries] == [
        f"{SUMMARY_PREFIX}Summary {n}" for n in range(1, len(summaries) + 1)
    ]
    assert len({item.id for item in summaries}) == len(summaries)
    # The whole conversation is still stored, in order, and replays without the summaries.
    conversation = [item for item in history if summary_of(item) is None]
    assert [item.text for item in conversation] == [
        text
        for n in range(1, 201)
        for text in (f"Question {n}", f"Answer {n}: " + " ".join(["word"] * 30))
    ]
    assert history_to_input(history) == history_to_input(conversation)


async def test_after_a_fold_the_summary_is_sent_in_place_of_what_it_covers(
    h: TurnHarness,
) -> None:
    summarizer_model, summarizer_calls = numbered_summaries()
    window = Summarize(BUDGET, summarizer=Agent(name="Summarizer", model=summarizer_model))
    agent_id = h.agent("Helper", *answers(40))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)

    for n in range(1, 41):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()

    history = (await h.stored(session_id)).history
    first, second = summaries_in(history)[:2]
    at = history.index(first)
    # The first fold covers every turn before the last two, and the summary is stored in
    # the turn's write, right before that turn's question.
    marker = summary_of(first)
    assert marker is not None
    covered = history[: [item.id for item in history].index(marker["through"]) + 1]
    assert marker["items"] == len(covered)
    assert isinstance(history[at + 1], MessageItem) and history[at + 1].role == "user"
    question = history[at + 1].text
    turn = int(question.split()[-1])
    kept = history_to_input(history[len(covered) : at])
    assert h.models[0].calls[turn - 1].input == [
        {"content": f"{SUMMARY_PREFIX}Summary 1", "role": "system"},
        *kept,
        {"content": question, "role": "user"},
    ]
    assert [item["role"] for item in kept if "role" in item] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    # The summarizer saw the covered turns as a transcript, then later the summary so far.
    assert summarizer_calls[0].input == [
        {
            "content": f"The conversation to fold into the summary:\n{transcript(covered)}",
            "role": "user",
        }
    ]
    assert summarizer_calls[1].input[0]["content"].startswith("The summary so far:\nSummary 1\n\n")
    assert summary_of(second) is not None


async def test_a_fold_never_separates_a_tool_call_from_its_output(h: TurnHarness) -> None:
    summarizer_model, _ = numbered_summaries()
    window = Summarize(BUDGET, summarizer=Agent(name="Summarizer", model=summarizer_model))
    steps: list[Any] = []
    for n in range(1, 31):
        steps.append({"output": [function_call("lookup", {"n": n}, call_id=f"call_{n}")]})
        steps.append({"output": [assistant_message(f"It is result {n} " + "and more " * 20)]})
    agent_id = h.agent("Helper", *steps, tools=[lookup])
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)

    for n in range(1, 31):
        (await h.manager.send_message(session_id, f"Look up {n}")).unwrap()

    history = (await h.stored(session_id)).history
    summaries = summaries_in(history)
    assert len(summaries) >= 3
    ids = [item.id for item in history]
    for summary in summaries:
        marker = summary_of(summary)
        assert marker is not None
        after = history[ids.index(marker["through"]) + 1]
        # A fold ends right before a person's message (or before the summary itself).
        assert after is summary or (isinstance(after, MessageItem) and after.role == "user")
    calls = h.models[0].calls
    # A turn starts within the budget; its tool round then adds its own call and output.
    assert max(cost(call.input) for call in calls[0::2]) <= BUDGET
    for call in calls:
        sent_calls = {item["call_id"] for item in call.input if item.get("type") == "function_call"}
        outputs = {
            item["call_id"] for item in call.input if item.get("type") == "function_call_output"
        }
        assert outputs <= sent_calls
    tools = [
        item for item in history if isinstance(item, FunctionCallItem | FunctionCallResultItem)
    ]
    assert len(tools) == 60


async def test_a_short_conversation_is_sent_whole_and_never_summarized(h: TurnHarness) -> None:
    summarizer_model, summarizer_calls = numbered_summaries()
    window = Summarize(BUDGET, summarizer=Agent(name="Summarizer", model=summarizer_model))
    agent_id = h.agent("Helper", *answers(3, words=3))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)

    for n in range(1, 4):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()

    history = (await h.stored(session_id)).history
    assert summarizer_calls == []
    assert summaries_in(history) == []
    assert h.models[0].calls[-1].input == [
        *history_to_input(history[:-2]),
        {"content": "Question 3", "role": "user"},
    ]


async def test_a_failing_summarizer_fails_the_turn_and_stores_nothing(h: TurnHarness) -> None:
    failing = ScriptedModel([ModelStep.raise_error(RuntimeError("summarizer down"))])
    window = Summarize(100, summarizer=Agent(name="Summarizer", model=failing))
    agent_id = h.agent("Helper", *answers(5))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)
    (await h.manager.send_message(session_id, "Question 1")).unwrap()
    (await h.manager.send_message(session_id, "Question 2")).unwrap()
    before = await h.snapshot(session_id)

    result = await h.manager.send_message(session_id, "Question 3")

    assert result.error is not None
    assert result.error.code is ErrorCode.MODEL_ERROR
    assert "summarizer down" in result.error.message
    assert await h.snapshot(session_id) == before
    assert len(h.models[0].calls) == 2


async def test_the_summarizers_tokens_count_in_the_statistics(h: TurnHarness) -> None:
    summarizer_model = ScriptedModel(
        [
            ModelStep(
                output=[assistant_message("Short")],
                usage=Usage(requests=1, input_tokens=70, output_tokens=5, total_tokens=75),
            )
        ]
    )
    window = Summarize(100, summarizer=Agent(name="Summarizer", model=summarizer_model))
    agent_id = h.agent("Helper", *answers(3))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)
    for n in (1, 2):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()
    before = (await h.stored(session_id)).context

    (await h.manager.send_message(session_id, "Question 3")).unwrap()

    after = await h.stored(session_id)
    [summary] = summaries_in(after.history)
    assert summary.usage is not None and summary.usage.total_tokens == 75
    assert after.context.total_tokens - before.total_tokens == 75
    assert after.context.requests - before.requests == 2
    assert after.context.total_messages - before.total_messages == 2


async def test_a_long_summary_is_cut_to_its_budget(h: TurnHarness) -> None:
    chatty = ScriptedModel([ModelStep(output=[assistant_message("blah " * 2_000)])])
    window = Summarize(400, summarizer=Agent(name="Summarizer", model=chatty), summary_tokens=50)
    agent_id = h.agent("Helper", *answers(6))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)

    for n in range(1, 7):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()

    [summary] = summaries_in((await h.stored(session_id)).history)
    assert summary.text.startswith(SUMMARY_PREFIX + "blah blah")
    assert summary.text.endswith("…")
    assert 45 <= cost([{"content": summary.text, "role": "system"}]) <= 50


async def test_the_default_summarizer_runs_on_the_turns_provider(h: TurnHarness) -> None:
    # The harness's provider is the offline model, which echoes what it is sent.
    agent_id = h.agent("Helper", *answers(6))
    h.manager.set_window(agent_id, Summarize(300))
    session_id = await h.session(agent_id)

    for n in range(1, 7):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()

    [summary, *_] = summaries_in((await h.stored(session_id)).history)
    assert summary.text.startswith(f"{SUMMARY_PREFIX}[offline] You said: The conversation to")
    assert max(cost(call.input) for call in h.models[0].calls) <= 300


async def test_a_summary_is_not_sent_by_other_windows_nor_by_the_sdk_session(
    h: TurnHarness,
) -> None:
    summarizer_model, _ = numbered_summaries()
    window = Summarize(200, summarizer=Agent(name="Summarizer", model=summarizer_model))
    agent_id = h.agent("Helper", *answers(8))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)
    for n in range(1, 7):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()
    history = (await h.stored(session_id)).history
    assert summaries_in(history)
    conversation = [item for item in history if summary_of(item) is None]

    h.manager.set_window(agent_id, None)
    (await h.manager.send_message(session_id, "Question 7")).unwrap()
    items = await ChatruntimeSession(h.manager, session_id).get_items()

    assert h.models[0].calls[-1].input == [
        *history_to_input(conversation),
        {"content": "Question 7", "role": "user"},
    ]
    assert items[: len(conversation)] == history_to_input(conversation)
    assert all(item.get("role") != "system" for item in items)


async def test_a_session_read_cold_sends_what_a_cached_one_sends(h: TurnHarness) -> None:
    summarizer_model, _ = numbered_summaries()
    window = Summarize(BUDGET, summarizer=Agent(name="Summarizer", model=summarizer_model))
    agent_id = h.agent("Helper", *answers(42))
    h.manager.set_window(agent_id, window)
    session_id = await h.session(agent_id)
    for n in range(1, 41):
        (await h.manager.send_message(session_id, f"Question {n}")).unwrap()
    history = (await h.stored(session_id)).history

    (await h.manager.refresh()).unwrap()
    (await h.manager.send_message(session_id, "Question 41")).unwrap()

    expected = window.apply(history, "Question 41")
    assert h.models[0].calls[-1].input == [
        *history_to_input(expected),
        {"content": "Question 41", "role": "user"},
    ]


# -- the policy alone ---------------------------------------------------------------------------


def turn(n: int, words: int = 20) -> list[HistoryItem]:
    return [
        MessageItem(role="user", content=f"Question {n}"),
        MessageItem(role="assistant", content=" ".join(["word"] * words), item_id=f"m{n}"),
    ]


def summary(through: HistoryItem, items: int, text: str = "Earlier") -> MessageItem:
    return MessageItem(
        role="system",
        content=SUMMARY_PREFIX + text,
        provider_data={SUMMARY_KEY: {"through": through.id, "items": items}},
    )


def test_the_tail_suffices_once_it_holds_the_latest_summary_and_its_last_item() -> None:
    window = Summarize(BUDGET)
    old = [item for n in range(1, 5) for item in turn(n)]
    folded = summary(old[5], 6)
    history = [*old, folded, *turn(5)]

    assert window.tail_suffices(history[5:], "next")
    assert not window.tail_suffices(history[6:], "next")
    assert not window.tail_suffices(old, "next")
    assert window.apply(history[5:], "next") == window.apply(history, "next")
    assert window.apply(history, "next") == [
        folded.model_copy(update={"provider_data": None}),
        *old[6:],
        *history[-2:],
    ]


def test_apply_without_a_summary_keeps_what_fits_like_a_token_budget() -> None:
    window = Summarize(60)
    history = [item for n in range(1, 6) for item in turn(n, words=5)]

    kept = window.apply(history, "next")

    assert kept == history[-len(kept) :]
    assert kept[0] == history[len(history) - len(kept)]
    assert isinstance(kept[0], MessageItem) and kept[0].role == "user"
    assert cost(history_to_input(kept)) + cost([{"content": "next", "role": "user"}]) <= 60


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"budget_tokens": 0}, "budget_tokens must be an integer of at least 1, got 0"),
        ({"budget_tokens": 10, "keep_last": -1}, "keep_last must be an integer of at least 0"),
        ({"budget_tokens": 10, "summary_tokens": 0}, "summary_tokens must be an integer"),
        ({"budget_tokens": 10, "chars_per_token": 0}, "chars_per_token must be positive"),
        ({"budget_tokens": 10, "summarizer": "gpt"}, "summarizer must be an agents.Agent"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Summarize(**options)
