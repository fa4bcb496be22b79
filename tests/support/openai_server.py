"""A loopback OpenAI-compatible HTTP server that tests script one reply at a time.

The SDK's real OpenAI client talks to it over HTTP on 127.0.0.1, so tests exercise the same
request building, SSE parsing and error handling as production, without a network::

    with OpenAIServer() as server:
        server.reply(message("Hi!"), usage=usage(12, 3))
        config = ModelConfig(base_url=server.base_url, default_model="test-model", max_retries=0)
        ...                                   # run an agent on build_model_provider(config)
        server.requests[0]["input"]           # exactly what the SDK sent

Endpoints:

- ``POST /v1/responses``: a JSON ``Response``, or with ``"stream": true`` the Responses API's
  server-sent events (``response.created``, ``response.in_progress``, per item
  ``response.output_item.added``, its content events, ``response.output_item.done``, then
  ``response.completed``).
- ``POST /v1/chat/completions``: the same scripted replies as a chat completion (text and
  tool calls; reasoning items are left out), streamed as chunks with ``"stream": true``.

Each request takes the next scripted step: a :class:`ScriptedReply` (output items as plain
dicts in the Responses API shape, built with :func:`message`, :func:`function_call`,
:func:`reasoning` and the hosted tools' builders :func:`web_search_call`,
:func:`file_search_call`, :func:`code_interpreter_call`, :func:`image_generation_call`,
:func:`mcp_list_tools` and :func:`mcp_call`; optional usage; optional delays) or a
:class:`ScriptedError` (an HTTP status and an OpenAI error body). A request with nothing
scripted gets a 500 that says so.

Input content parts are checked as the Responses API checks them: ``input_text``,
``input_image`` (an ``http(s)`` or ``data:`` ``image_url``, or a ``file_id``) and
``input_file`` (``file_data`` as a ``data:`` URL with a ``filename``, a ``file_id`` or a
``file_url``); anything else answers 400 ``invalid_request_error`` naming the part, before a
scripted step is taken.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CREATED_AT = 1_700_000_000
"""The creation time of every response (fixed, so responses are reproducible)."""


@dataclass(frozen=True)
class ScriptedReply:
    """One successful model response.

    Attributes:
        output: The output items, as Responses API dicts.
        usage: ``input_tokens``, ``output_tokens`` and ``total_tokens`` (details are filled
            with zeros); ``None`` sends a response without usage.
        response_id: The response id; by default ``resp_<n>`` (or ``chatcmpl_<n>``) where n
            numbers the request, counting from 1.
        delay: Seconds to wait before answering (to test timeouts and cancellation).
        event_delay: Seconds to wait before each streamed event after the first.
    """

    output: Sequence[Mapping[str, Any]]
    usage: Mapping[str, int] | None = None
    response_id: str | None = None
    delay: float = 0.0
    event_delay: float = 0.0


@dataclass(frozen=True)
class ScriptedError:
    """One failed request: an HTTP status and a JSON error body.

    Attributes:
        status: The HTTP status code.
        body: The JSON body, usually ``{"error": {"message", "type", "param", "code"}}``.
        delay: Seconds to wait before answering.
    """

    status: int
    body: Mapping[str, Any]
    delay: float = 0.0


ScriptedStep = ScriptedReply | ScriptedError


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]


def message(text: str, *, id: str = "msg_1") -> dict[str, Any]:
    """An assistant message output item with one text part."""
    return {
        "type": "message",
        "id": id,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call(
    name: str, arguments: str | Mapping[str, Any], *, call_id: str, id: str | None = None
) -> dict[str, Any]:
    """A function call output item; mapping arguments are sent as compact JSON."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, separators=(",", ":"))
    return {
        "type": "function_call",
        "id": id if id is not None else f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def reasoning(
    *summary: str, id: str = "rs_1", encrypted_content: str | None = None
) -> dict[str, Any]:
    """A reasoning output item with the given summary texts."""
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": id,
        "summary": [{"type": "summary_text", "text": text} for text in summary],
    }
    if encrypted_content is not None:
        item["encrypted_content"] = encrypted_content
    return item


def web_search_call(query: str, *, id: str = "ws_1") -> dict[str, Any]:
    """A hosted web search the server ran."""
    return {
        "type": "web_search_call",
        "id": id,
        "status": "completed",
        "action": {"type": "search", "query": query},
    }


