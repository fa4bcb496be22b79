"""Server-sent events: a turn's stream events on the wire, and a response that ends the turn
when its client goes away.

Each event is one SSE message whose ``event`` is the event's ``type`` and whose ``data`` is the
event as JSON (``STREAM_EVENT_ADAPTER.validate_json`` reads it back)::

    event: text_delta
    data: {"type":"text_delta","text":"Hello"}

A comment line (``: ping``) is sent while nothing else is, so proxies keep the connection open
and a client that is gone is noticed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectSendStream
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..session import StreamEvent

PING = b": ping\n\n"
PING_SECONDS = 15.0
_BUFFER = 16


def encode_event(event: StreamEvent) -> bytes:
    """One stream event as an SSE message (JSON never holds a raw newline: one data line)."""
    return f"event: {event.type}\ndata: {event.model_dump_json(by_alias=True)}\n\n".encode()


class EventStream(StreamingResponse):
    """Streams SSE messages from ``messages`` until it ends or the client disconnects.

    A disconnect (seen as the ASGI ``http.disconnect`` message, whatever the server's ASGI
    version) cancels the task that reads ``messages``, so the generator behind it is
    cancelled where it waits: a turn streamed from :meth:`SessionManager.stream_message`
    is then cancelled and stores nothing.

    Args:
        messages: The encoded messages (closed when the response ends).
        ping_seconds: Idle time after which a ``: ping`` comment is sent.
        headers: Extra response headers.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        messages: AsyncGenerator[bytes, None],
        *,
        ping_seconds: float = PING_SECONDS,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            messages,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
        )
        self._messages = messages
        self._ping_seconds = ping_seconds
        self._last_sent = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
            try:
                await self._send_all(send)
            except* OSError:
                pass  # the connection is gone: what is left of the turn is cancelled below
            finally:
                group.cancel_scope.cancel()

    async def _send_all(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        self._last_sent = anyio.current_time()
        sink, source = anyio.create_memory_object_stream[bytes](max_buffer_size=_BUFFER)
        async with anyio.create_task_group() as helpers:
            # The generator is read in its own task, and pings are added beside it, so that
            # waiting for the next message never cancels the generator (which would end the
            # turn) nor a receive that already took a message.
            helpers.start_soon(self._pump, sink)
            helpers.start_soon(self._ping, sink)
            async with source:
                async for chunk in source:
                    self._last_sent = anyio.current_time()
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            helpers.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, sink: MemoryObjectSendStream[bytes]) -> None:
        async with sink:
            try:
                async for message in self._messages:
                    await sink.send(message)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._messages.aclose()

    async def _ping(self, sink: MemoryObjectSendStream[bytes]) -> None:
        while True:
            idle = anyio.current_time() - self._last_sent
            if idle < self._ping_seconds:
                await anyio.sleep(self._ping_seconds - idle)
                continue
            try:
                sink.send_nowait(PING)
            except anyio.WouldBlock:
                pass  # messages are waiting to go: no ping is needed
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            self._last_sent = anyio.current_time()


async def _cancel_on_disconnect(receive: Receive, scope: CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
