"""The SDK's real OpenAI models, built by ``build_model_provider``, against the loopback server."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.interface import ModelProvider

from chatruntime.agent._providers import ModelApi, ModelConfig, build_model_provider
from support.openai_server import (
    OpenAIServer,
    function_call,
    message,
    reasoning,
    usage,
)

pytestmark = pytest.mark.anyio

ProviderFactory = Callable[..., AbstractAsyncContextManager[RunConfig]]


@function_tool
def get_weather(city: str) -> str:
    """Tell the weather in a city."""
    return f"Sunny in {city}"


AGENT = Agent(name="Helper", instructions="Be brief.", tools=[get_weather])


@pytest.fixture
def run_config(openai_server: OpenAIServer) -> ProviderFactory:
    """Opens a RunConfig whose provider talks to the server, and closes the provider after."""

    @asynccontextmanager
    async def open_run_config(
        api: ModelApi = "responses", **options: Any
    ) -> AsyncIterator[RunConfig]:
        config = ModelConfig(
            base_url=openai_server.base_url,
            default_model="test-model",
            api=api,
            max_retries=0,
            **options,
        )
        provider: ModelProvider = build_model_provider(config)
        try:
            yield RunConfig(model_provider=provider, tracing_disabled=config.tracing_disabled)
        finally:
            await provider.aclose()

    return open_run_config


async def test_plain_reply_and_the_exact_request(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(message("Hi there!"), usage=usage(12, 3))

    async with run_config() as config:
        result = await Runner.run(AGENT, "Hello", run_config=config)

    assert result.final_output == "Hi there!"
    (request,) = openai_server.recorded
    assert request.path == "/v1/responses"
    assert request.headers["authorization"] == "Bearer not-needed"
    assert request.body["model"] == "test-model"
    assert request.body["instructions"] == "Be brief."
    assert request.body["input"] == [{"role": "user", "content": "Hello"}]
    assert [tool["name"] for tool in request.body["tools"]] == ["get_weather"]


async def test_usage_is_what_the_server_reported(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(message("Hi there!"), usage=usage(12, 3))

    async with run_config() as config:
        result = await Runner.run(AGENT, "Hello", run_config=config)

    run_usage = result.context_wrapper.usage
    assert (
        run_usage.requests,
        run_usage.input_tokens,
        run_usage.output_tokens,
        run_usage.total_tokens,
    ) == (1, 12, 3, 15)


async def test_function_call_round_trip_sends_the_call_and_its_output(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(
        reasoning("The user wants weather.", id="rs_1"),
        function_call("get_weather", {"city": "Paris"}, call_id="call_1"),
        usage=usage(20, 8),
    )
    openai_server.reply(message("It is sunny in Paris."), usage=usage(40, 6))

    async with run_config() as config:
        result = await Runner.run(AGENT, "Weather in Paris?", run_config=config)

    assert result.final_output == "It is sunny in Paris."
    assert openai_server.requests[1]["input"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "The user wants weather."}],
        },
        {
            "type": "function_call",
            "id": "fc_call_1",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny in Paris"},
    ]
    run_usage = result.context_wrapper.usage
    assert (run_usage.requests, run_usage.input_tokens, run_usage.output_tokens) == (2, 60, 14)


async def test_streamed_reply_arrives_as_text_deltas(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(message("Hello there, friend."), usage=usage(9, 4))

    async with run_config() as config:
        result = Runner.run_streamed(AGENT, "Hi", run_config=config)
        deltas = [
            event.data.delta
            async for event in result.stream_events()
            if event.type == "raw_response_event"
            and event.data.type == "response.output_text.delta"
        ]

    assert deltas == ["Hello", " there,", " friend."]
    assert result.final_output == "Hello there, friend."
    assert openai_server.requests[0]["stream"] is True
    run_usage = result.context_wrapper.usage
    assert (run_usage.requests, run_usage.input_tokens, run_usage.output_tokens) == (1, 9, 4)


async def test_streamed_function_call_and_reasoning_round_trip(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(
        reasoning("Look it up.", id="rs_1"),
        function_call("get_weather", {"city": "Oslo"}, call_id="call_7"),
        usage=usage(20, 8),
    )
    openai_server.reply(message("Sunny."), usage=usage(30, 1))

    async with run_config() as config:
        result = Runner.run_streamed(AGENT, "Weather in Oslo?", run_config=config)
        item_events = [
            event.name
            async for event in result.stream_events()
            if event.type == "run_item_stream_event"
        ]

    assert item_events == [
        "reasoning_item_created",
        "tool_called",
        "tool_output",
        "message_output_created",
    ]
    second_input = openai_server.requests[1]["input"]
    assert [item.get("type") for item in second_input] == [
        None,
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert second_input[3] == {
        "type": "function_call_output",
        "call_id": "call_7",
        "output": "Sunny in Oslo",
    }
    assert result.context_wrapper.usage.total_tokens == 59


async def test_http_500_surfaces_as_an_exception_after_one_request(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.fail(500, "The model crashed.")

    async with run_config() as config:
        with pytest.raises(openai.InternalServerError) as caught:
            await Runner.run(AGENT, "Hello", run_config=config)

    assert caught.value.status_code == 500
    assert caught.value.message == "Error code: 500 - The model crashed."
    assert len(openai_server.requests) == 1


async def test_http_400_surfaces_as_a_bad_request(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.fail(400, "Unknown model.", type="invalid_request_error", code="model_not_found")

    async with run_config() as config:
        with pytest.raises(openai.BadRequestError) as caught:
            await Runner.run(AGENT, "Hello", run_config=config)

    assert caught.value.status_code == 400
    assert caught.value.code == "model_not_found"


async def test_unscripted_request_gets_a_500_that_says_so(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    async with run_config() as config:
        with pytest.raises(openai.InternalServerError) as caught:
            await Runner.run(AGENT, "Hello", run_config=config)

    assert caught.value.message == (
        "Error code: 500 - no scripted reply left for POST /v1/responses (request #1)"
    )


async def test_a_slow_reply_times_out_on_the_client(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(message("Too late."), delay=30)

    started = time.monotonic()
    async with run_config(timeout=0.2) as config:
        with pytest.raises(openai.APITimeoutError):
            await Runner.run(AGENT, "Hello", run_config=config)

    assert time.monotonic() - started < 5


async def test_chat_completions_plain_reply(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(message("Hi from chat."), usage=usage(11, 3))

    async with run_config(api="chat_completions") as config:
        result = await Runner.run(AGENT, "Hello", run_config=config)

    assert result.final_output == "Hi from chat."
    (request,) = openai_server.recorded
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    run_usage = result.context_wrapper.usage
    assert (run_usage.requests, run_usage.input_tokens, run_usage.output_tokens) == (1, 11, 3)


async def test_chat_completions_streamed_tool_call_round_trip(
    openai_server: OpenAIServer, run_config: ProviderFactory
) -> None:
    openai_server.reply(function_call("get_weather", {"city": "Rome"}, call_id="call_3"))
    openai_server.reply(message("Sunny in Rome."), usage=usage(25, 4))

    async with run_config(api="chat_completions") as config:
        result = Runner.run_streamed(AGENT, "Weather in Rome?", run_config=config)
        async for _ in result.stream_events():
            pass

    assert result.final_output == "Sunny in Rome."
    assert openai_server.requests[1]["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_3",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "Sunny in Rome"},
    ]


def test_stopping_releases_the_port_and_a_pending_delay() -> None:
    server = OpenAIServer().start()
    port = int(server.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    server.reply(message("never sent"), delay=30)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        deadline = time.monotonic() + 5
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()

    assert time.monotonic() - started < 5
    assert len(server.requests) == 1
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
