"""``Result[T]``: the value every public call returns instead of raising.

No ``from __future__ import annotations`` here: pydantic reads the dataclasses' annotations
at run time (``TypeAdapter(Result[X])``), after they are presented as ``chatruntime.Ok``.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, NoReturn, TypeVar, Union

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
    def from_exception(cls, error: ChatRuntimeError) -> "ErrorInfo":
        return cls(code=error.code, message=error.message, details=dict(error.details))

    def to_exception(self) -> ChatRuntimeError:
        return exception_for(self.code)(self.message, **self.details)


@dataclass(frozen=True, slots=True)
class Ok(Generic[T]):
    """A call that succeeded: ``success`` is ``True`` and ``data`` holds its value."""

    data: T
    success: Literal[True] = field(default=True, init=False)
    error: None = field(default=None, init=False)

    def unwrap(self) -> T:
        """Return ``data``."""
        return self.data


@dataclass(frozen=True, slots=True)
class Err:
    """A call that failed: ``success`` is ``False`` and ``error`` says why."""

    error: ErrorInfo
    success: Literal[False] = field(default=False, init=False)
    data: None = field(default=None, init=False)

    @classmethod
    def of(cls, code: ErrorCode, message: str, **details: Any) -> "Err":
        """A failure with ``code``, a ``message`` for people, and ``details``."""
        return cls(ErrorInfo(code=code, message=message, details=details))

    @classmethod
    def from_exception(cls, error: ChatRuntimeError) -> "Err":
        """The failure that stands for ``error``."""
        return cls(ErrorInfo.from_exception(error))

    def unwrap(self) -> NoReturn:
        """Raise the :class:`ChatRuntimeError` subclass of the error's code."""
        raise self.error.to_exception()


Result = Union[Ok[T], Err]  # noqa: UP007 -- a generic alias must be a typing.Union on 3.11
"""What every manager call returns: :class:`Ok` with ``data``, or :class:`Err` with ``error``.

Checking ``success`` (or ``error is None``) narrows it for type checkers, so ``data`` and
``error`` are typed without casts:

Example:
    >>> result = await manager.get_session(session_id)
    >>> if result.success:
    ...     print(result.data.name)
    ... else:
    ...     print(result.error.code, result.error.message)

``result.unwrap()`` returns the data or raises the error as its exception.
"""


async def guard(call: Callable[[], Awaitable[T]]) -> Result[T]:
    """Run ``call`` and turn expected failures into ``Result`` errors.

    Unexpected exceptions are logged and answered as ``INTERNAL_ERROR``: a service behind
    this library gets an answer it can map, and the traceback is in the log. A
    :class:`UsageError` (the caller's programming mistake) is raised as it is.
    """
    try:
        return Ok(await call())
    except ChatRuntimeError as error:
        return Err.from_exception(error)
    except UsageError:
        raise
    except Exception as error:
        logger.exception("unexpected error in chatruntime")
        return Err.of(
            ErrorCode.INTERNAL_ERROR,
            f"internal error: {type(error).__name__}: {error}",
            exception=type(error).__name__,
        )