def file_search_call(
    *queries: str, results: Sequence[Mapping[str, Any]] = (), id: str = "fs_1"
) -> dict[str, Any]:
    """A hosted file search with its results (``file_id``, ``filename``, ``score``, ``text``)."""
    return {
        "type": "file_search_call",
        "id": id,
        "status": "completed",
        "queries": list(queries),
        "results": [dict(result) for result in results],
    }


def code_interpreter_call(
    code: str, *, logs: str = "", container_id: str = "cntr_1", id: str = "ci_1"
) -> dict[str, Any]:
    """Code the hosted interpreter ran, with its logs."""
    return {
        "type": "code_interpreter_call",
        "id": id,
        "status": "completed",
        "code": code,
        "container_id": container_id,
        "outputs": [{"type": "logs", "logs": logs}],
    }


def image_generation_call(result_b64: str, *, id: str = "ig_1") -> dict[str, Any]:
    """An image the hosted generator made (base64 PNG data)."""
    return {"type": "image_generation_call", "id": id, "status": "completed", "result": result_b64}


def mcp_list_tools(server_label: str, *tool_names: str, id: str = "mcpl_1") -> dict[str, Any]:
    """The tools a hosted MCP server listed."""
    return {
        "type": "mcp_list_tools",
        "id": id,
        "server_label": server_label,
        "tools": [{"name": name, "input_schema": {"type": "object"}} for name in tool_names],
    }


