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
    ConflictError,
    CorruptDataError,
    ErrorCode,
    ErrorInfo,
    FunctionCallItem,
    FunctionCallResultItem,
    GuardrailTrippedError,
    HandoffItem,
    HistoryItem,
    InvalidInputError,
    MaxTurnsExceededError,
    Message,
    MessageItem,
    ModelError,
    ModelSettingsSpec,
    ReasoningItem,
    Result,
    SessionContext,
    SessionHeader,
    SessionNotActiveError,
    SessionNotFoundError,
    StorageError,
    StoreVersionError,
    ToolError,
    TurnCancelledError,
    TurnError,
    TurnTimeoutError,
)
from .session import InitializeReport, SessionManager
from .stores import CorruptRecord, LoadReport, MemoryStore, SessionStore

__all__ = [
    "AgentManager",
    "AgentNotFoundError",
    "AgentSpec",
    "BusyError",
    "ChatRuntimeError",
    "ChatSession",
    "ConflictError",
    "CorruptDataError",
    "CorruptRecord",
    "ErrorCode",
    "ErrorInfo",
    "FunctionCallItem",
    "FunctionCallResultItem",
    "GuardrailTrippedError",
    "HandoffItem",
    "HistoryItem",
    "InitializeReport",
    "InvalidInputError",
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
    "ReasoningItem",
    "Result",
    "SessionContext",
    "SessionHeader",
    "SessionManager",
    "SessionNotActiveError",
    "SessionNotFoundError",
    "SessionStore",
    "StorageError",
    "StoreVersionError",
    "ToolError",
    "ToolRegistry",
    "TurnCancelledError",
    "TurnError",
    "TurnTimeoutError",
    "build_model_provider",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("chatruntime."):
        try:
            _obj.__module__ = "chatruntime"
        except (AttributeError, TypeError):
            pass
del _name, _obj
