"""The offline model: deterministic, labelled answers and tool calls through the real runner."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.items import TResponseInputItem
from agents.model_settings import ModelSettings
from agents.models.interface import ModelTracing
from openai.types.responses import ResponseCompletedEvent, ResponseTextDeltaEvent

from chatruntime.agent._offline import OfflineModel, OfflineModelProvider

pytestmark = pytest.mark.anyio

RUN_CONFIG = RunConfig(tracing_disabled=True)


@function_tool
def get_weather(city: str) -> str:
    """Tell the weather in a city."""
    return f"Sunny in {city}"


def input_dicts(items: list[TResponseInputItem]) -> list[dict[str, Any]]:
    return [dict(item) for item in items]


def helper(**kwargs: Any) -> Agent[None]:
    return Agent(name="Helper", instructions="Be brief.", model=OfflineModel(), **kwargs)


async def test_reply_is_labelled_and_echoes_the_last_user_message_with_the_turn() -> None:
    result = await Runner.run(helper(), "Hello there", run_config=RUN_CONFIG)

    assert result.final_output == "[offline] You said: Hello there (turn 1)"


async def test_turn_counts_the_user_messages_of_the_replayed_history() -> None:
    first = await Runner.run(helper(), "Hello", run_config=RUN_CONFIG)
    history: list[TResponseInputItem] = first.to_input_list()
    history.append({"role": "user", "content": "And now?"})

    second = await Runner.run(helper(), history, run_config=RUN_CONFIG)

    assert second.final_output == "[offline] You said: And now? (turn 2)"


async def test_usage_counts_words_of_instructions_input_and_reply() -> None:
    result = await Runner.run(helper(), "Hello there", run_config=RUN_CONFIG)

    usage = result.context_wrapper.usage
    # "Be brief." + "Hello there" in, "[offline] You said: Hello there (turn 1)" out.
    assert (usage.requests, usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        1,
        4,
        7,
        11,
    )


async def test_same_conversation_gives_the_same_reply_and_ids() -> None:
    first = await Runner.run(helper(), "Hello", run_config=RUN_CONFIG)
    second = await Runner.run(helper(), "Hello", run_config=RUN_CONFIG)

    assert first.to_input_list() == second.to_input_list()


async def test_tool_command_calls_the_tool_and_the_reply_uses_its_output() -> None:
    result = await Runner.run(
        helper(tools=[get_weather]), '/tool get_weather {"city": "Paris"}', run_config=RUN_CONFIG
    )

    assert result.final_output == "[offline] get_weather returned: Sunny in Paris"
    call, output, answer = input_dicts(result.to_input_list())[1:]
    assert call["type"] == "function_call"
    assert (call["name"], call["arguments"]) == ("get_weather", '{"city":"Paris"}')
    assert call["call_id"].startswith("call_offline_")
    assert output == {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "Sunny in Paris",
    }
    assert answer["type"] == "message"
    usage = result.context_wrapper.usage
    # Call 1: 2 + 4 words in, "get_weather" + 1 argument word out.
    # Call 2: 2 + 4 + 2 (call) + 3 (output) in, 6 words out.
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 6 + 11, 2 + 6)


async def test_tool_command_without_arguments_sends_an_empty_object() -> None:
    calls: list[str] = []

    @function_tool
    def roll_dice() -> str:
        """Roll a die."""
        calls.append("rolled")
        return "4"

    result = await Runner.run(helper(tools=[roll_dice]), "/tool roll_dice", run_config=RUN_CONFIG)

    assert result.final_output == "[offline] roll_dice returned: 4"
    assert calls == ["rolled"]
    assert input_dicts(result.to_input_list())[1]["arguments"] == "{}"


async def test_unknown_tool_is_answered_in_text_listing_the_tools() -> None:
    result = await Runner.run(helper(tools=[get_weather]), "/tool nope", run_config=RUN_CONFIG)

    assert result.final_output == "[offline] No tool named 'nope'. Available tools: get_weather."


async def test_arguments_that_are_not_a_json_object_are_answered_in_text() -> None:
    agent = helper(tools=[get_weather])

    not_json = await Runner.run(agent, "/tool get_weather {city", run_config=RUN_CONFIG)
    not_object = await Runner.run(agent, '/tool get_weather ["Paris"]', run_config=RUN_CONFIG)

    assert not_json.final_output == (
        "[offline] Tool arguments are not valid JSON: "
        "Expecting property name enclosed in double quotes."
    )
    assert not_object.final_output == "[offline] Tool arguments must be a JSON object."


async def test_tool_command_can_name_a_handoff() -> None:
    billing = Agent(name="Billing", model=OfflineModel())
    front = Agent(name="Front", model=OfflineModel(), handoffs=[billing])

    result = await Runner.run(front, "/tool transfer_to_billing", run_config=RUN_CONFIG)

    assert result.last_agent is billing
    assert [item.type for item in result.new_items] == [
        "handoff_call_item",
        "handoff_output_item",
        "message_output_item",
    ]
    assert result.final_output == (
        '[offline] transfer_to_billing returned: {"assistant": "Billing"}'
    )


async def test_streamed_reply_arrives_word_by_word_as_responses_events() -> None:
    result = Runner.run_streamed(helper(), "Hello there", run_config=RUN_CONFIG)
    event_types: list[str] = []
    deltas: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event":
            event_types.append(event.data.type)
            if isinstance(event.data, ResponseTextDeltaEvent):
                deltas.append(event.data.delta)

    assert deltas == ["[offline] ", "You ", "said: ", "Hello ", "there ", "(turn ", "1)"]
    assert event_types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 7,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert result.final_output == "[offline] You said: Hello there (turn 1)"
    usage = result.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 4, 7)


async def test_streamed_tool_call_runs_the_tool_and_streams_the_answer() -> None:
    result = Runner.run_streamed(
        helper(tools=[get_weather]), '/tool get_weather {"city": "Oslo"}', run_config=RUN_CONFIG
    )
    item_events: list[str] = []
    arguments: list[str] = []
    async for event in result.stream_events():
        if event.type == "run_item_stream_event":
            item_events.append(event.name)
        elif event.type == "raw_response_event" and (
            event.data.type == "response.function_call_arguments.delta"
        ):
            arguments.append(event.data.delta)

    assert arguments == ['{"city":"Oslo"}']
    assert item_events == ["tool_called", "tool_output", "message_output_created"]
    assert result.final_output == "[offline] get_weather returned: Sunny in Oslo"
    assert result.context_wrapper.usage.requests == 2


async def test_streamed_and_plain_responses_carry_the_same_output_and_usage() -> None:
    model = OfflineModel()
    arguments: dict[str, Any] = {
        "system_instructions": "Be brief.",
        "input": "Hello",
        "model_settings": ModelSettings(),
        "tools": [],
        "output_schema": None,
        "handoffs": [],
        "tracing": ModelTracing.DISABLED,
        "previous_response_id": None,
        "conversation_id": None,
        "prompt": None,
    }

    plain = await model.get_response(**arguments)
    events = [event async for event in model.stream_response(**arguments)]

    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.output == plain.output
    assert completed.response.id == plain.response_id
    assert completed.response.model == "offline"
    assert completed.response.usage is not None
    assert (completed.response.usage.input_tokens, completed.response.usage.output_tokens) == (
        plain.usage.input_tokens,
        plain.usage.output_tokens,
    )
    assert [event.sequence_number for event in events] == list(range(len(events)))


async def test_provider_gives_an_offline_model_for_any_name() -> None:
    provider = OfflineModelProvider()
    agent = Agent(name="Helper", model="gpt-4.1")
    config = RunConfig(model_provider=provider, tracing_disabled=True)

    result = await Runner.run(agent, "Hi", run_config=config)

    assert result.final_output == "[offline] You said: Hi (turn 1)"
    named = provider.get_model("gpt-4.1")
    unnamed = provider.get_model(None)
    assert isinstance(named, OfflineModel) and isinstance(unnamed, OfflineModel)
    assert (named.model_name, unnamed.model_name) == ("gpt-4.1", "offline")


def test_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay must be zero or positive"):
        OfflineModel(delay=-1)
