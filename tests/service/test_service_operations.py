"""What operators rely on: probes, metrics, request ids in answers and logs, the OpenAPI
schema, CORS, and a shutdown that finishes or cancels turns without partial writes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from agents import function_tool

from chatruntime import ChatSession, Done, FileStore, ToolRegistry, UsageError
from chatruntime.service import JsonFormatter, RequestContextFilter, TextFormatter
from conftest import ADMIN_KEY, Service, running_service, sse_events

# -- probes ---------------------------------------------------------------------------------


def test_healthz_answers_ok_without_a_key(shared_service: Service) -> None:
    response = httpx.get(f"{shared_service.url}/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_answers_ready_when_the_store_answers(shared_service: Service) -> None:
    response = httpx.get(f"{shared_service.url}/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})


# -- metrics --------------------------------------------------------------------------------


def test_metrics_count_turns_latency_tokens_and_cached_sessions(
    service: Service, alice: httpx.Client
) -> None:
    session_id = alice.post("/sessions", json={"name": "Chat"}).json()["id"]
    alice.post(f"/sessions/{session_id}/messages", json={"content": "Hello"})
    with alice.stream(
        "POST", f"/sessions/{session_id}/messages:stream", json={"content": "Again"}
    ) as response:
        list(response.iter_lines())
    alice.get(f"/sessions/{UNKNOWN}")

    assert service.metric("chatruntime_turns_total", mode="send", outcome="ok") == 1
    assert service.metric("chatruntime_turns_total", mode="stream", outcome="ok") == 1
    assert service.metric("chatruntime_turn_duration_seconds_count", mode="send") == 1
    assert service.metric("chatruntime_turn_duration_seconds_count", mode="stream") == 1
    assert service.metric("chatruntime_tokens_total", kind="input") == 3 + 10
    assert service.metric("chatruntime_tokens_total", kind="output") == 6 + 6
    assert service.metric("chatruntime_cached_sessions") == 1
    assert service.metric("chatruntime_turns_in_flight") == 0
    assert service.metric("chatruntime_errors_total", code="SESSION_NOT_FOUND") == 1
    assert service.metric("chatruntime_errors_total", code="BUSY") == 0
    # Requests are counted once answered: just after the client has the answer.
    service.wait_for(
        lambda: (
            service.metric(
                "chatruntime_http_requests_total",
                method="POST",
                route="/sessions/{session_id}/messages",
                status="200",
            )
            == 1
        )
    )


def test_metrics_are_in_the_prometheus_text_format(shared_service: Service) -> None:
    response = httpx.get(f"{shared_service.url}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE chatruntime_turn_duration_seconds histogram" in response.text


# -- request ids and logs -------------------------------------------------------------------

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def test_an_answer_echoes_the_callers_request_id(shared_service: Service) -> None:
    response = shared_service.client().get("/me", headers={"X-Request-ID": "trace-7.a:b"})

    assert response.headers["x-request-id"] == "trace-7.a:b"


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129])
def test_an_answer_without_a_sane_request_id_gets_a_new_one(
    shared_service: Service, given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given is not None else {}

    response = shared_service.client().get("/me", headers=headers)

    assert len(response.headers["x-request-id"]) == 32
    assert response.headers["x-request-id"] != given


def test_each_request_is_logged_with_its_request_user_and_session(
    service: Service, alice: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = alice.post("/sessions", json={"name": "Chat"}).json()["id"]
    caplog.set_level(logging.INFO, logger="chatruntime.service")

    alice.post(
        f"/sessions/{session_id}/messages",
        json={"content": "Hello"},
        headers={"X-Request-ID": "req-1"},
    )

    # The record is made once the answer is sent: it may come just after the client has it.
    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "request_id", None) == "req-1"]

    service.wait_for(lambda: bool(logged()))
    records = logged()
    assert len(records) == 1
    record = records[0]
    assert record.getMessage() == f"POST /sessions/{session_id}/messages 200"
    assert (record.user_id, record.session_id, record.status) == ("alice", session_id, 200)  # type: ignore[attr-defined]
    assert record.route == "/sessions/{session_id}/messages"  # type: ignore[attr-defined]
    assert record.duration_ms > 0  # type: ignore[attr-defined]


def log_from_a_tool(n: int) -> str:
    """A tool that logs, as library code would, with no context of its own."""
    logging.getLogger("chatruntime.tools").warning("the tool ran with %s", n)
    return f"logged {n}"


def test_logs_made_during_a_turn_carry_the_requests_context(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(tools=ToolRegistry([function_tool(log_from_a_tool)]))
    agent = service.client(ADMIN_KEY).post(
        "/agents", json={"name": "Logger", "tools": ["log_from_a_tool"]}
    )
    alice = service.client()
    session_id = alice.post("/sessions", json={"name": "Chat", "agentId": agent.json()["id"]})
    session_id = session_id.json()["id"]
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    handler.addFilter(RequestContextFilter())
    library = logging.getLogger("chatruntime")
    library.addHandler(handler)
    try:
        library.warning("outside any request")
        alice.post(
            f"/sessions/{session_id}/messages:stream",
            json={"content": '/tool log_from_a_tool {"n": 5}'},
            headers={"X-Request-ID": "req-2"},
        )
    finally:
        library.removeHandler(handler)

    context = {
        r.getMessage(): (r.request_id, r.user_id, r.session_id)  # type: ignore[attr-defined]
        for r in seen
    }
    assert context["outside any request"] == (None, None, None)
    assert context["the tool ran with 5"] == ("req-2", "alice", session_id)


def test_json_logs_hold_the_message_the_context_and_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "chatruntime.service", "levelname": "INFO", "msg": "GET %s", "args": ("/x",)}
    )
    record.request_id = "r1"
    record.status = 200
    record.created = 0

    line = json.loads(JsonFormatter().format(record))

    assert line == {
        "time": "1970-01-01T00:00:00.000+00:00",
        "level": "INFO",
        "logger": "chatruntime.service",
        "message": "GET /x",
        "request_id": "r1",
        "status": 200,
    }


@pytest.mark.parametrize(
    ("context", "shown"),
    [
        ({"request_id": "r1", "session_id": "s1"}, "chatruntime.service [r1 s1] hello"),
        ({"request_id": "r1", "session_id": None}, "chatruntime.service [r1] hello"),
        ({"request_id": None, "session_id": None}, "chatruntime.service hello"),
    ],
)
def test_text_logs_show_the_request_and_session_when_known(
    context: dict[str, str | None], shown: str
) -> None:
    record = logging.makeLogRecord(
        {"name": "chatruntime.service", "levelname": "INFO", "msg": "hello", **context}
    )

    assert TextFormatter().format(record).endswith(f" INFO {shown}")


# -- the schema -----------------------------------------------------------------------------


def test_the_openapi_schema_documents_every_route_and_the_stream_events(
    shared_service: Service,
) -> None:
    schema = httpx.get(f"{shared_service.url}/openapi.json").json()

    assert {(path, method) for path, item in schema["paths"].items() for method in item} == {
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/me", "get"),
        ("/agents", "post"),
        ("/agents", "get"),
        ("/agents/{agent_id}", "get"),
        ("/agents/{agent_id}", "patch"),
        ("/agents/{agent_id}", "delete"),
        ("/sessions", "post"),
        ("/sessions", "get"),
        ("/sessions/{session_id}", "get"),
        ("/sessions/{session_id}", "patch"),
        ("/sessions/{session_id}", "delete"),
        ("/sessions/{session_id}/messages", "get"),
        ("/sessions/{session_id}/messages", "post"),
        ("/sessions/{session_id}/messages:stream", "post"),
        ("/sessions/{session_id}/refresh", "post"),
        ("/sessions/{session_id}/checkpoints", "post"),
        ("/sessions/{session_id}/checkpoints", "get"),
        ("/sessions/{session_id}/checkpoints/{checkpoint_id}", "get"),
        ("/sessions/{session_id}/checkpoints/{checkpoint_id}", "delete"),
        ("/sessions/{session_id}/checkpoints/{checkpoint_id}/history", "get"),
        ("/sessions/{session_id}/checkpoints/{checkpoint_id}/restore", "post"),
        ("/sessions/{session_id}/fork", "post"),
        ("/sessions/{session_id}/state", "get"),
        ("/sessions/{session_id}/state", "put"),
    }
    components = schema["components"]["schemas"]
    assert {"ErrorInfo", "StreamEvent", "TextDelta", "Done", "Error"} <= set(components)
    assert {"CheckpointCreate", "CheckpointSummary", "ForkCreate", "SessionState"} <= set(
        components
    )
    save = schema["paths"]["/sessions/{session_id}/checkpoints"]["post"]
    assert save["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CheckpointCreate"
    }
    assert save["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CheckpointSummary"
    }
    assert set(components["CheckpointSummary"]["properties"]) == {
        "id",
        "sessionId",
        "label",
        "createdAt",
        "kind",
        "data",
        "itemCount",
        "header",
    }
    send = schema["paths"]["/sessions/{session_id}/messages"]["post"]
    assert [(p["name"], p["in"]) for p in send["parameters"] if p["in"] == "header"] == [
        ("Idempotency-Key", "header")
    ]
    stream = schema["paths"]["/sessions/{session_id}/messages:stream"]["post"]
    assert stream["responses"]["200"]["content"]["text/event-stream"]["schema"] == {
        "$ref": "#/components/schemas/StreamEvent"
    }
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_docs_are_served(shared_service: Service) -> None:
    response = httpx.get(f"{shared_service.url}/docs")

    assert response.status_code == 200
    assert "swagger-ui" in response.text


# -- CORS -----------------------------------------------------------------------------------


def preflight(
    service: Service,
    origin: str,
    method: str = "POST",
    headers: str = "authorization,content-type",
) -> httpx.Response:
    return httpx.options(
        f"{service.url}/sessions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def test_cors_is_off_by_default(shared_service: Service) -> None:
    response = preflight(shared_service, "https://elsewhere.example")
    plain = shared_service.client().get("/me", headers={"Origin": "https://elsewhere.example"})

    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in plain.headers


def test_cors_lets_only_the_configured_origins_in(start_service: Callable[..., Service]) -> None:
    service = start_service(app_options={"cors_origins": ["https://chat.example"]})

    allowed = preflight(service, "https://chat.example")
    refused = preflight(service, "https://elsewhere.example")

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://chat.example"
    assert "access-control-allow-origin" not in refused.headers


def test_cors_lets_a_page_put_state_and_send_idempotency_keys(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(app_options={"cors_origins": ["https://chat.example"]})

    put = preflight(service, "https://chat.example", method="PUT")
    keyed = preflight(
        service, "https://chat.example", headers="authorization,content-type,idempotency-key"
    )

    assert (put.status_code, keyed.status_code) == (200, 200)
    assert "PUT" in put.headers["access-control-allow-methods"]
    assert "idempotency-key" in keyed.headers["access-control-allow-headers"].lower()


# -- shutdown -------------------------------------------------------------------------------


def stored_session(root: Path, session_id: str) -> ChatSession | None:
    async def read() -> ChatSession | None:
        store = FileStore(root / "store")
        await store.initialize()
        try:
            return await store.get_session(session_id)
        finally:
            await store.close()

    return asyncio.run(read())


def test_shutdown_lets_a_turn_in_flight_finish_then_closes_the_manager(tmp_path: Path) -> None:
    with running_service(tmp_path, offline_delay=0.2, graceful_seconds=10) as service:
        client = service.client()
        session_id = client.post("/sessions", json={"name": "Chat"}).json()["id"]
        with client.stream(
            "POST", f"/sessions/{session_id}/messages:stream", json={"content": "Hello"}
        ) as response:
            events = sse_events(response.iter_lines())
            next(events)
            service.server.should_exit = True
            rest = [event for _, event in events]
        manager = service.manager

    assert isinstance(rest[-1], Done)
    stored = stored_session(tmp_path, session_id)
    assert stored is not None
    assert [item.type for item in stored.history] == ["message", "message"]
    with pytest.raises(UsageError, match="closed"):
        asyncio.run(manager.get_session(session_id))


def test_shutdown_past_its_grace_cancels_the_turn_and_stores_nothing(tmp_path: Path) -> None:
    with running_service(tmp_path, offline_delay=0.5, graceful_seconds=0.3) as service:
        client = service.client()
        session_id = client.post("/sessions", json={"name": "Chat"}).json()["id"]
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream(
                "POST", f"/sessions/{session_id}/messages:stream", json={"content": "Hello"}
            ) as response,
        ):
            events = sse_events(response.iter_lines())
            next(events)
            service.server.should_exit = True
            list(events)

    stored = stored_session(tmp_path, session_id)
    assert stored is not None
    assert (stored.revision, stored.history) == (0, [])
