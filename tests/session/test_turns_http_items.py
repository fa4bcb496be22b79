"""Images, files and hosted-tool items through the SDK's real OpenAI client and the loopback
server: what reaches the server, what is stored, and what the next turn replays."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import Agent, RunConfig, Runner
from agents.items import TResponseInputItem
from agents.models.interface import ModelProvider

from chatruntime import AgentManager, Done, SessionManager
from chatruntime.agent._providers import ModelConfig, build_model_provider
from chatruntime.models import MessageItem, ProviderItem
from chatruntime.session._replay import history_to_input
from support.openai_server import (
    OpenAIServer,
    code_interpreter_call,
    file_search_call,
    image_generation_call,
    mcp_call,
    mcp_list_tools,
    message,
    usage,
    web_search_call,
)
from support.stores import open_store_for_test
from support.turns import STORE_KINDS, TurnHarness

pytestmark = pytest.mark.anyio

Content = str | list[dict[str, Any]]

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
PDF = base64.b64encode(b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n").decode()

IMAGE_CONTENT: list[dict[str, Any]] = [
    {"type": "input_text", "text": "What is in these pictures?"},
    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
]

FILE_CONTENT: list[dict[str, Any]] = [
    {"type": "input_text", "text": "Summarize these files."},
    {"type": "input_file", "file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"},
    {"type": "input_file", "file_id": "file-abc123"},
]


@pytest.fixture
async def provider(openai_server: OpenAIServer) -> AsyncIterator[ModelProvider]:
    config = ModelConfig(base_url=openai_server.base_url, default_model="test-model", max_retries=0)
    built = build_model_provider(config)
    try:
        yield built
    finally:
        await built.aclose()


@pytest.fixture(params=STORE_KINDS)
async def h(
    request: pytest.FixtureRequest, tmp_path: Path, provider: ModelProvider
) -> AsyncIterator[TurnHarness]:
    async with open_store_for_test(str(request.param), tmp_path, request) as store:
        agents = AgentManager(store, model_provider=provider)
        manager = SessionManager(store, agents, run_config=RunConfig(tracing_disabled=True))
        (await manager.initialize()).unwrap()
        try:
            yield TurnHarness(str(request.param), tmp_path, store, agents, manager)
        finally:
            await manager.close()


def helper() -> Agent[Any]:
    return Agent(name="Helper", instructions="Be brief.")


async def helper_session(h: TurnHarness) -> str:
    return await h.session(h.agents.register(helper()))


async def sdk_run(
    openai_server: OpenAIServer, provider: ModelProvider, contents: list[Content]
) -> tuple[list[dict[str, Any]], list[TResponseInputItem]]:
    """The requests the SDK itself makes when each turn continues ``to_input_list()``, and
    its last ``to_input_list()``."""
    first = len(openai_server.requests)
    config = RunConfig(model_provider=provider, tracing_disabled=True)
    history: list[TResponseInputItem] = []
    for content in contents:
        given: list[TResponseInputItem] = [*history, {"content": content, "role": "user"}]  # type: ignore[list-item, typeddict-item]
        result = await Runner.run(helper(), given, run_config=config)
        history = result.to_input_list()
    return openai_server.requests[first:], history


def reply_item(text: str, item_id: str) -> dict[str, Any]:
    """The assistant message as the SDK sends it back."""
    return {
        "id": item_id,
        "content": [{"annotations": [], "logprobs": [], "text": text, "type": "output_text"}],
        "role": "assistant",
        "status": "completed",
        "type": "message",
    }


# -- images and files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [pytest.param(IMAGE_CONTENT, id="image"), pytest.param(FILE_CONTENT, id="file")]
)
async def test_a_rich_turn_reaches_the_server_and_is_replayed_exactly(
    h: TurnHarness,
    openai_server: OpenAIServer,
    provider: ModelProvider,
    content: list[dict[str, Any]],
) -> None:
    session_id = await helper_session(h)

    def script() -> None:
        openai_server.reply(message("Two cats, one PDF", id="msg_1"), usage=usage(900, 5))
        openai_server.reply(message("Yes", id="msg_2"), usage=usage(910, 1))

    script()
    (await h.manager.send_message(session_id, content)).unwrap()
    (await h.manager.send_message(session_id, "Are you sure?")).unwrap()
    ours = openai_server.requests[:2]
    script()
    theirs, _ = await sdk_run(openai_server, provider, [content, "Are you sure?"])

    assert ours[0]["input"] == [{"content": content, "role": "user"}]
    assert ours[1]["input"] == [
        {"content": content, "role": "user"},
        reply_item("Two cats, one PDF", "msg_1"),
        {"content": "Are you sure?", "role": "user"},
    ]
    assert [request["input"] for request in ours] == [request["input"] for request in theirs]
    stored = await h.stored(session_id)
    assert stored.history[0] == MessageItem(
        id=stored.history[0].id,
        timestamp=stored.history[0].timestamp,
        role="user",
        content=content,
    )


async def test_a_part_the_api_would_refuse_is_answered_400_by_the_server(
    openai_server: OpenAIServer, provider: ModelProvider
) -> None:
    # The loopback server checks parts as the API does, so the tests above would catch a
    # part sent in a shape the API refuses.
    openai_server.reply(message("Never sent", id="msg_1"))
    bad = [{"type": "input_file", "file_data": PDF}]  # no data: URL, no filename
    config = RunConfig(model_provider=provider, tracing_disabled=True)

    with pytest.raises(openai.BadRequestError, match="input_file needs file_data"):
        await Runner.run(helper(), [{"content": bad, "role": "user"}], run_config=config)  # type: ignore[list-item, typeddict-item]

    assert openai_server.pending == 1


# -- hosted tools ---------------------------------------------------------------------------------

HOSTED_ITEMS = [
    web_search_call("weather in paris", id="ws_1"),
    file_search_call(
        "paris trip",
        results=[{"file_id": "file-1", "filename": "trip.md", "score": 0.9, "text": "Paris"}],
        id="fs_1",
    ),
    code_interpreter_call("print(21 * 2)", logs="42\n", id="ci_1"),
    image_generation_call(PNG, id="ig_1"),
    mcp_list_tools("docs", "search", "fetch", id="mcpl_1"),
    mcp_call("docs", "search", {"q": "paris"}, "3 pages", id="mcp_1"),
]


def script_hosted_turns(openai_server: OpenAIServer) -> None:
    openai_server.reply(*HOSTED_ITEMS, message("All done", id="msg_1"), usage=usage(30, 9))
    openai_server.reply(message("You are welcome", id="msg_2"), usage=usage(60, 3))


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
async def test_hosted_tool_items_are_stored_and_replayed_as_the_sdk_chains_them(
    h: TurnHarness, openai_server: OpenAIServer, provider: ModelProvider, streamed: bool
) -> None:
    session_id = await helper_session(h)
    script_hosted_turns(openai_server)

    if streamed:
        for text in ("Search everything", "Thanks"):
            events = [event async for event in h.manager.stream_message(session_id, text)]
            assert isinstance(events[-1], Done)
    else:
        (await h.manager.send_message(session_id, "Search everything")).unwrap()
        (await h.manager.send_message(session_id, "Thanks")).unwrap()
    ours = openai_server.requests[:2]
    script_hosted_turns(openai_server)
    theirs, chained = await sdk_run(openai_server, provider, ["Search everything", "Thanks"])

    assert ours[1]["input"] == theirs[1]["input"]
    assert ours[1]["input"][1:7] == HOSTED_ITEMS
    stored = await h.stored(session_id)
    assert [
        item.kind if isinstance(item, ProviderItem) else type(item).__name__
        for item in stored.history
    ] == [
        "MessageItem",
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "image_generation_call",
        "mcp_list_tools",
        "mcp_call",
        "MessageItem",
        "MessageItem",
        "MessageItem",
    ]
    assert history_to_input(stored.history) == chained
    # Five of the items are calls (a listing is not), counted with the function calls.
    assert (stored.context.total_function_calls, stored.context.total_messages) == (5, 4)
