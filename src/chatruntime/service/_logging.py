"""Structured logs: every record made while a request is served carries its request id, and
the user and session it concerns once they are known.

:class:`RequestContextFilter` puts them on records as ``request_id``, ``user_id`` and
``session_id``; :class:`JsonFormatter` writes one JSON object per line. ``chatruntime serve``
installs both; an embedder adds the filter to its own handlers.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("chatruntime.service")
"""The service's logger: one ``request`` record per request answered, and failures."""

CONTEXT_FIELDS = ("request_id", "user_id", "session_id")
_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")
# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@dataclass
class RequestInfo:
    """What the logs say about the request being served (filled in as it becomes known)."""

    request_id: str
    user_id: str | None = None
    session_id: str | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("chatruntime_request", default=None)


def current_request() -> RequestInfo | None:
    """The request being served in this context, if any."""
    return _current.get()


def set_current(info: RequestInfo | None) -> Token[RequestInfo | None]:
    """Make ``info`` the current request; returns a token for :func:`reset_current`."""
    return _current.set(info)


def reset_current(token: Token[RequestInfo | None]) -> None:
    """Restore the request that was current before :func:`set_current` gave ``token``."""
    _current.reset(token)


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is a sane token, else a fresh one."""
    if header is not None and _REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def note_session(session_id: str) -> None:
    """Record the session the current request concerns, for its log records."""
    info = _current.get()
    if info is not None:
        info.session_id = session_id


class RequestContextFilter(logging.Filter):
    """Adds ``request_id``, ``user_id`` and ``session_id`` to every record (``None`` outside
    a request); values a record already carries are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = _current.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(info, name) if info is not None else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the request
    context, anything given as ``extra=``, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """One line per record, with the request id and session id in brackets when there are."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        known = [
            str(value)
            for name in ("request_id", "session_id")
            if (value := getattr(record, name, None))
        ]
        record.context = f" [{' '.join(known)}]" if known else ""
        return super().format(record)


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Send every log record to stderr, as JSON lines (or plain text), with the request
    context; for ``chatruntime serve``. Replaces the root logger's handlers."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestContextFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
