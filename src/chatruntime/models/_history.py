"""History items: a discriminated union on ``type``, in the TypeScript original's wire shape.

Items written by cortex load unchanged; items lacking an ``id`` or ``timestamp`` (cortex's
function results) get them on load. Each item keeps what the Agents SDK needs to replay it
exactly: provider item ids (``itemId``), call ids, raw argument strings, content parts, reasoning
summaries and encrypted content.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter

from ._common import WireModel, new_id, now_ms

MessageRole = Literal["user", "assistant", "system", "developer"]
ItemStatus = Literal["in_progress", "completed", "incomplete", "failed"]


class ItemUsage(WireModel):
    """Tokens the model reported for the requests that produced one assistant message."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class _Item(WireModel):
    id: str = Field(default_factory=new_id, min_length=1)
    timestamp: int = Field(default_factory=now_ms)
    agent_id: str | None = None
    """The agent that produced the item (``None`` for user input and cortex items)."""
    provider_data: dict[str, Any] | None = None


class MessageItem(_Item):
    """A user, assistant, system or developer message.

    ``content`` is a plain string or the SDK's list of content parts (``input_text``,
    ``output_text`` with annotations, ``refusal``...), kept as given so replay is exact.
    """

    type: Literal["message"] = "message"
    role: MessageRole
    content: str | list[dict[str, Any]]
    status: ItemStatus | None = None
    item_id: str | None = None
    """The provider's id of the output item (``msg_...``), sent back on replay."""
    usage: ItemUsage | None = None
    output: Any = None
    """An agent with an ``output_type`` answered this structured value (as JSON); the text
    is its JSON too."""

    @property
    def text(self) -> str:
        """The message's text, its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text") or part.get("refusal") or "")
            for part in self.content
            if isinstance(part, dict)
        )


class FunctionCallItem(_Item):
    """The model asked to call a tool."""

    type: Literal["function_call"] = "function_call"
    name: str
    arguments: str = ""
    call_id: str
    status: ItemStatus | None = None
    item_id: str | None = None


class TextOutput(WireModel):
    type: Literal["text"] = "text"
    text: str


class ErrorOutput(WireModel):
    type: Literal["error"] = "error"
    error: str


FunctionOutput = Annotated[TextOutput | ErrorOutput, Field(discriminator="type")]


class FunctionCallResultItem(_Item):
    """What a tool returned (or the error it raised) for one ``call_id``.

    ``output`` is the SDK's output (a string, or a list of content parts) or cortex's
    ``{"type": "text", ...}`` / ``{"type": "error", ...}`` object.
    """

    type: Literal["function_call_result"] = "function_call_result"
    name: str | None = None
    call_id: str
    status: ItemStatus | None = None
    output: str | FunctionOutput | list[dict[str, Any]]

    @property
    def output_text(self) -> str:
        """The output as the text the model sees."""
        if isinstance(self.output, str):
            return self.output
        if isinstance(self.output, TextOutput):
            return self.output.text
        if isinstance(self.output, ErrorOutput):
            return self.output.error
        return "".join(str(part.get("text", "")) for part in self.output)


class HandoffItem(_Item):
    """Control passed from one agent to another.

    The SDK's handoff is a tool call plus its output; both halves are kept here (``callId``,
    ``name``, ``arguments``, ``output``) so a replay never sends one without the other.
    Items without a ``callId`` (cortex's) are history only and are not replayed.
    """

    type: Literal["handoff"] = "handoff"
    from_agent_id: str
    to_agent_id: str
    reason: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    item_id: str | None = None
    status: ItemStatus | None = None
    """The status the provider gave the handoff's tool call, sent back on replay."""


class ReasoningItem(_Item):
    """The model's reasoning: summary parts, optional raw content, optional encrypted content."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["reasoning"] = "reasoning"
    item_id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


class ProviderItem(_Item):
    """An item a run produced that has no dedicated type here, kept exactly as the SDK
    would send it back: hosted tools (web search, file search, code interpreter, computer
    use, image generation), MCP listings, calls and approvals, shell and custom tool calls,
    and whatever later SDKs add. Nothing a run made is dropped, and replay sends it as is.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["provider_item"] = "provider_item"
    item: dict[str, Any]
    """The raw input item, with its own ``type`` (``web_search_call``, ``mcp_call``...)."""

    @property
    def kind(self) -> str:
        """The raw item's own type, e.g. ``web_search_call``."""
        return str(self.item.get("type", ""))

    @property
    def is_call(self) -> bool:
        """Whether it is a tool call of some kind (counted with the function calls)."""
        return self.kind.endswith("_call")


HistoryItem = Annotated[
    MessageItem
    | FunctionCallItem
    | FunctionCallResultItem
    | HandoffItem
    | ReasoningItem
    | ProviderItem,
    Field(discriminator="type"),
]
"""One entry of a session's history."""

HISTORY_ADAPTER: TypeAdapter[list[HistoryItem]] = TypeAdapter(list[HistoryItem])
"""Validates and dumps lists of history items (``HISTORY_ADAPTER.validate_python(...)``)."""

HISTORY_ITEM_ADAPTER: TypeAdapter[HistoryItem] = TypeAdapter(HistoryItem)
"""Validates and dumps one history item; stores use it to find which item of a list failed."""
