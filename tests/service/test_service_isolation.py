"""Two users of one service: neither sees, changes nor learns of the other's sessions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import Service, error_body

UNKNOWN = "00000000-0000-4000-8000-000000000000"

REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/sessions/{id}", None),
    ("PATCH", "/sessions/{id}", {"name": "Taken over"}),
    ("DELETE", "/sessions/{id}", None),
    ("GET", "/sessions/{id}/messages", None),
    ("POST", "/sessions/{id}/messages", {"content": "Hello"}),
    ("POST", "/sessions/{id}/messages:stream", {"content": "Hello"}),
    ("POST", "/sessions/{id}/refresh", None),
    ("POST", "/sessions/{id}/checkpoints", {"label": "Taken"}),
    ("GET", "/sessions/{id}/checkpoints", None),
    ("GET", "/sessions/{id}/checkpoints/{cid}", None),
    ("GET", "/sessions/{id}/checkpoints/{cid}/history", None),
    ("DELETE", "/sessions/{id}/checkpoints/{cid}", None),
    ("POST", "/sessions/{id}/checkpoints/{cid}/restore", None),
    ("POST", "/sessions/{id}/fork", {}),
    ("POST", "/sessions/{id}/fork", {"checkpointId": "{cid}"}),
    ("GET", "/sessions/{id}/state", None),
    ("PUT", "/sessions/{id}/state", {"state": {"taken": {}}}),
]


def filled(value: Any, session_id: str, checkpoint_id: str) -> Any:
    """``value`` (a path or a body) naming the session and checkpoint."""
    if isinstance(value, str):
        return value.format(id=session_id, cid=checkpoint_id)
    if isinstance(value, dict):
        return {name: filled(item, session_id, checkpoint_id) for name, item in value.items()}
    return value


@pytest.fixture
def alices_session(alice: httpx.Client) -> str:
    session_id = str(alice.post("/sessions", json={"name": "Alice's"}).json()["id"])
    alice.post(f"/sessions/{session_id}/messages", json={"content": "private"})
    alice.put(f"/sessions/{session_id}/state", json={"state": {"secret": {"a": 1}}})
    return session_id


@pytest.fixture
def alices_checkpoint(alice: httpx.Client, alices_session: str) -> str:
    saved = alice.post(f"/sessions/{alices_session}/checkpoints", json={"label": "Alice's"})
    return str(saved.json()["id"])


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS, ids=lambda v: str(v))
def test_another_users_session_answers_exactly_as_an_unknown_one(
    service: Service,
    alice: httpx.Client,
    bob: httpx.Client,
    alices_session: str,
    alices_checkpoint: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    before = alice.get(f"/sessions/{alices_session}").json()
    checkpoints = alice.get(f"/sessions/{alices_session}/checkpoints").json()
    sessions = alice.get("/sessions").json()

    foreign = bob.request(
        method,
        filled(path, alices_session, alices_checkpoint),
        json=filled(body, alices_session, alices_checkpoint),
    )
    unknown = bob.request(
        method,
        filled(path, UNKNOWN, alices_checkpoint),
        json=filled(body, UNKNOWN, alices_checkpoint),
    )

    assert foreign.status_code == unknown.status_code == 404
    assert error_body(foreign) == {
        "code": "SESSION_NOT_FOUND",
        "message": f"no session has id {alices_session}",
        "details": {"session_id": alices_session},
    }
    # Word for word the same, but for the id each names.
    assert foreign.text.replace(alices_session, UNKNOWN) == unknown.text
    assert set(foreign.headers) - {"x-request-id", "date"} == set(unknown.headers) - {
        "x-request-id",
        "date",
    }
    assert alice.get(f"/sessions/{alices_session}").json() == before
    assert alice.get(f"/sessions/{alices_session}/checkpoints").json() == checkpoints
    assert alice.get("/sessions").json() == sessions
    assert bob.get("/sessions").json()["sessions"] == []


def test_each_user_lists_only_their_own_sessions(alice: httpx.Client, bob: httpx.Client) -> None:
    for n in range(3):
        alice.post("/sessions", json={"name": f"Alice {n}"})
    bob.post("/sessions", json={"name": "Bob 0"})

    alices = alice.get("/sessions").json()["sessions"]
    bobs = bob.get("/sessions").json()["sessions"]

    assert [s["name"] for s in alices] == ["Alice 2", "Alice 1", "Alice 0"]
    assert [s["name"] for s in bobs] == ["Bob 0"]
    assert {s["userId"] for s in alices} == {"alice"}


def test_a_session_created_by_a_user_is_theirs_whatever_the_body_says(
    alice: httpx.Client,
) -> None:
    response = alice.post("/sessions", json={"name": "Mine", "userId": "bob"})

    assert response.status_code == 422
    assert error_body(response)["details"]["errors"][0]["location"] == "body.userId"


def test_a_session_with_no_user_is_nobodys_over_http(service: Service, alice: httpx.Client) -> None:
    agent_id = service.default_agent_id
    ownerless = service.call(lambda: service.manager.create_session(agent_id, "REPL")).unwrap()

    response = alice.get(f"/sessions/{ownerless.id}")

    assert response.status_code == 404
    assert alice.get("/sessions").json()["sessions"] == []
