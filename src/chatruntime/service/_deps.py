"""What every route needs: the service's objects and the caller's key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..agent import AgentManager
from ..session import SessionManager
from ._auth import ApiKey, KeyRing
from ._logging import current_request
from ._metrics import ServiceMetrics

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceContext:
    """The objects behind one app (kept on ``app.state.chatruntime``)."""

    manager: SessionManager
    agents: AgentManager
    keys: KeyRing
    metrics: ServiceMetrics
    default_agent_id: str | None
    ping_seconds: float


class Unauthorized(Exception):
    """No key, or a key the service does not know: 401, and nothing more is said."""


class Forbidden(Exception):
    """A user's key on an admin route: 403, and nothing more is said."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready; its turn was cancelled."""


def service_context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.chatruntime
    return context


Context = Annotated[ServiceContext, Depends(service_context)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key of the service: `Authorization: Bearer <key>`.",
)


async def caller(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> ApiKey:
    """The key the request presents; :class:`Unauthorized` without a known one."""
    if credentials is None:
        raise Unauthorized
    key = context.keys.authenticate(credentials.credentials)
    if key is None:
        raise Unauthorized
    info = current_request()
    if info is not None:
        info.user_id = key.user_id
    return key


Caller = Annotated[ApiKey, Depends(caller)]


async def admin(key: Caller) -> ApiKey:
    """The caller's key when it is an admin's; :class:`Forbidden` otherwise."""
    if not key.admin:
        raise Forbidden
    return key


Admin = Annotated[ApiKey, Depends(admin)]


async def until_disconnected(request: Request, call: Callable[[], Awaitable[T]]) -> list[T]:
    """Run ``call``, cancelling it if the client disconnects first.

    Returns:
        ``[value]``, or ``[]`` when the client went away (and ``call`` was cancelled).

    Raises:
        Exception: What ``call`` raised, as it was (not in an exception group).
    """
    done: list[T] = []
    failed: list[Exception] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                done.append(await call())
            except Exception as error:
                failed.append(error)
            group.cancel_scope.cancel()

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(watch)
    if failed:
        raise failed[0]
    return done
