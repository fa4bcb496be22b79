"""Error codes and the exception tree.

Every expected failure has one stable :class:`ErrorCode` and one exception class; the public API
returns them as ``Result`` errors, and :meth:`Result.unwrap` raises the matching exception::

    ChatRuntimeError                 INTERNAL_ERROR
    ├── InvalidInputError            VALIDATION_ERROR
    ├── SessionNotFoundError         SESSION_NOT_FOUND
    ├── AgentNotFoundError           AGENT_NOT_FOUND
    ├── SessionNotActiveError        SESSION_NOT_ACTIVE
    ├── SessionExpiredError          SESSION_EXPIRED
    ├── CheckpointNotFoundError      CHECKPOINT_NOT_FOUND
    ├── StateNotFoundError           STATE_NOT_FOUND
    ├── LimitExceededError           LIMIT_EXCEEDED
    ├── ConflictError                CONFLICT
    ├── BusyError                    BUSY
    ├── TurnError
    │   ├── ModelError               MODEL_ERROR
    │   ├── ToolError                TOOL_ERROR
    │   ├── MaxTurnsExceededError    MAX_TURNS_EXCEEDED
    │   ├── GuardrailTrippedError    GUARDRAIL_TRIPPED
    │   ├── TurnTimeoutError         TIMEOUT
    │   └── TurnCancelledError       CANCELLED
    └── StorageError                 STORAGE_ERROR
        ├── CorruptDataError         CORRUPT_DATA
        ├── StoreVersionError        UNSUPPORTED_VERSION
        └── OutcomeUnknownError      OUTCOME_UNKNOWN

    UsageError (a RuntimeError)      raised, never returned: the caller misused the API
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorCode(StrEnum):
    """Stable, machine-readable reason of a failed call."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    SESSION_NOT_ACTIVE = "SESSION_NOT_ACTIVE"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    CHECKPOINT_NOT_FOUND = "CHECKPOINT_NOT_FOUND"
    STATE_NOT_FOUND = "STATE_NOT_FOUND"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    CONFLICT = "CONFLICT"
    BUSY = "BUSY"
    MODEL_ERROR = "MODEL_ERROR"
    TOOL_ERROR = "TOOL_ERROR"
    MAX_TURNS_EXCEEDED = "MAX_TURNS_EXCEEDED"
    GUARDRAIL_TRIPPED = "GUARDRAIL_TRIPPED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    STORAGE_ERROR = "STORAGE_ERROR"
    CORRUPT_DATA = "CORRUPT_DATA"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ChatRuntimeError(Exception):
    """Root of every error chatruntime raises on purpose.

    Attributes:
        message: What went wrong and what the caller can do about it.
        details: Structured context (ids, paths, limits) for logs and API answers.
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details


class InvalidInputError(ChatRuntimeError):
    """An argument is malformed or out of range."""

    code = ErrorCode.VALIDATION_ERROR


class SessionNotFoundError(ChatRuntimeError):
    """No session has this id."""

    code = ErrorCode.SESSION_NOT_FOUND


class AgentNotFoundError(ChatRuntimeError):
    """No agent has this id."""

    code = ErrorCode.AGENT_NOT_FOUND


class SessionNotActiveError(ChatRuntimeError):
    """The session is paused or completed and takes no new messages."""

    code = ErrorCode.SESSION_NOT_ACTIVE


class SessionExpiredError(ChatRuntimeError):
    """The session saw no activity for longer than the manager's ``ttl``; it answers this on
    every call until ``cleanup_expired_sessions()`` removes it."""

    code = ErrorCode.SESSION_EXPIRED


class CheckpointNotFoundError(ChatRuntimeError):
    """The session has no checkpoint with this id (or no checkpoint at all)."""

    code = ErrorCode.CHECKPOINT_NOT_FOUND


class StateNotFoundError(ChatRuntimeError):
    """``load_session_state(..., allow_not_exist=False)`` on a session without saved state."""

    code = ErrorCode.STATE_NOT_FOUND


class LimitExceededError(ChatRuntimeError):
    """Creating the session would pass ``max_sessions`` or ``max_sessions_per_user``."""

    code = ErrorCode.LIMIT_EXCEEDED


class ConflictError(ChatRuntimeError):
    """The record changed since it was read, or already exists."""

    code = ErrorCode.CONFLICT


class BusyError(ChatRuntimeError):
    """Another caller holds the session for longer than we were willing to wait."""

    code = ErrorCode.BUSY


class TurnError(ChatRuntimeError):
    """A turn failed; nothing of it was stored."""

    code = ErrorCode.MODEL_ERROR


class ModelError(TurnError):
    """The model failed or answered something the SDK could not use."""

    code = ErrorCode.MODEL_ERROR


class ToolError(TurnError):
    """A tool raised and the agent was configured to stop on tool errors."""

    code = ErrorCode.TOOL_ERROR


class MaxTurnsExceededError(TurnError):
    """The agent loop ran out of its allowed model calls."""

    code = ErrorCode.MAX_TURNS_EXCEEDED


class GuardrailTrippedError(TurnError):
    """An input or output guardrail stopped the turn."""

    code = ErrorCode.GUARDRAIL_TRIPPED


class TurnTimeoutError(TurnError):
    """The turn took longer than its timeout."""

    code = ErrorCode.TIMEOUT


class TurnCancelledError(TurnError):
    """The caller went away before the turn finished."""

    code = ErrorCode.CANCELLED


class StorageError(ChatRuntimeError):
    """The store could not read or write."""

    code = ErrorCode.STORAGE_ERROR


class CorruptDataError(StorageError):
    """A stored record is not valid JSON or not valid against the schema."""

    code = ErrorCode.CORRUPT_DATA


class StoreVersionError(StorageError):
    """The store was written by a newer chatruntime than this one."""

    code = ErrorCode.UNSUPPORTED_VERSION


class OutcomeUnknownError(StorageError):
    """The store stopped answering while a write was committing: it may or may not have been
    stored. Retry with the same ``idempotency_key`` to get the stored reply or run it once."""

    code = ErrorCode.OUTCOME_UNKNOWN


class UsageError(RuntimeError):
    """The caller used the API wrongly (e.g. a manager before ``initialize()`` or after
    ``close()``). A programming mistake: raised, never turned into a ``Result``."""


def _collect(cls: type[ChatRuntimeError]) -> list[type[ChatRuntimeError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_collect(sub))
    return found


def _build_code_map() -> dict[ErrorCode, type[ChatRuntimeError]]:
    mapping: dict[ErrorCode, type[ChatRuntimeError]] = {}
    for cls in _collect(ChatRuntimeError):
        if cls is TurnError:
            continue  # abstract grouping; MODEL_ERROR belongs to ModelError
        if "code" in cls.__dict__ or cls is ChatRuntimeError:
            mapping[cls.code] = cls
    return mapping


_EXCEPTION_FOR_CODE = _build_code_map()


def exception_for(code: ErrorCode) -> type[ChatRuntimeError]:
    """Return the exception class that stands for ``code``."""
    return _EXCEPTION_FOR_CODE[code]
