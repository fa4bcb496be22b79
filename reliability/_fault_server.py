"""A loopback OpenAI Responses API server that answers with faults on demand.

The tests' scripted server (``tests/support/openai_server.py``) answers well-formed replies
and HTTP errors; the faults a network and a provider really produce need more: a 429 with
``retry-after``, a connection dropped mid-answer, a malformed event stream, a stream that
stops sending. Each request to ``POST /v1/responses`` takes the next :class:`Fault` queued
(``ok`` when none is), streamed or not as the request asks.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("ok", "status", "drop", "malformed", "stall")


@dataclass(frozen=True)
class Fault:
    """How to answer one request.

    Attributes:
        kind: ``ok`` (a well-formed reply), ``status`` (an HTTP error), ``drop`` (close the
            connection half-way through the answer), ``malformed`` (a body or an event that
            is not JSON), ``stall`` (stop sending for ``seconds``, half-way through).
        status: The HTTP status of a ``status`` fault.
        headers: Extra response headers (``retry-after``).
        seconds: How long a ``stall`` lasts (the server's stop ends it early).
    """

    kind: str = "ok"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


class FaultServer:
    """The server on 127.0.0.1; a context manager that joins its threads on leaving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.requests = 0
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="faults"
        )

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def queue(self, *faults: Fault) -> None:
        with self._lock:
            self._queue.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def _next(self) -> tuple[int, Fault]:
        with self._lock:
            self.requests += 1
            return self.requests, (self._queue.pop(0) if self._queue else Fault())


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    owner: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up on a fault is the point of the exercise, not news.
        pass


def _response(number: int, model: str) -> dict[str, Any]:
    text = f"Answer number {number}"
    return {
        "id": f"resp_{number}",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": model,
        "status": "completed",
        "output": [
            {
                "type": "message",
                "id": f"msg_{number}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 10,
            "output_tokens": 3,
            "total_tokens": 13,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _events(response: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    item = response["output"][0]
    text = item["content"][0]["text"]
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    place = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
        (
            "response.output_item.added",
            {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
        ),
        (
            "response.content_part.added",
            {**place, "part": {"type": "output_text", "text": "", "annotations": []}},
        ),
    ]
    for word in text.split(" "):
        events.append(("response.output_text.delta", {**place, "delta": word + " "}))
    events += [
        ("response.output_text.done", {**place, "text": text}),
        ("response.content_part.done", {**place, "part": item["content"][0]}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": response}),
    ]
    for number, (kind, payload) in enumerate(events):
        yield kind, {"type": kind, "sequence_number": number, **payload}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:
            self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.owner._lock:
            self.server.owner._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        number, fault = owner._next()
        model = str(body.get("model", "test-model"))
        try:
            if fault.kind == "status":
                self._status(fault)
            elif body.get("stream"):
                self._stream(fault, _response(number, model))
            else:
                self._plain(fault, _response(number, model))
        except OSError:
            self.close_connection = True

    def _status(self, fault: Fault) -> None:
        data = json.dumps(
            {
                "error": {
                    "message": f"injected HTTP {fault.status}",
                    "type": "rate_limit_exceeded" if fault.status == 429 else "server_error",
                    "param": None,
                    "code": None,
                }
            }
        ).encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in fault.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _abort(self) -> None:
        # A reset, not a clean close: what a dropped network path looks like to the client.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _plain(self, fault: Fault, response: dict[str, Any]) -> None:
        data = json.dumps(response).encode()
        if fault.kind == "stall":
            self.server.owner._stopping.wait(fault.seconds)
        if fault.kind == "malformed":
            data = b'{"id": "resp_broken", "output": [ {not json'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault.kind == "drop":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self._abort()
            return
        self.wfile.write(data)

    def _stream(self, fault: Fault, response: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = list(_events(response))
        half = len(events) // 2
        for index, (kind, payload) in enumerate(events):
            if index == half and fault.kind == "drop":
                self._abort()
                return
            if index == half and fault.kind == "stall":
                if self.server.owner._stopping.wait(fault.seconds):
                    self.close_connection = True
                    return
            data = f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()
            if index == half and fault.kind == "malformed":
                data = f"event: {kind}\ndata: {{not json\n\n".encode()
            self._chunk(data)
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
