"""Sessions: the manager, its per-session locks, turns, stream events and input windows."""

from ._cache import DEFAULT_CACHE_SIZE
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
from ._manager import CheckProgress, CheckReport, SessionManager
from ._user import UserSessions
from ._window import LastItems, TokenBudget, WindowPolicy

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "STREAM_EVENT_ADAPTER",
    "AgentChanged",
    "CheckProgress",
    "CheckReport",
    "Done",
    "Error",
    "Handoff",
    "LastItems",
    "SessionManager",
    "StreamEvent",
    "TextDelta",
    "TokenBudget",
    "ToolCall",
    "ToolResult",
    "UserSessions",
    "WindowPolicy",
]
