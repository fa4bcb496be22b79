"""A turn's content may be a list of input parts (text, images, files): checked with clear
errors, stored as given, and replayed exactly as the SDK sends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from agents.testing import ScriptedModel, assistant_message

from chatruntime import ErrorCode
from chatruntime.models import MessageItem
from chatruntime.session._input import CONTENT_MAX_BYTES
from chatruntime.session._replay import history_to_input
from support.turns import STORE_KINDS, TurnHarness, open_turn_harness, sdk_chained_inputs

pytestmark = pytest.mark.anyio

PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
IMAGE_TURN: list[dict[str, Any]] = [
    {"type": "input_text", "text": "What is in this picture?"},
    {"type": "input_image", "image_url": PIXEL, "detail": "low"},
]
FILE_TURN: list[dict[str, Any]] = [
    {
        "type": "input_file",
        "file_data": "data:application/pdf;base64,JVBERi0xLjQ=",
        "filename": "a.pdf",
    },
    {"type": "input_text", "text": "Summarise it."},
]


@pytest.fixture(params=STORE_KINDS)
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnHarness]:
    async with open_turn_harness(str(request.param), tmp_path, request) as harness:
        yield harness


async def test_image_and_file_turns_are_stored_and_replayed_as_the_sdk_sends_them(
    h: TurnHarness,
) -> None:
    steps: list[Any] = [
        [assistant_message("A pixel", item_id="m1")],
        [assistant_message("A tiny PDF", item_id="m2")],
        [assistant_message("Bye", item_id="m3")],
    ]
    session_id = await h.session(h.agent("Helper", *steps))
    for content in (IMAGE_TURN, FILE_TURN, "Thanks"):
        (await h.manager.send_message(session_id, content)).unwrap()

    reference = Agent(name="Helper", model=ScriptedModel(steps))
    sdk_history, sdk_starts = await sdk_chained_inputs(reference, [IMAGE_TURN, FILE_TURN, "Thanks"])  # type: ignore[list-item]
    assert [call.input for call in h.models[0].calls] == sdk_starts
    stored = await h.stored(session_id)
    assert history_to_input(stored.history) == sdk_history
    first = stored.history[0]
    assert isinstance(first, MessageItem)
    assert (first.content, first.text) == (IMAGE_TURN, "What is in this picture?")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([], "content must not be an empty list"),
        (42, "content must be a string or a list of input parts, got int"),
        ([{"type": "input_audio", "data": "x"}], "content[0] has type 'input_audio'"),
        ([{"type": "input_text"}], "content[0] (input_text) needs 'text'"),
        ([{"type": "input_text", "text": "  "}], "content must not be empty or only whitespace"),
        (
            [{"type": "input_text", "text": "hi", "extra": "1"}],
            "content[0] (input_text) has unknown keys: extra",
        ),
        (
            [{"type": "input_image"}],
            "content[0] (input_image) needs exactly one of image_url or file_id",
        ),
        ([{"type": "input_image", "image_url": "ftp://x/y.png"}], "content[0].image_url must be"),
        (
            [{"type": "input_image", "file_id": "f", "detail": "max"}],
            "content[0].detail must be low, high or auto",
        ),
        (
            [{"type": "input_file", "file_data": "abc"}],
            "content[0] (input_file) with file_data needs a filename",
        ),
        ([{"type": "input_text", "text": 5}], "content[0].text must be a string, got int"),
        ([{"type": "input_text", "text": "\ud800"}], "content[0].text holds a lone surrogate"),
        (
            [
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64," + "A" * CONTENT_MAX_BYTES,
                }
            ],
            "content is 20,971,584 bytes as JSON; the limit is 20,971,520",
        ),
    ],
)
async def test_bad_content_is_refused_with_what_is_wrong_and_stores_nothing(
    h: TurnHarness, content: Any, message: str
) -> None:
    session_id = await h.session(h.agent("Helper", [assistant_message("x", item_id="m")]))
    before = await h.stored(session_id)
    result = await h.manager.send_message(session_id, content)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.message.startswith(message)
    assert result.error.details["field"] == "content"
    assert await h.stored(session_id) == before