def mcp_call(
    server_label: str,
    name: str,
    arguments: str | Mapping[str, Any],
    output: str,
    *,
    id: str = "mcp_1",
) -> dict[str, Any]:
    """A call the hosted MCP server made, with its output."""
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, separators=(",", ":"))
    return {
        "type": "mcp_call",
        "id": id,
        "server_label": server_label,
        "name": name,
        "arguments": arguments,
        "output": output,
        "status": "completed",
    }


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    """A usage mapping whose total is the sum of its parts."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def error_body(
    message: str, *, type: str = "server_error", code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class OpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1, answering with scripted steps.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Stopping ends every
    delay early, closes open connections, joins the threads and closes the listening socket.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: list[ScriptedStep] = []
        self._recorded: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-test-server",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; does nothing when not running."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    # -- scripting ---------------------------------------------------------------------------

    def enqueue(self, *steps: ScriptedStep) -> None:
        """Append steps; each request consumes the oldest one."""
        with self._lock:
            self._steps.extend(steps)

    def reply(
        self,
        *output: Mapping[str, Any],
        usage: Mapping[str, int] | None = None,
        response_id: str | None = None,
        delay: float = 0.0,
        event_delay: float = 0.0,
    ) -> None:
        """Script a successful response made of ``output`` items."""
        self.enqueue(ScriptedReply(list(output), usage, response_id, delay, event_delay))

    def fail(
        self,
        status: int,
        message: str = "The server had an error while processing your request.",
        *,
        type: str = "server_error",
        code: str | None = None,
        param: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script an HTTP error with an OpenAI-style error body."""
        body = error_body(message, type=type, code=code, param=param)
        self.enqueue(ScriptedError(status, body, delay))

    @property
    def pending(self) -> int:
        """How many scripted steps no request has consumed yet."""
        with self._lock:
            return len(self._steps)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON body of every request received, oldest first."""
        with self._lock:
            return [recorded.body for recorded in self._recorded]

    @property
    def recorded(self) -> list[RecordedRequest]:
        """Every request received, with its method, path and headers."""
        with self._lock:
            return list(self._recorded)

    # -- used by the handler -----------------------------------------------------------------

    def _take(self, recorded: RecordedRequest) -> tuple[int, ScriptedStep | None]:
        with self._lock:
            self._recorded.append(recorded)
            number = len(self._recorded)
            if not self._steps:
                return number, None
            return number, self._steps.pop(0)

    def _give_back(self, step: ScriptedStep | None) -> None:
        """Put back a step a refused request took, for the next request."""
        if step is not None:
            with self._lock:
                self._steps.insert(0, step)

    def _sleep(self, seconds: float) -> bool:
        """Wait, unless the server stops first; tell whether it is still running."""
        if seconds > 0:
            self._stopping.wait(seconds)
        return not self._stopping.is_set()


class _HTTPServer(ThreadingHTTPServer):
    # Handler threads are joined on close (``block_on_close``), so none outlives the test.
    daemon_threads = False
    owner: OpenAIServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

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
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
        except (ValueError, OSError):
            self._send_json(400, error_body("the body is not JSON", type="invalid_request_error"))
            return
        path = self.path.split("?", 1)[0]
        headers = {key.lower(): value for key, value in self.headers.items()}
        number, step = owner._take(RecordedRequest("POST", path, headers, body))
        if path not in ("/v1/responses", "/v1/chat/completions"):
            self._send_json(404, error_body(f"no route for POST {path}", type="not_found"))
            return
        problem = _input_problem(body.get("input")) if path == "/v1/responses" else None
        if problem is not None:
            owner._give_back(step)
            self._send_json(400, error_body(problem, type="invalid_request_error", param="input"))
            return
        if step is None:
            text = f"no scripted reply left for POST {path} (request #{number})"
            self._send_json(500, error_body(text))
            return
        if not owner._sleep(step.delay):
            return
        if isinstance(step, ScriptedError):
            self._send_json(step.status, step.body)
            return
        model = str(body.get("model", "test-model"))
        if path == "/v1/responses":
            response = _response(step, model, number)
            if body.get("stream"):
                self._send_events(step, _response_events(response))
            else:
                self._send_json(200, response)
        else:
            completion_id = f"chatcmpl_{number}"
            if body.get("stream"):
                chunks = _chat_chunks(step, model, completion_id)
                self._send_events(step, ((None, chunk) for chunk in chunks), done_marker=True)
            else:
                self._send_json(200, _chat_completion(step, model, completion_id))

    def _send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def _send_events(
        self,
        step: ScriptedReply,
        events: Iterator[tuple[str | None, Mapping[str, Any]]],
        *,
        done_marker: bool = False,
    ) -> None:
        owner = self.server.owner
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index, (name, payload) in enumerate(events):
                if index and not owner._sleep(step.event_delay):
                    self.close_connection = True
                    return
                prefix = f"event: {name}\n" if name else ""
                self._write_chunk(f"{prefix}data: {json.dumps(payload)}\n\n".encode())
            if done_marker:
                self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            # The client went away mid-stream (a cancelled or timed-out test): nothing to do.
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _input_problem(given: Any) -> str | None:
    """What the Responses API would refuse in a request's ``input`` content parts, or
    ``None``."""
    if not isinstance(given, list):
        return None
    for index, item in enumerate(given):
        content = item.get("content") if isinstance(item, dict) else None
        if not isinstance(content, list) or item.get("role") == "assistant":
            continue
        for part_index, part in enumerate(content):
            problem = _part_problem(part)
            if problem is not None:
                return f"input[{index}].content[{part_index}]: {problem}"
    return None


def _part_problem(part: Any) -> str | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "input_text":
        return None if isinstance(part.get("text"), str) else "input_text needs a text"
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str) and url.startswith(("http://", "https://", "data:image/")):
            return None
        if url is None and isinstance(part.get("file_id"), str):
            return None
        return "input_image needs an http(s) or data:image/ image_url, or a file_id"
    if kind == "input_file":
        data = part.get("file_data")
        if isinstance(data, str) and data.startswith("data:") and part.get("filename"):
            return None
        if data is None and isinstance(part.get("file_id") or part.get("file_url"), str):
            return None
        return "input_file needs file_data (a data: URL) with a filename, a file_id or a file_url"
    return f"unknown content part type {kind!r}"


def _usage_payload(step: ScriptedReply) -> dict[str, Any] | None:
    if step.usage is None:
        return None
    input_tokens = step.usage.get("input_tokens", 0)
    output_tokens = step.usage.get("output_tokens", 0)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": step.usage.get("total_tokens", input_tokens + output_tokens),
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }


def _response(step: ScriptedReply, model: str, number: int) -> dict[str, Any]:
    return {
        "id": step.response_id if step.response_id is not None else f"resp_{number}",
        "object": "response",
        "created_at": CREATED_AT,
        "model": model,
        "status": "completed",
        "output": [dict(item) for item in step.output],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": _usage_payload(step),
    }


def _text_deltas(text: str) -> list[str]:
    """Split text into word-sized pieces that join back into exactly the same text."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [piece for piece in pieces if piece] or [""]


