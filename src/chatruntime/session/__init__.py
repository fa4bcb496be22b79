"""Sessions: the manager, its per-session locks, turns, stream events and input windows."""

from ._events import (
    STREAM_EVENT_ADAPTER,
    AgentChanged,
    Done,
    Error,
    Handoff,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolResult,
)
from ._manager import InitializeReport, SessionManager
from ._window import LastItems, TokenBudget, WindowPolicy

__all__ = [
    "STREAM_EVENT_ADAPTER",
    "AgentChanged",
    "Done",
    "Error",
    "Handoff",
    "InitializeReport",
    "LastItems",
    "SessionManager",
    "StreamEvent",
    "TextDelta",
    "TokenBudget",
    "ToolCall",
    "ToolResult",
    "WindowPolicy",
]
