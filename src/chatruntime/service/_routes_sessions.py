"""Sessions and their messages, each scoped to the caller's user.

Every call passes the caller's user id to the manager, whose user isolation does the rest:
sessions are created for the caller, listings list only theirs, and a request naming another
user's session answers exactly as one naming an id no session has.
"""

import time
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response

from ..models import (
    ChatSession,
    HistoryItem,
    InvalidInputError,
    Message,
    SessionHeader,
    SessionPage,
    SessionStatus,
)
from ..session import Done, Error, StreamEvent
from ._deps import Caller, ClientGone, Context, ServiceContext, until_disconnected
from ._errors import ApiError, unwrap
from ._logging import note_session
from ._metrics import TurnOutcome
from ._openapi import ERRORS, EVENT_STREAM
from ._schemas import MessageSend, SessionCreate, SessionUpdate
from ._sse import EventStream, encode_event

router = APIRouter(prefix="/sessions", tags=["sessions"], responses=ERRORS)

IDEMPOTENCY_HEADER = "Idempotency-Key"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description=(
            "Makes a retry safe: a turn sent again with a key the session already stored a "
            "turn for answers that turn's reply, without running the model again. 1-200 "
            "printable characters; a session remembers its last 100 keys."
        ),
    ),
]


@router.post("", status_code=201)
async def create_session(body: SessionCreate, context: Context, key: Caller) -> ChatSession:
    """Start a session of the caller's with an agent (the service's default agent when the
    body names none)."""
    agent_id = body.agent_id or context.default_agent_id
    if agent_id is None:
        raise ApiError.of(
            InvalidInputError("agent_id is required: this service has no default agent")
        )
    session = unwrap(
        await context.manager.create_session(
            agent_id, body.name, user_id=key.user_id, metadata=body.metadata
        )
    )
    note_session(session.id)
    return session


@router.get("")
async def list_sessions(
    context: Context,
    key: Caller,
    limit: int = 50,
    cursor: str | None = None,
    status: SessionStatus | None = None,
    agent_id: str | None = None,
) -> SessionPage:
    """A page of the caller's sessions (headers, no history), most recent activity first.
    Pass ``next_cursor`` back as ``cursor`` for the next page."""
    return unwrap(
        await context.manager.list_sessions(
            agent_id=agent_id, user_id=key.user_id, status=status, limit=limit, cursor=cursor
        )
    )


@router.get("/{session_id}")
async def get_session(session_id: str, context: Context, key: Caller) -> ChatSession:
    """One of the caller's sessions, with its whole history."""
    note_session(session_id)
    return unwrap(await context.manager.get_session(session_id, user_id=key.user_id))


@router.patch("/{session_id}")
async def update_session(
    session_id: str, body: SessionUpdate, context: Context, key: Caller
) -> ChatSession:
    """Rename a session, change its status or replace its metadata; fields left out keep
    their value."""
    note_session(session_id)
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
    return unwrap(await context.manager.update_session(session_id, user_id=key.user_id, **changes))


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: str, context: Context, key: Caller) -> Response:
    """Delete a session and everything stored of it."""
    note_session(session_id)
    unwrap(await context.manager.delete_session(session_id, user_id=key.user_id))
    return Response(status_code=204)


@router.post("/{session_id}/refresh")
async def refresh_session(session_id: str, context: Context, key: Caller) -> SessionHeader:
    """Move the session's expiry to now plus the service's time to live, as any activity
    would, and answer its header (with the new ``expiresAt``)."""
    note_session(session_id)
    refreshed = unwrap(await context.manager.refresh_session(session_id, user_id=key.user_id))
    return refreshed.header()


@router.get("/{session_id}/messages")
async def recent_messages(
    session_id: str, context: Context, key: Caller, limit: int = 50
) -> list[HistoryItem]:
    """The last ``limit`` history items of a session, oldest first (read without the rest)."""
    note_session(session_id)
    return unwrap(await context.manager.get_recent_messages(session_id, limit, user_id=key.user_id))


