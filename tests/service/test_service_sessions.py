"""Sessions over HTTP: create, list page by page, read, change, delete, recent messages."""

from __future__ import annotations

import httpx
import pytest

from conftest import ADMIN_KEY, Service, error_body

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def create(client: httpx.Client, name: str = "Chat", **fields: object) -> dict[str, object]:
    response = client.post("/sessions", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_session_is_created_for_the_caller_with_the_default_agent(
    service: Service, alice: httpx.Client
) -> None:
    response = alice.post("/sessions", json={"name": "First chat", "metadata": {"topic": "x"}})

    assert response.status_code == 201
    session = response.json()
    assert (session["name"], session["userId"], session["agentId"]) == (
        "First chat",
        "alice",
        service.default_agent_id,
    )
    assert (session["status"], session["metadata"], session["history"]) == (
        "active",
        {"topic": "x"},
        [],
    )
    stored = service.call(lambda: service.store.get_session(session["id"]))
    assert stored is not None
    assert stored.user_id == "alice"


def test_a_session_may_name_its_agent(service: Service, alice: httpx.Client) -> None:
    other = service.client(ADMIN_KEY).post("/agents", json={"name": "Other"}).json()

    session = create(alice, agentId=other["id"])

    assert session["agentId"] == other["id"]


def test_a_session_with_an_unknown_agent_answers_404(alice: httpx.Client) -> None:
    response = alice.post("/sessions", json={"name": "Chat", "agentId": UNKNOWN})

    assert response.status_code == 404
    assert error_body(response) == {
        "code": "AGENT_NOT_FOUND",
        "message": f"no agent has id {UNKNOWN}; create it first",
        "details": {"agent_id": UNKNOWN},
    }


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({}, "body.name"),
        ({"name": "x", "color": "red"}, "body.color"),
        ({"name": 7}, "body.name"),
        ({"name": "x", "metadata": []}, "body.metadata"),
    ],
)
def test_a_malformed_body_answers_422_naming_the_field(
    alice: httpx.Client, body: dict[str, object], location: str
) -> None:
    response = alice.post("/sessions", json=body)

    assert response.status_code == 422
    error = error_body(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert [problem["location"] for problem in error["details"]["errors"]] == [location]


def test_a_blank_name_answers_422_from_the_manager(alice: httpx.Client) -> None:
    response = alice.post("/sessions", json={"name": "   "})

    assert response.status_code == 422
    assert error_body(response) == {
        "code": "VALIDATION_ERROR",
        "message": "name must not be empty or only whitespace",
        "details": {"field": "name"},
    }


def test_a_body_that_is_not_json_answers_422(alice: httpx.Client) -> None:
    response = alice.post(
        "/sessions", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert error_body(response)["code"] == "VALIDATION_ERROR"


def test_the_listing_pages_through_the_callers_sessions_newest_first(alice: httpx.Client) -> None:
    names = [create(alice, f"Chat {n}")["name"] for n in range(5)]

    first = alice.get("/sessions", params={"limit": 2}).json()
    second = alice.get("/sessions", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    third = alice.get("/sessions", params={"limit": 2, "cursor": second["next_cursor"]}).json()

    listed = [s["name"] for page in (first, second, third) for s in page["sessions"]]
    assert listed == names[::-1]
    assert third["next_cursor"] is None
    assert all("history" not in s for s in first["sessions"])


def test_the_listing_filters_by_status_and_agent(service: Service, alice: httpx.Client) -> None:
    other = service.client(ADMIN_KEY).post("/agents", json={"name": "Other"}).json()
    paused = create(alice, "Paused")
    alice.patch(f"/sessions/{paused['id']}", json={"status": "paused"})
    create(alice, "Active")
    with_other = create(alice, "With other", agentId=other["id"])

    by_status = alice.get("/sessions", params={"status": "paused"}).json()
    by_agent = alice.get("/sessions", params={"agent_id": other["id"]}).json()

    assert [s["name"] for s in by_status["sessions"]] == ["Paused"]
    assert [s["id"] for s in by_agent["sessions"]] == [with_other["id"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"agent_id": "nope"}, "agent_id"),
    ],
)
def test_bad_listing_arguments_answer_422(
    alice: httpx.Client, params: dict[str, object], field: str
) -> None:
    response = alice.get("/sessions", params=params)

    assert response.status_code == 422
    error = error_body(response)
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["field"] == field


@pytest.mark.parametrize("params", [{"limit": "many"}, {"status": "sleeping"}])
def test_listing_arguments_of_the_wrong_type_answer_422(
    alice: httpx.Client, params: dict[str, object]
) -> None:
    response = alice.get("/sessions", params=params)

    assert response.status_code == 422
    assert error_body(response)["code"] == "VALIDATION_ERROR"


def test_a_session_is_read_with_its_history(alice: httpx.Client) -> None:
    session = create(alice)
    alice.post(f"/sessions/{session['id']}/messages", json={"content": "Hello"})

    response = alice.get(f"/sessions/{session['id']}")

    assert response.status_code == 200
    history = response.json()["history"]
    assert [(item["role"], item["type"]) for item in history] == [
        ("user", "message"),
        ("assistant", "message"),
    ]
    assert history[0]["content"] == "Hello"


def test_an_unknown_session_answers_404_session_not_found(alice: httpx.Client) -> None:
    response = alice.get(f"/sessions/{UNKNOWN}")

    assert response.status_code == 404
    assert error_body(response) == {
        "code": "SESSION_NOT_FOUND",
        "message": f"no session has id {UNKNOWN}",
        "details": {"session_id": UNKNOWN},
    }


def test_a_malformed_session_id_answers_422(alice: httpx.Client) -> None:
    response = alice.get("/sessions/not-a-uuid")

    assert response.status_code == 422
    assert error_body(response)["details"]["field"] == "session_id"


def test_patch_changes_only_the_fields_given(alice: httpx.Client) -> None:
    session = create(alice, "Before", metadata={"a": 1})

    renamed = alice.patch(f"/sessions/{session['id']}", json={"name": "After"})
    paused = alice.patch(f"/sessions/{session['id']}", json={"status": "paused"})
    retagged = alice.patch(f"/sessions/{session['id']}", json={"metadata": {"b": 2}})

    assert renamed.status_code == paused.status_code == retagged.status_code == 200
    final = retagged.json()
    assert (final["name"], final["status"], final["metadata"], final["revision"]) == (
        "After",
        "paused",
        {"b": 2},
        3,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metadata": None}, "metadata must be a dict with string keys; pass {} to clear it"),
        ({"name": ""}, "name must not be empty or only whitespace"),
    ],
)
def test_a_bad_patch_answers_422_and_changes_nothing(
    alice: httpx.Client, body: dict[str, object], message: str
) -> None:
    session = create(alice, metadata={"a": 1})

    response = alice.patch(f"/sessions/{session['id']}", json=body)

    assert response.status_code == 422
    assert error_body(response)["message"] == message
    unchanged = alice.get(f"/sessions/{session['id']}").json()
    assert (unchanged["revision"], unchanged["metadata"]) == (0, {"a": 1})


