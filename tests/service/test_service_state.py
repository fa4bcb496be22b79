"""A session's saved state modules over HTTP, and refreshing its expiry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from chatruntime import StateModule
from conftest import ALICE_KEY, Service, error_body

TTL_SECONDS = 60
START_MS = 1_900_000_000_000


class Memory(StateModule):
    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.register_state("notes")


class Assistant(StateModule):
    def __init__(self) -> None:
        super().__init__()
        self.mood = "calm"
        self.register_state("mood")
        self.memory = Memory()


def new_session(client: httpx.Client) -> str:
    response = client.post("/sessions", json={"name": "Stateful"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def put_state(client: httpx.Client, session_id: str, state: dict[str, Any]) -> httpx.Response:
    return client.put(f"/sessions/{session_id}/state", json={"state": state})


# -- state ----------------------------------------------------------------------------------


def test_a_session_without_saved_state_answers_an_empty_state(alice: httpx.Client) -> None:
    response = alice.get(f"/sessions/{new_session(alice)}/state")

    assert response.status_code == 200
    assert response.json() == {"state": {}}


def test_state_put_over_http_is_read_back_and_loads_into_modules(
    service: Service, alice: httpx.Client
) -> None:
    session_id = new_session(alice)
    state = {"assistant": {"mood": "cheerful", "memory": {"notes": ["likes tea"]}}}
    before = alice.get(f"/sessions/{session_id}").json()["revision"]

    response = put_state(alice, session_id, state)

    assert response.status_code == 200
    assert response.json() == {"state": state}
    assert alice.get(f"/sessions/{session_id}/state").json() == {"state": state}
    assert alice.get(f"/sessions/{session_id}").json()["revision"] == before + 1
    assistant = Assistant()
    loaded = service.call(
        lambda: service.manager.load_session_state(session_id, "alice", assistant=assistant)
    )
    assert loaded.unwrap() == ["assistant"]
    assert (assistant.mood, assistant.memory.notes) == ("cheerful", ["likes tea"])


def test_state_saved_in_python_is_read_over_http(service: Service, alice: httpx.Client) -> None:
    session_id = new_session(alice)
    assistant = Assistant()
    assistant.memory.notes.append("from python")

    saved = service.call(
        lambda: service.manager.save_session_state(session_id, "alice", assistant=assistant)
    )

    assert saved.success
    assert alice.get(f"/sessions/{session_id}/state").json() == {
        "state": {"assistant": {"mood": "calm", "memory": {"notes": ["from python"]}}}
    }


def test_a_put_replaces_the_whole_state(alice: httpx.Client) -> None:
    session_id = new_session(alice)
    put_state(alice, session_id, {"first": {"a": 1}, "second": {"b": 2}})

    put_state(alice, session_id, {"second": {"b": 3}})

    assert alice.get(f"/sessions/{session_id}/state").json() == {"state": {"second": {"b": 3}}}


def test_state_is_kept_by_checkpoints_brought_back_by_restore_and_copied_by_fork(
    alice: httpx.Client,
) -> None:
    session_id = new_session(alice)
    put_state(alice, session_id, {"assistant": {"mood": "calm"}})
    saved = alice.post(f"/sessions/{session_id}/checkpoints", json={"label": "calm"}).json()
    put_state(alice, session_id, {"assistant": {"mood": "grumpy"}})

    fork = alice.post(f"/sessions/{session_id}/fork", json={"checkpointId": saved["id"]}).json()
    restored = alice.post(f"/sessions/{session_id}/checkpoints/{saved['id']}/restore")

    assert saved["header"]["state"] == {"assistant": {"mood": "calm"}}
    assert fork["state"] == {"assistant": {"mood": "calm"}}
    assert restored.json()["state"] == {"assistant": {"mood": "calm"}}
    assert alice.get(f"/sessions/{session_id}/state").json() == {
        "state": {"assistant": {"mood": "calm"}}
    }


def test_an_empty_state_clears_the_saved_one(alice: httpx.Client) -> None:
    session_id = new_session(alice)
    put_state(alice, session_id, {"kept": {"a": 1}})

    response = put_state(alice, session_id, {})

    assert response.status_code == 200
    assert response.json() == {"state": {}}
    assert alice.get(f"/sessions/{session_id}/state").json() == {"state": {}}


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"state": {"assistant": 3}}, "body.state.assistant"),
        ({"state": ["assistant"]}, "body.state"),
        ({}, "body.state"),
        ({"state": {}, "revision": 1}, "body.revision"),
    ],
)
def test_a_malformed_state_answers_422_naming_where(
    alice: httpx.Client, body: dict[str, Any], location: str
) -> None:
    response = alice.put(f"/sessions/{new_session(alice)}/state", json=body)

    assert response.status_code == 422
    failure = error_body(response)
    assert failure["code"] == "VALIDATION_ERROR"
    assert [problem["location"] for problem in failure["details"]["errors"]] == [location]


def test_state_too_deep_to_store_answers_422_and_nothing_is_written(alice: httpx.Client) -> None:
    session_id = new_session(alice)
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"inner": deep}

    response = put_state(alice, session_id, {"deep": deep})

    assert response.status_code == 422
    assert error_body(response)["details"]["field"] == "state"
    assert alice.get(f"/sessions/{session_id}/state").json() == {"state": {}}


# -- refresh and expiry ---------------------------------------------------------------------


class FakeClock:
    """The manager's clock, moved by the test: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def expiring(start_service: Callable[..., Service]) -> tuple[Service, FakeClock]:
    clock = FakeClock()
    service = start_service(manager_options={"ttl": TTL_SECONDS, "clock": clock})
    return service, clock


def test_refresh_moves_the_expiry_and_answers_the_header(
    expiring: tuple[Service, FakeClock],
) -> None:
    service, clock = expiring
    alice = service.client(ALICE_KEY)
    session_id = new_session(alice)
    assert alice.get(f"/sessions/{session_id}").json()["expiresAt"] == START_MS + 60_000
    clock.now += 30_000

    response = alice.post(f"/sessions/{session_id}/refresh")

    assert response.status_code == 200
    header = response.json()
    assert "history" not in header
    assert (header["id"], header["expiresAt"]) == (session_id, START_MS + 90_000)


def test_an_expired_session_answers_410_to_its_new_routes(
    expiring: tuple[Service, FakeClock],
) -> None:
    service, clock = expiring
    alice = service.client(ALICE_KEY)
    session_id = new_session(alice)
    saved = alice.post(f"/sessions/{session_id}/checkpoints", json={}).json()
    clock.now += 60_001

    answers = [
        alice.post(f"/sessions/{session_id}/refresh"),
        alice.post(f"/sessions/{session_id}/checkpoints", json={}),
        alice.get(f"/sessions/{session_id}/checkpoints"),
        alice.post(f"/sessions/{session_id}/checkpoints/{saved['id']}/restore"),
        alice.post(f"/sessions/{session_id}/fork", json={}),
        alice.get(f"/sessions/{session_id}/state"),
        put_state(alice, session_id, {"m": {}}),
    ]

    assert [answer.status_code for answer in answers] == [410] * len(answers)
    assert {error_body(answer)["code"] for answer in answers} == {"SESSION_EXPIRED"}
