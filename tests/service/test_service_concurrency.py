"""Many clients at once: every streamed turn completes, is stored, and stays its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from chatruntime import STREAM_EVENT_ADAPTER, Done, StreamEvent, TextDelta
from conftest import Service

pytestmark = pytest.mark.anyio

CLIENTS = 200


async def test_200_concurrent_streaming_clients_all_complete_unmixed(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(offline_delay=0.02)
    # Connections idle between the phases expire before the server's keep-alive timeout (5 s)
    # closes them, so no request is sent on a connection the server is closing.
    limits = httpx.Limits(
        max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=1
    )
    session_ids: list[str] = [""] * CLIENTS
    events: list[list[StreamEvent]] = [[] for _ in range(CLIENTS)]
    stored: list[list[dict[str, Any]]] = [[] for _ in range(CLIENTS)]
    streaming = 0
    everyone_streaming = anyio.Event()

    async with service.async_client(limits=limits) as client:

        async def create(n: int) -> None:
            response = await client.post("/sessions", json={"name": f"Client {n}"})
            session_ids[n] = response.json()["id"]

        async def chat(n: int) -> None:
            nonlocal streaming
            async with client.stream(
                "POST",
                f"/sessions/{session_ids[n]}/messages:stream",
                json={"content": f"client {n} says hello"},
            ) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    events[n].append(STREAM_EVENT_ADAPTER.validate_json(line[len("data: ") :]))
                    if len(events[n]) == 1:
                        # Nobody reads further until every client is mid-stream: all the
                        # streams are open at the same time.
                        streaming += 1
                        if streaming == CLIENTS:
                            everyone_streaming.set()
                        await everyone_streaming.wait()

        async def read_back(n: int) -> None:
            response = await client.get(f"/sessions/{session_ids[n]}/messages")
            stored[n] = response.json()

        with anyio.fail_after(120):
            for phase in (create, chat, read_back):
                async with anyio.create_task_group() as group:
                    for n in range(CLIENTS):
                        group.start_soon(phase, n)

    for n in range(CLIENTS):
        expected = f"[offline] You said: client {n} says hello (turn 1)"
        done = events[n][-1]
        assert isinstance(done, Done)
        assert done.message.content == expected
        assert "".join(e.text for e in events[n] if isinstance(e, TextDelta)) == expected
        assert [(item["role"], item["type"]) for item in stored[n]] == [
            ("user", "message"),
            ("assistant", "message"),
        ]
        assert stored[n][0]["content"] == f"client {n} says hello"
        assert stored[n][1]["content"][0]["text"] == expected
    assert service.metric("chatruntime_turns_total", mode="stream", outcome="ok") == CLIENTS
