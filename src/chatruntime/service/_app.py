"""``create_app``: the FastAPI app that serves a :class:`SessionManager` over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware

from ..agent import AgentManager
from ..models import ChatRuntimeError, ErrorCode, ErrorInfo, require_uuid
from ..session import SessionManager
from ._auth import KeyRing
from ._deps import ClientGone, Forbidden, ServiceContext, Unauthorized
from ._errors import ApiError, error_response
from ._logging import logger
from ._metrics import ServiceMetrics
from ._middleware import REQUEST_ID_HEADER, RequestMiddleware
from ._openapi import with_stream_events
from ._routes_agents import router as agents_router
from ._routes_checkpoints import router as checkpoints_router
from ._routes_ops import router as ops_router
from ._routes_sessions import IDEMPOTENCY_HEADER
from ._routes_sessions import router as sessions_router
from ._routes_state import router as state_router
from ._sse import PING_SECONDS
from ._web import router as web_router

CLIENT_CLOSED = 499
"""The status logged (never seen) for a request whose client left first: nginx's code."""

_DESCRIPTION = """\
Chat sessions between people and LLM agents, over HTTP.

Every route but the probes and `/metrics` takes an API key, `Authorization: Bearer <key>`, and
acts as the key's user: a user sees only their own sessions. Agents are managed with admin
keys. A failed call answers an `ErrorInfo` (`code`, `message`, `details`) with the status of
its code.
"""


def create_app(
    manager: SessionManager,
    agents: AgentManager,
    *,
    keys: KeyRing,
    default_agent_id: str | None = None,
    cors_origins: Sequence[str] | None = None,
    close_manager: bool = True,
    ping_seconds: float = PING_SECONDS,
) -> FastAPI:
    """The HTTP service over ``manager``: an ASGI app to serve, or to mount in another app.

    The manager must be initialized before the app serves requests. When the app runs its
    own lifespan (served on its own, e.g. by uvicorn), shutting it down closes the manager,
    which waits for the turns in flight; a mounted app gets no lifespan, so its embedder
    closes the manager.

    Example:
        >>> keys = KeyRing.from_file("keys.txt")
        >>> app = create_app(manager, agents, keys=keys, default_agent_id=agent.id)
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)

    Args:
        manager: The sessions to serve (initialized).
        agents: The agents, managed through the admin routes.
        keys: The API keys the service accepts, and the users they act as.
        default_agent_id: The agent of sessions created without one (``None``: every new
            session must name its agent).
        cors_origins: Origins browsers may call the service from (``None``: no CORS headers,
            so only pages the service serves itself may call it).
        close_manager: Close ``manager`` when the app shuts down.
        ping_seconds: Idle seconds after which a stream sends a keep-alive comment.
    """
    if default_agent_id is not None:
        require_uuid(default_agent_id, "default_agent_id")
    if not ping_seconds > 0:
        raise ValueError(f"ping_seconds must be positive, got {ping_seconds!r}")
    metrics = ServiceMetrics(manager)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_manager:
                try:
                    await manager.close()
                except ChatRuntimeError:
                    logger.exception("closing the store failed")

    app = FastAPI(
        title="chatruntime",
        description=_DESCRIPTION,
        version=_VERSION,
        lifespan=lifespan,
    )
    app.state.chatruntime = ServiceContext(
        manager=manager,
        agents=agents,
        keys=keys,
        metrics=metrics,
        default_agent_id=default_agent_id,
        ping_seconds=ping_seconds,
    )
    app.include_router(ops_router)
    app.include_router(agents_router)
    app.include_router(sessions_router)
    app.include_router(checkpoints_router)
    app.include_router(state_router)
    app.include_router(web_router)
    _add_error_handlers(app, metrics)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                REQUEST_ID_HEADER,
                IDEMPOTENCY_HEADER,
            ],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(RequestMiddleware, metrics=metrics)
    app.openapi = with_stream_events(app.openapi)  # type: ignore[method-assign]
    return app


def _add_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        metrics.error(error.error.code)
        return error_response(error.error)

    async def invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        problems = [
            {
                "location": ".".join(str(part) for part in problem.get("loc", ())),
                "message": str(problem.get("msg", "")),
            }
            for problem in error.errors()
        ]
        message = "; ".join(f"{p['location']}: {p['message']}" for p in problems)
        metrics.error(ErrorCode.VALIDATION_ERROR)
        return error_response(
            ErrorInfo(
                code=ErrorCode.VALIDATION_ERROR,
                message=f"invalid request: {message}",
                details={"errors": problems},
            )
        )

    async def unauthorized(request: Request, error: Exception) -> Response:
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def forbidden(request: Request, error: Exception) -> Response:
        return Response(status_code=403)

    async def client_gone(request: Request, error: Exception) -> Response:
        return Response(status_code=CLIENT_CLOSED)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(ClientGone, client_gone)


def _package_version() -> str:
    try:
        return version("chatruntime")
    except PackageNotFoundError:
        return "unknown"


# Read once, on import: reading package metadata touches the disk.
_VERSION = _package_version()
