"""A client that goes away mid-turn cancels the turn, and nothing of it is stored."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from chatruntime import TextDelta
from conftest import Service, sse_events

# Each word of an offline reply comes this long after the last: a turn takes about two seconds.
WORD_SECONDS = 0.3


@pytest.fixture
def slow(start_service: Callable[..., Service]) -> Service:
    return start_service(offline_delay=WORD_SECONDS)


def new_session(client: httpx.Client) -> str:
    return str(client.post("/sessions", json={"name": "Chat"}).json()["id"])


def stored_state(service: Service, session_id: str) -> tuple[int, int, int]:
    session = service.call(lambda: service.store.get_session(session_id))
    assert session is not None
    return session.revision, len(session.history), session.context.total_turns


def test_a_client_leaving_a_stream_cancels_the_turn_and_nothing_is_stored(slow: Service) -> None:
    client = slow.client()
    session_id = new_session(client)

    with client.stream(
        "POST", f"/sessions/{session_id}/messages:stream", json={"content": "Hello"}
    ) as response:
        first = next(event for _, event in sse_events(response.iter_lines()))
    # Leaving the block closed the connection with the reply half sent.

    assert isinstance(first, TextDelta)
    slow.wait_for(
        lambda: slow.metric("chatruntime_turns_total", mode="stream", outcome="disconnected") == 1
    )
    assert slow.metric("chatruntime_turns_in_flight") == 0
    assert slow.metric("chatruntime_turns_total", mode="stream", outcome="ok") == 0
    assert stored_state(slow, session_id) == (0, 0, 0)


def test_the_session_takes_turns_again_after_a_client_left(slow: Service) -> None:
    client = slow.client()
    session_id = new_session(client)
    with client.stream(
        "POST", f"/sessions/{session_id}/messages:stream", json={"content": "Lost"}
    ) as response:
        next(sse_events(response.iter_lines()))

    reply = client.post(f"/sessions/{session_id}/messages", json={"content": "Kept"})

    # "turn 1": the model saw no trace of the abandoned message.
    assert reply.json()["content"] == "[offline] You said: Kept (turn 1)"
    assert stored_state(slow, session_id) == (1, 2, 1)


def test_a_client_leaving_before_a_sent_reply_cancels_the_turn(slow: Service) -> None:
    client = slow.client()
    session_id = new_session(client)

    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"/sessions/{session_id}/messages",
            json={"content": "Hello"},
            timeout=httpx.Timeout(30, read=WORD_SECONDS),
        )

    slow.wait_for(
        lambda: slow.metric("chatruntime_turns_total", mode="send", outcome="disconnected") == 1
    )
    assert slow.metric("chatruntime_turns_in_flight") == 0
    assert stored_state(slow, session_id) == (0, 0, 0)


def test_a_client_leaving_before_the_first_event_cancels_the_turn(slow: Service) -> None:
    client = slow.client()
    session_id = new_session(client)

    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"/sessions/{session_id}/messages:stream",
            json={"content": "Hello"},
            timeout=httpx.Timeout(30, read=WORD_SECONDS / 3),
        )

    slow.wait_for(
        lambda: slow.metric("chatruntime_turns_total", mode="stream", outcome="disconnected") == 1
    )
    assert stored_state(slow, session_id) == (0, 0, 0)
