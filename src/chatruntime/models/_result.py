"""``Result[T]``: the value every public call returns instead of raising."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ._errors import ChatRuntimeError, ErrorCode, UsageError, exception_for

T = TypeVar("T")
logger = logging.getLogger("chatruntime")


class ErrorInfo(BaseModel):
    """Why a call failed: a stable code, a sentence for people, and structured details."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_exception(cls, error: ChatRuntimeError) -> ErrorInfo:
        return cls(code=error.code, message=error.message, details=dict(error.details))

    def to_exception(self) -> ChatRuntimeError:
        return exception_for(self.code)(self.message, **self.details)


class Result(BaseModel, Generic[T]):
    """Success with ``data``, or failure with ``error``.

    Example:
        >>> result = await manager.get_session(session_id)
        >>> if result.success:
        ...     print(result.data.name)
        ... else:
        ...     print(result.error.code, result.error.message)
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    success: bool
    data: T | None = None
    error: ErrorInfo | None = None

    @classmethod
    def ok(cls, data: T) -> Result[T]:
        return cls(success=True, data=data)

    @classmethod
    def fail(cls, code: ErrorCode, message: str, **details: Any) -> Result[T]:
        return cls(success=False, error=ErrorInfo(code=code, message=message, details=details))

    @classmethod
    def from_exception(cls, error: ChatRuntimeError) -> Result[T]:
        return cls(success=False, error=ErrorInfo.from_exception(error))

    def unwrap(self) -> T:
        """Return ``data``, or raise the :class:`ChatRuntimeError` subclass of the error code."""
        if self.success:
            return self.data  # type: ignore[return-value]
        self._raise()

    def _raise(self) -> NoReturn:
        assert self.error is not None
        raise self.error.to_exception()


async def guard(call: Callable[[], Awaitable[T]]) -> Result[T]:
    """Run ``call`` and turn expected failures into ``Result`` errors.

    Unexpected exceptions are logged and answered as ``INTERNAL_ERROR``: a service behind
    this library gets an answer it can map, and the traceback is in the log. A
    :class:`UsageError` (the caller's programming mistake) is raised as it is.
    """
    try:
        return Result.ok(await call())
    except ChatRuntimeError as error:
        return Result.from_exception(error)
    except UsageError:
        raise
    except Exception as error:
        logger.exception("unexpected error in chatruntime")
        return Result.fail(
            ErrorCode.INTERNAL_ERROR,
            f"internal error: {type(error).__name__}: {error}",
            exception=type(error).__name__,
        )
