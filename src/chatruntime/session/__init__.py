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
from ._lifetime import Clock
from ._manager import CheckProgress, CheckReport, SessionManager
from ._sdk_session import ChatruntimeSession
from ._summarize import Summarize
from ._turn_ops import COMMIT_GRACE
from ._user import UserSessions
from ._window import LastItems, TokenBudget, WindowPolicy

__all__ = [
    "COMMIT_GRACE",
    "DEFAULT_CACHE_SIZE",
    "STREAM_EVENT_ADAPTER",
    "AgentChanged",
    "ChatruntimeSession",
    "CheckProgress",
    "CheckReport",
    "Clock",
    "Done",
    "Error",
    "Handoff",
    "LastItems",
    "SessionManager",
    "StreamEvent",
    "Summarize",
    "TextDelta",
    "TokenBudget",
    "ToolCall",
    "ToolResult",
    "UserSessions",
    "WindowPolicy",
]