def _argument_deltas(arguments: str) -> list[str]:
    middle = len(arguments) // 2
    return [part for part in (arguments[:middle], arguments[middle:]) if part] or [""]


def _response_events(response: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    sequence = 0

    def event(kind: str, /, **fields: Any) -> tuple[str, dict[str, Any]]:
        nonlocal sequence
        sequence += 1
        return kind, {"type": kind, "sequence_number": sequence - 1, **fields}

    started = {**response, "status": "in_progress", "output": [], "usage": None}
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    for index, item in enumerate(response["output"]):
        kind = item.get("type")
        item_id = item.get("id")
        if kind == "message":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for part_index, part in enumerate(item.get("content", [])):
                place = {"item_id": item_id, "output_index": index, "content_index": part_index}
                text = part.get("text", "")
                yield event(
                    "response.content_part.added",
                    **place,
                    part={**part, "text": "", "logprobs": []},
                )
                for delta in _text_deltas(text):
                    yield event("response.output_text.delta", **place, delta=delta, logprobs=[])
                yield event("response.output_text.done", **place, text=text, logprobs=[])
                yield event("response.content_part.done", **place, part=part)
        elif kind == "function_call":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            place = {"item_id": item_id, "output_index": index}
            for delta in _argument_deltas(item["arguments"]):
                yield event("response.function_call_arguments.delta", **place, delta=delta)
            yield event(
                "response.function_call_arguments.done",
                **place,
                name=item["name"],
                arguments=item["arguments"],
            )
        elif kind == "reasoning":
            yield event(
                "response.output_item.added",
                output_index=index,
                item={**item, "summary": [], "encrypted_content": None, "status": "in_progress"},
            )
            for summary_index, summary in enumerate(item.get("summary", [])):
                place = {"item_id": item_id, "output_index": index, "summary_index": summary_index}
                text = summary["text"]
                yield event(
                    "response.reasoning_summary_part.added",
                    **place,
                    part={"type": "summary_text", "text": ""},
                )
                yield event("response.reasoning_summary_text.delta", **place, delta=text)
                yield event("response.reasoning_summary_text.done", **place, text=text)
                yield event(
                    "response.reasoning_summary_part.done",
                    **place,
                    part={"type": "summary_text", "text": text},
                )
        else:
            yield event("response.output_item.added", output_index=index, item=item)
        yield event("response.output_item.done", output_index=index, item=item)
    yield event("response.completed", response=response)


def _chat_parts(step: ScriptedReply) -> tuple[str | None, list[dict[str, Any]]]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for item in step.output:
        if item.get("type") == "message":
            texts.extend(part.get("text", "") for part in item.get("content", []))
        elif item.get("type") == "function_call":
            tool_calls.append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]},
                }
            )
    return ("".join(texts) if texts else None), tool_calls


def _chat_usage(step: ScriptedReply) -> dict[str, int] | None:
    payload = _usage_payload(step)
    if payload is None:
        return None
    return {
        "prompt_tokens": payload["input_tokens"],
        "completion_tokens": payload["output_tokens"],
        "total_tokens": payload["total_tokens"],
    }


def _chat_completion(step: ScriptedReply, model: str, completion_id: str) -> dict[str, Any]:
    content, tool_calls = _chat_parts(step)
    reply: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED_AT,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": "tool_calls" if tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": _chat_usage(step),
    }


def _chat_chunks(step: ScriptedReply, model: str, completion_id: str) -> Iterator[dict[str, Any]]:
    content, tool_calls = _chat_parts(step)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED_AT,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }

    yield chunk({"role": "assistant", "content": ""})
    for delta in _text_deltas(content) if content else []:
        yield chunk({"content": delta})
    for index, call in enumerate(tool_calls):
        function = call["function"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": ""},
                    }
                ]
            }
        )
        for delta in _argument_deltas(function["arguments"]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": delta}}]})
    yield chunk({}, "tool_calls" if tool_calls else "stop")
    chat_usage = _chat_usage(step)
    if chat_usage is not None:
        yield {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED_AT,
            "model": model,
            "choices": [],
            "usage": chat_usage,
        }


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    """A running :class:`OpenAIServer`, stopped after the test."""
    with OpenAIServer() as server:
        yield server
