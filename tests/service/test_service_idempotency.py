"""Retrying a turn safely: the ``Idempotency-Key`` header of send and stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from chatruntime import Done
from conftest import ALICE_KEY, Service, error_body, sse_events


def new_session(client: httpx.Client) -> str:
    response = client.post("/sessions", json={"name": "Retried"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored_turn_keys(service: Service, session_id: str) -> tuple[int, list[str]]:
    """How many history items the session stored, and its remembered turn keys."""
    session = service.call(lambda: service.store.get_session(session_id))
    assert session is not None
    return len(session.history), [turn.key for turn in session.turn_keys]


def send(client: httpx.Client, session_id: str, content: str, key: str) -> httpx.Response:
    return client.post(
        f"/sessions/{session_id}/messages",
        json={"content": content},
        headers={"Idempotency-Key": key},
    )


def test_a_send_repeated_with_its_key_answers_the_same_reply_and_stores_one_turn(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)

    first = send(alice, session_id, "Hello", "retry-1")
    second = send(alice, session_id, "Hello", "retry-1")

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert first.json()["content"] == "[offline] You said: Hello (turn 1)"
    assert stored_turn_keys(service, session_id) == (2, ["retry-1"])


def test_a_stream_repeating_a_stored_key_streams_only_the_done_of_the_stored_reply(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)
    sent = send(alice, session_id, "Hello", "key-a").json()

    with alice.stream(
        "POST",
        f"/sessions/{session_id}/messages:stream",
        json={"content": "Hello"},
        headers={"Idempotency-Key": "key-a"},
    ) as response:
        assert response.status_code == 200
        events = [event for _, event in sse_events(response.iter_lines())]

    assert len(events) == 1
    assert isinstance(events[0], Done)
    assert events[0].message.model_dump(mode="json", by_alias=True) == sent
    assert stored_turn_keys(service, session_id) == (2, ["key-a"])


def test_a_streamed_turn_with_a_key_is_found_by_a_later_send(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)
    with alice.stream(
        "POST",
        f"/sessions/{session_id}/messages:stream",
        json={"content": "Hi"},
        headers={"Idempotency-Key": "streamed"},
    ) as response:
        events = [event for _, event in sse_events(response.iter_lines())]
    done = events[-1]
    assert isinstance(done, Done)

    retried = send(alice, session_id, "Hi", "streamed")

    assert retried.status_code == 200
    assert retried.json()["id"] == done.message.id
    assert stored_turn_keys(service, session_id) == (2, ["streamed"])


def test_different_keys_are_different_turns(service: Service, alice: httpx.Client) -> None:
    session_id = new_session(alice)

    first = send(alice, session_id, "Hello", "one").json()
    second = send(alice, session_id, "Hello", "two").json()

    assert (first["content"], second["content"]) == (
        "[offline] You said: Hello (turn 1)",
        "[offline] You said: Hello (turn 2)",
    )
    assert stored_turn_keys(service, session_id) == (4, ["one", "two"])


def test_retries_racing_the_original_get_its_reply_and_store_one_turn(
    start_service: Callable[..., Service],
) -> None:
    service = start_service(offline_delay=0.1)
    session_id = new_session(service.client(ALICE_KEY))

    async def race() -> list[httpx.Response]:
        async with service.async_client(ALICE_KEY) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post(
                            f"/sessions/{session_id}/messages",
                            json={"content": "Once"},
                            headers={"Idempotency-Key": "raced"},
                        )
                        for _ in range(4)
                    )
                )
            )

    answers = asyncio.run(race())

    assert [answer.status_code for answer in answers] == [200] * 4
    assert len({answer.text for answer in answers}) == 1
    assert stored_turn_keys(service, session_id) == (2, ["raced"])


@pytest.mark.parametrize("route", ["messages", "messages:stream"])
@pytest.mark.parametrize("key", ["k" * 201, "tab\tinside"])
def test_a_bad_key_answers_422_and_nothing_is_stored(
    service: Service, alice: httpx.Client, route: str, key: str
) -> None:
    session_id = new_session(alice)

    response = alice.post(
        f"/sessions/{session_id}/{route}",
        json={"content": "Hello"},
        headers={"Idempotency-Key": key},
    )

    assert response.status_code == 422
    failure = error_body(response)
    assert (failure["code"], failure["details"]) == (
        "VALIDATION_ERROR",
        {"field": "idempotency_key"},
    )
    assert stored_turn_keys(service, session_id) == (0, [])
