"""Small builders of valid records, so each test states only what it is about."""

from __future__ import annotations

from typing import Any

from chatruntime.models import (
    AgentSpec,
    FunctionCallItem,
    FunctionCallResultItem,
    HistoryItem,
    MessageItem,
    SessionContext,
    SessionHeader,
    new_id,
)

T0 = 1_753_776_000_000


def agent_spec(**overrides: Any) -> AgentSpec:
    values: dict[str, Any] = {"id": new_id(), "name": "Helper", "instructions": "Be brief."}
    values.update(overrides)
    return AgentSpec(**values)


def header(**overrides: Any) -> SessionHeader:
    values: dict[str, Any] = {
        "id": new_id(),
        "agent_id": new_id(),
        "name": "First chat",
        "created_at": T0,
        "updated_at": T0,
        "context": SessionContext(last_activity=T0),
        "schema_version": 1,
    }
    values.update(overrides)
    return SessionHeader(**values)


def turn_items(n: int, *, t: int = T0) -> list[HistoryItem]:
    """A user message, a tool call with its result, and an assistant reply, numbered ``n``."""
    call_id = f"call_{n}"
    return [
        MessageItem(role="user", content=f"question {n}", timestamp=t),
        FunctionCallItem(name="lookup", arguments=f'{{"n": {n}}}', call_id=call_id, timestamp=t),
        FunctionCallResultItem(name="lookup", call_id=call_id, output=f"result {n}", timestamp=t),
        MessageItem(
            role="assistant",
            content=[{"type": "output_text", "text": f"answer {n}", "annotations": []}],
            item_id=f"msg_{n}",
            status="completed",
            timestamp=t,
        ),
    ]


def bumped(h: SessionHeader, **changes: Any) -> SessionHeader:
    """The header of the next revision, with ``changes`` applied."""
    return h.model_copy(update={"revision": h.revision + 1, **changes})