def test_a_deleted_session_is_gone(service: Service, alice: httpx.Client) -> None:
    session = create(alice)

    deleted = alice.delete(f"/sessions/{session['id']}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert alice.get(f"/sessions/{session['id']}").status_code == 404
    assert service.call(lambda: service.store.get_session(str(session["id"]))) is None
    assert alice.delete(f"/sessions/{session['id']}").status_code == 404


def test_recent_messages_are_the_last_items_oldest_first(alice: httpx.Client) -> None:
    session = create(alice)
    for text in ("one", "two", "three"):
        alice.post(f"/sessions/{session['id']}/messages", json={"content": text})

    recent = alice.get(f"/sessions/{session['id']}/messages", params={"limit": 3})

    assert recent.status_code == 200
    assert [
        (item["role"], item["content"] if item["role"] == "user" else "") for item in recent.json()
    ] == [("assistant", ""), ("user", "three"), ("assistant", "")]
    assert recent.json()[-1]["content"][0]["text"] == "[offline] You said: three (turn 3)"


def test_recent_messages_default_to_the_last_fifty(alice: httpx.Client) -> None:
    session = create(alice)
    alice.post(f"/sessions/{session['id']}/messages", json={"content": "Hello"})

    recent = alice.get(f"/sessions/{session['id']}/messages")

    assert len(recent.json()) == 2


@pytest.mark.parametrize("limit", [0, 10_001])
def test_recent_messages_with_a_bad_limit_answer_422(alice: httpx.Client, limit: int) -> None:
    session = create(alice)

    response = alice.get(f"/sessions/{session['id']}/messages", params={"limit": limit})

    assert response.status_code == 422
    assert error_body(response)["details"]["field"] == "limit"
