"""Per request: an id (the caller's ``X-Request-ID`` or a new one, echoed in the answer), one
log record when it is answered, its count in the metrics, and the answer to an exception
nothing else handled (500 ``INTERNAL_ERROR``, logged with the request's context).

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which would run streamed answers
in another task and hide a client's disconnect from them.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..models import ErrorCode, ErrorInfo
from ._errors import error_response
from ._logging import RequestInfo, logger, request_id_from, reset_current, set_current
from ._metrics import ServiceMetrics

REQUEST_ID_HEADER = "X-Request-ID"
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probed every few seconds: logged at DEBUG so they do not drown the requests of people."""


class RequestMiddleware:
    """Gives each HTTP request an id, logs it once answered, and counts it."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = RequestInfo(request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER)))
        token = set_current(info)
        status = 500  # unless an answer starts: an exception escaped
        started = time.perf_counter()

        started_answer = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_answer
            if message["type"] == "http.response.start":
                status = message["status"]
                started_answer = True
                headers = [*message.get("headers", [])]
                headers.append((REQUEST_ID_HEADER.lower().encode(), info.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as error:
                # Answered here rather than by Starlette's outermost handler, which runs
                # after the request's context is gone.
                logger.error("unexpected error answering a request", exc_info=error)
                if started_answer:
                    raise
                self.metrics.error(ErrorCode.INTERNAL_ERROR)
                response = error_response(
                    ErrorInfo(
                        code=ErrorCode.INTERNAL_ERROR,
                        message=f"internal error ({type(error).__name__}); the log has its details",
                        details={"request_id": info.request_id},
                    )
                )
                await response(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            self.metrics.request(scope["method"], route, status)
            logger.log(
                logging.DEBUG if route in _QUIET_ROUTES else logging.INFO,
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "request_id": info.request_id,
                    "user_id": info.user_id,
                    "session_id": info.session_id,
                },
            )
            reset_current(token)
