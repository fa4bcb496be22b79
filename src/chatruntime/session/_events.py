"""The typed events :meth:`SessionManager.stream_message` yields while a turn runs.

Every event is a small frozen pydantic model with a ``type`` tag, so a service can forward it
as JSON (``event.model_dump_json()``) and a client can tell the kinds apart.
``STREAM_EVENT_ADAPTER`` reads them back.

A stream is a sequence of :class:`TextDelta`, :class:`ToolCall`, :class:`ToolResult`,
:class:`Handoff` and :class:`AgentChanged` events, ending in exactly one :class:`Done`
(the turn was stored) or one :class:`Error` (nothing was stored).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..models import ErrorInfo, Message


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class TextDelta(_Event):
    """A piece of the assistant's reply text, in the order the model wrote it."""

    type: Literal["text_delta"] = "text_delta"
    text: str


class ToolCall(_Event):
    """The model called a function tool; ``arguments`` is the raw JSON string it wrote."""

    type: Literal["tool_call"] = "tool_call"
    name: str
    arguments: str
    call_id: str


class ToolResult(_Event):
    """A tool returned (or, with ``failed``, raised and the model was told so)."""

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    output: str
    failed: bool = False


class Handoff(_Event):
    """Control passed from one agent to another."""

    type: Literal["handoff"] = "handoff"
    from_agent_id: str
    to_agent_id: str


class AgentChanged(_Event):
    """Another agent now answers (after a handoff)."""

    type: Literal["agent_changed"] = "agent_changed"
    agent_id: str
    name: str


class Done(_Event):
    """The turn finished and is stored; ``message`` is the final assistant reply."""

    type: Literal["done"] = "done"
    message: Message


class Error(_Event):
    """The turn failed and nothing of it was stored."""

    type: Literal["error"] = "error"
    error: ErrorInfo


StreamEvent = Annotated[
    TextDelta | ToolCall | ToolResult | Handoff | AgentChanged | Done | Error,
    Field(discriminator="type"),
]
"""One event of a streamed turn."""

STREAM_EVENT_ADAPTER: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
"""Validates stream events from their JSON form (``STREAM_EVENT_ADAPTER.validate_json(...)``)."""
