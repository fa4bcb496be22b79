"""The session record on the wire: cortex's shape, camelCase, epoch milliseconds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatruntime.models import (
    ChatSession,
    FunctionCallResultItem,
    MessageItem,
    TextOutput,
)
from support.factories import header

CORTEX_LIKE = {
    "id": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
    "agentId": "3f1c2a9e-8b7d-4c1e-9f2a-1d2c3b4a5e6f",
    "name": "Weather",
    "createdAt": 1753776100000,
    "updatedAt": 1753776160000,
    "history": [
        {"type": "message", "role": "system", "content": "Be brief.", "timestamp": 5},
        {
            "type": "function_call_result",
            "name": "get_weather",
            "callId": "call_abc123",
            "status": "completed",
            "output": {"type": "text", "text": "18°C"},
        },
    ],
    "context": {"totalTokens": 0, "totalMessages": 1, "totalFunctionCalls": 1, "lastActivity": 7},
    "status": "active",
}


def test_header_dumps_camel_case_keys_and_leaves_out_none() -> None:
    wire = header(user_id=None).to_wire()
    assert sorted(wire) == [
        "agentId",
        "context",
        "createdAt",
        "id",
        "metadata",
        "name",
        "revision",
        "schemaVersion",
        "state",
        "status",
        "turnKeys",
        "updatedAt",
    ]
    assert sorted(wire["context"]) == [
        "inputTokens",
        "lastActivity",
        "outputTokens",
        "requests",
        "totalFunctionCalls",
        "totalHandoffs",
        "totalMessages",
        "totalTokens",
        "totalTurns",
    ]


def test_items_without_id_or_timestamp_get_deterministic_ones() -> None:
    first = ChatSession.model_validate(CORTEX_LIKE)
    second = ChatSession.model_validate(CORTEX_LIKE)
    assert [i.id for i in first.history] == [i.id for i in second.history]
    assert len({i.id for i in first.history}) == 2
    # A missing timestamp takes the one of the item before it.
    assert [i.timestamp for i in first.history] == [5, 5]
    result = first.history[1]
    assert isinstance(result, FunctionCallResultItem)
    assert result.output == TextOutput(text="18°C")
    assert result.output_text == "18°C"


def test_cortex_files_have_schema_version_zero_and_revision_zero() -> None:
    session = ChatSession.model_validate(CORTEX_LIKE)
    assert (session.schema_version, session.revision, session.user_id) == (0, 0, None)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"status": "archived"}, "status"),
        ({"extra": 1}, "extra"),
        ({"id": "../../etc/passwd"}, "id"),
    ],
)
def test_invalid_records_are_rejected(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ChatSession.model_validate({**CORTEX_LIKE, **change})
    assert [".".join(map(str, e["loc"])) for e in caught.value.errors()] == [problem]


def test_message_text_joins_content_parts() -> None:
    item = MessageItem(
        role="assistant",
        content=[
            {"type": "output_text", "text": "It is "},
            {"type": "output_text", "text": "18°C"},
        ],
    )
    assert item.text == "It is 18°C"
