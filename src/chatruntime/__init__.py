"""chatruntime: reliable multi-user chat sessions for LLM agents on the OpenAI Agents SDK.

Example:
    >>> from chatruntime import AgentManager, FileStore, SessionManager
    >>> store = FileStore("./data")
    >>> agents = AgentManager(store)
    >>> async with SessionManager(store, agents) as manager:
    ...     agent = (await agents.create_agent(name="Helper", instructions="Be brief.")).unwrap()
    ...     session = (await manager.create_session(agent.id, "First chat")).unwrap()
    ...     reply = await manager.send_message(session.id, "Hello")
"""

import logging as _logging

from .agent import (
    AgentManager,
    ModelConfig,
    OfflineModel,
    OfflineModelProvider,
    ToolRegistry,
    build_model_provider,
)
from .models import (
    AgentNotFoundError,
    AgentSpec,
    BusyError,
    ChatRuntimeError,
    ChatSession,
    Checkpoint,
    CheckpointNotFoundError,
    ConflictError,
    CorruptDataError,
    Err,
    ErrorCode,
    ErrorInfo,
    FunctionCallItem,
    FunctionCallResultItem,
    GuardrailTrippedError,
    HandoffItem,
    HistoryItem,
    InvalidInputError,
    ItemUsage,
    LimitExceededError,
    MaxTurnsExceededError,
    Message,
    MessageItem,
    ModelError,
    ModelSettingsSpec,
    Ok,
    OutcomeUnknownError,
    ProviderItem,
    ReasoningItem,
    Result,
    SessionContext,
    SessionExpiredError,
    SessionHeader,
    SessionNotActiveError,
    SessionNotFoundError,
    SessionPage,
    StateNotFoundError,
    StorageError,
    StoreVersionError,
    ToolError,
    TurnCancelledError,
    TurnError,
    TurnTimeoutError,
    UsageError,
)
from .session import (
    STREAM_EVENT_ADAPTER,
    AgentChanged,
    ChatruntimeSession,
    CheckReport,
    Done,
    Error,
    Handoff,
    LastItems,
    SessionManager,
    StreamEvent,
    Summarize,
    TextDelta,
    TokenBudget,
    ToolCall,
    ToolResult,
    UserSessions,
    WindowPolicy,
)
from .state import StateModule
from .stores import CorruptRecord, FileStore, LoadReport, MemoryStore, SessionStore, open_store

__all__ = [
    "STREAM_EVENT_ADAPTER",
    "AgentChanged",
    "AgentManager",
    "AgentNotFoundError",
    "AgentSpec",
    "BusyError",
    "ChatRuntimeError",
    "ChatSession",
    "ChatruntimeSession",
    "CheckReport",
    "Checkpoint",
    "CheckpointNotFoundError",
    "ConflictError",
    "CorruptDataError",
    "CorruptRecord",
    "Done",
    "Err",
    "Error",
    "ErrorCode",
    "ErrorInfo",
    "FileStore",
    "FunctionCallItem",
    "FunctionCallResultItem",
    "GuardrailTrippedError",
    "Handoff",
    "HandoffItem",
    "HistoryItem",
    "InvalidInputError",
    "ItemUsage",
    "LastItems",
    "LimitExceededError",
    "LoadReport",
    "MaxTurnsExceededError",
    "MemoryStore",
    "Message",
    "MessageItem",
    "ModelConfig",
    "ModelError",
    "ModelSettingsSpec",
    "OfflineModel",
    "OfflineModelProvider",
    "Ok",
    "OutcomeUnknownError",
    "ProviderItem",
    "ReasoningItem",
    "Result",
    "SessionContext",
    "SessionExpiredError",
    "SessionHeader",
    "SessionManager",
    "SessionNotActiveError",
    "SessionNotFoundError",
    "SessionPage",
    "SessionStore",
    "StateModule",
    "StateNotFoundError",
    "StorageError",
    "StoreVersionError",
    "StreamEvent",
    "Summarize",
    "TextDelta",
    "TokenBudget",
    "ToolCall",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "TurnCancelledError",
    "TurnError",
    "TurnTimeoutError",
    "UsageError",
    "UserSessions",
    "WindowPolicy",
    "build_model_provider",
    "open_store",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("chatruntime."):
        try:
            _obj.__module__ = "chatruntime"
        except (AttributeError, TypeError):
            pass
del _name, _obj

# A library logs and leaves the handling to the application: without this, Python's last-resort
# handler would print chatruntime's warnings to stderr of every program that imports it.
_logging.getLogger("chatruntime").addHandler(_logging.NullHandler())