@router.post("/{session_id}/messages")
async def send_message(
    session_id: str,
    body: MessageSend,
    request: Request,
    context: Context,
    key: Caller,
    idempotency_key: IdempotencyKey = None,
) -> Message:
    """Send a user message and answer the agent's reply once the whole turn is stored.

    A client that disconnects first cancels the turn: nothing of it is stored. With an
    ``Idempotency-Key`` the call can be retried (e.g. after a lost connection or an
    ``OUTCOME_UNKNOWN``): a key the session already stored a turn for answers that reply.
    """
    note_session(session_id)
    metrics = context.metrics
    started = time.perf_counter()
    metrics.turns_in_flight.inc()
    try:
        answered = await until_disconnected(
            request,
            lambda: context.manager.send_message(
                session_id,
                body.content,
                timeout=body.timeout,
                user_id=key.user_id,
                idempotency_key=idempotency_key,
            ),
        )
    finally:
        metrics.turns_in_flight.dec()
    elapsed = time.perf_counter() - started
    if not answered:
        metrics.turn("send", "disconnected", elapsed)
        raise ClientGone
    result = answered[0]
    if not result.success:
        metrics.turn("send", "error", elapsed)
        raise ApiError(result.error)
    metrics.turn("send", "ok", elapsed, reply=result.data)
    return result.data


@router.post(
    "/{session_id}/messages:stream",
    status_code=200,
    response_class=EventStream,
    responses=EVENT_STREAM,
)
async def stream_message(
    session_id: str,
    body: MessageSend,
    request: Request,
    context: Context,
    key: Caller,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Send a user message and stream the turn as server-sent events, ending in exactly one
    ``done`` (stored) or ``error`` (nothing stored).

    A client that disconnects cancels the turn: nothing of it is stored. A repeat of an
    ``Idempotency-Key`` the session already stored a turn for streams only the ``done`` of
    that turn's reply.
    """
    note_session(session_id)
    metrics = context.metrics
    started = time.perf_counter()
    events = context.manager.stream_message(
        session_id,
        body.content,
        timeout=body.timeout,
        user_id=key.user_id,
        idempotency_key=idempotency_key,
    )
    metrics.turns_in_flight.inc()
    try:
        # A failure known before anything streamed (not active, bad content, busy...) is
        # answered with its status, like the same failure of a plain send.
        first = await until_disconnected(request, lambda: anext(events))
    except BaseException:
        metrics.turns_in_flight.dec()
        await events.aclose()
        raise
    if not first or isinstance(first[0], Error):
        metrics.turns_in_flight.dec()
        await events.aclose()
        elapsed = time.perf_counter() - started
        if not first:
            metrics.turn("stream", "disconnected", elapsed)
            raise ClientGone
        assert isinstance(first[0], Error)
        metrics.turn("stream", "error", elapsed)
        raise ApiError(first[0].error)
    return EventStream(
        _encoded(context, first[0], events, started), ping_seconds=context.ping_seconds
    )


async def _encoded(
    context: ServiceContext,
    first: StreamEvent,
    events: AsyncGenerator[StreamEvent, None],
    started: float,
) -> AsyncGenerator[bytes, None]:
    """The turn's events as SSE messages, counted in the metrics as the turn ends."""
    metrics = context.metrics
    outcome: TurnOutcome = "disconnected"
    reply: Message | None = None
    try:
        event: StreamEvent | None = first
        while event is not None:
            # The outcome is known before the last event is sent: a client that leaves as
            # it goes out does not make a stored turn count as abandoned.
            if isinstance(event, Done):
                outcome, reply = "ok", event.message
            elif isinstance(event, Error):
                outcome = "error"
                metrics.error(event.error.code)
            yield encode_event(event)
            if outcome != "disconnected":
                break
            event = await anext(events, None)
    finally:
        metrics.turns_in_flight.dec()
        metrics.turn("stream", outcome, time.perf_counter() - started, reply=reply)
        await events.aclose()
