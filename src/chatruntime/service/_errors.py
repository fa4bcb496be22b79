"""One table from every :class:`ErrorCode` to the HTTP status that answers it.

A failed call answers its ``ErrorInfo`` as the JSON body, with the status of its code; nothing
else decides a status, so a client can rely on either.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from fastapi.responses import JSONResponse

from ..models import ChatRuntimeError, ErrorCode, ErrorInfo, Result

T = TypeVar("T")

HTTP_STATUS: Mapping[ErrorCode, int] = MappingProxyType(
    {
        ErrorCode.VALIDATION_ERROR: 422,
        ErrorCode.SESSION_NOT_FOUND: 404,
        ErrorCode.AGENT_NOT_FOUND: 404,
        # The request is well formed but the session's state refuses it.
        ErrorCode.SESSION_NOT_ACTIVE: 409,
        ErrorCode.CONFLICT: 409,
        # Gone for good once cleaned up; until then the session exists but takes nothing.
        ErrorCode.SESSION_EXPIRED: 410,
        ErrorCode.CHECKPOINT_NOT_FOUND: 404,
        ErrorCode.STATE_NOT_FOUND: 404,
        # A quota: creating more sessions needs some deleted (or expired) first.
        ErrorCode.LIMIT_EXCEEDED: 429,
        # Another process held the session too long: try again later.
        ErrorCode.BUSY: 429,
        # What the model (or a tool it called) did, not what the client sent.
        ErrorCode.MODEL_ERROR: 502,
        ErrorCode.TOOL_ERROR: 502,
        ErrorCode.MAX_TURNS_EXCEEDED: 502,
        # A guardrail refused this content: sending it again gives the same answer.
        ErrorCode.GUARDRAIL_TRIPPED: 422,
        ErrorCode.TIMEOUT: 504,
        # The run was cancelled on the server's side (e.g. shutting down): try again.
        ErrorCode.CANCELLED: 503,
        ErrorCode.STORAGE_ERROR: 503,
        # The write may have landed: retry with the same idempotency key.
        ErrorCode.OUTCOME_UNKNOWN: 503,
        # Damaged or too new data does not heal by retrying; an operator must look.
        ErrorCode.CORRUPT_DATA: 500,
        ErrorCode.UNSUPPORTED_VERSION: 500,
        ErrorCode.INTERNAL_ERROR: 500,
    }
)
"""The HTTP status of every error code (read-only)."""


def http_status(code: ErrorCode) -> int:
    """The HTTP status that answers a failure with ``code``."""
    return HTTP_STATUS[code]


class ApiError(Exception):
    """A failure to answer as its :class:`ErrorInfo`, with the status of its code."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error

    @classmethod
    def of(cls, error: ChatRuntimeError) -> ApiError:
        """The failure that stands for ``error``."""
        return cls(ErrorInfo.from_exception(error))


def unwrap(result: Result[T]) -> T:
    """The data of a successful ``result``; raise :class:`ApiError` for a failed one."""
    if result.success:
        return result.data
    raise ApiError(result.error)


def error_response(error: ErrorInfo) -> JSONResponse:
    """The response that answers ``error``: its status, and the ``ErrorInfo`` as the body."""
    return JSONResponse(error.model_dump(mode="json"), status_code=http_status(error.code))
