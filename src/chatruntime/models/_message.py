"""``Message``: the reply ``send_message`` returns, flattened for callers."""

from __future__ import annotations

from typing import Any

from ._common import WireModel
from ._history import ItemUsage, MessageItem, MessageRole


class Message(WireModel):
    """One message as a caller sees it: text content, who said it, when, and what it cost."""

    id: str
    role: MessageRole
    content: str
    timestamp: int
    agent_id: str | None = None
    usage: ItemUsage | None = None
    output: Any = None
    """For an agent with an ``output_type``: the value it answered, as that type (a pydantic
    model, a dataclass...) when the reply comes from a turn, as JSON when read back."""

    @classmethod
    def from_item(cls, item: MessageItem) -> Message:
        return cls(
            id=item.id,
            role=item.role,
            content=item.text,
            timestamp=item.timestamp,
            agent_id=item.agent_id,
            usage=item.usage,
            output=item.output,
        )
