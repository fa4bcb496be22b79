"""Checkpoints over HTTP: save, list, read, delete, restore (and undo it), and fork."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import Service, error_body

UNKNOWN = "00000000-0000-4000-8000-000000000000"
SUMMARY_FIELDS = {"id", "sessionId", "label", "createdAt", "kind", "data", "itemCount", "header"}


def new_session(client: httpx.Client, name: str = "Chat") -> str:
    response = client.post("/sessions", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def send(client: httpx.Client, session_id: str, content: str) -> None:
    response = client.post(f"/sessions/{session_id}/messages", json={"content": content})
    assert response.status_code == 200, response.text


def save(client: httpx.Client, session_id: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/sessions/{session_id}/checkpoints", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def texts(items: list[dict[str, Any]]) -> list[str]:
    """The text of each message item (a user's is a string, a reply a list of parts)."""
    return [
        item["content"] if isinstance(item["content"], str) else item["content"][0]["text"]
        for item in items
    ]


def history(client: httpx.Client, session_id: str) -> list[str]:
    response = client.get(f"/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    return texts(response.json())


@pytest.fixture
def chat(alice: httpx.Client) -> str:
    """Alice's session with one turn."""
    session_id = new_session(alice)
    send(alice, session_id, "first")
    return session_id


# -- saving and reading ---------------------------------------------------------------------


def test_a_checkpoint_is_saved_with_its_label_and_data_and_answered_without_items(
    service: Service, alice: httpx.Client, chat: str
) -> None:
    saved = save(alice, chat, label="after hello", data={"step": 1, "tags": ["a"]})

    assert set(saved) == SUMMARY_FIELDS
    assert saved["sessionId"] == chat
    assert (saved["label"], saved["kind"], saved["data"], saved["itemCount"]) == (
        "after hello",
        "manual",
        {"step": 1, "tags": ["a"]},
        2,
    )
    assert saved["header"]["name"] == "Chat"
    assert saved["header"]["context"]["totalMessages"] == 2
    assert "history" not in saved["header"]
    stored = service.call(lambda: service.manager.get_checkpoint(chat, saved["id"])).unwrap()
    assert (stored.label, stored.created_at, stored.item_count) == (
        "after hello",
        saved["createdAt"],
        2,
    )


def test_a_checkpoint_without_a_label_or_data_is_saved_too(alice: httpx.Client, chat: str) -> None:
    saved = save(alice, chat)

    assert (saved["label"], saved["data"], saved["itemCount"]) == (None, {}, 2)


def test_checkpoints_are_listed_newest_first(alice: httpx.Client, chat: str) -> None:
    for label in ["one", "two", "three"]:
        save(alice, chat, label=label)

    response = alice.get(f"/sessions/{chat}/checkpoints")

    assert response.status_code == 200
    listed = response.json()
    assert [checkpoint["label"] for checkpoint in listed] == ["three", "two", "one"]
    assert all(set(checkpoint) == SUMMARY_FIELDS for checkpoint in listed)
    assert alice.get(f"/sessions/{new_session(alice)}/checkpoints").json() == []


def test_one_checkpoint_is_read_by_id(alice: httpx.Client, chat: str) -> None:
    saved = save(alice, chat, label="only")

    response = alice.get(f"/sessions/{chat}/checkpoints/{saved['id']}")

    assert response.status_code == 200
    assert response.json() == saved


def test_the_history_at_a_checkpoint_is_read_whole(alice: httpx.Client, chat: str) -> None:
    saved = save(alice, chat, label="one turn")
    send(alice, chat, "second")

    response = alice.get(f"/sessions/{chat}/checkpoints/{saved['id']}/history")

    assert response.status_code == 200
    assert texts(response.json()) == ["first", "[offline] You said: first (turn 1)"]
    assert len(history(alice, chat)) == 4


def test_a_deleted_checkpoint_is_gone_and_the_session_is_unchanged(
    alice: httpx.Client, chat: str
) -> None:
    kept = save(alice, chat, label="kept")
    dropped = save(alice, chat, label="dropped")
    before = alice.get(f"/sessions/{chat}").json()

    response = alice.delete(f"/sessions/{chat}/checkpoints/{dropped['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert [c["id"] for c in alice.get(f"/sessions/{chat}/checkpoints").json()] == [kept["id"]]
    assert alice.get(f"/sessions/{chat}/checkpoints/{dropped['id']}").status_code == 404
    assert alice.get(f"/sessions/{chat}").json() == before
    again = alice.delete(f"/sessions/{chat}/checkpoints/{dropped['id']}")
    assert again.status_code == 404
    assert error_body(again)["code"] == "CHECKPOINT_NOT_FOUND"


# -- restore --------------------------------------------------------------------------------


def test_restore_rewinds_the_session_and_answers_its_header(alice: httpx.Client, chat: str) -> None:
    saved = save(alice, chat, label="one turn")
    send(alice, chat, "second")
    before = alice.get(f"/sessions/{chat}").json()

    response = alice.post(f"/sessions/{chat}/checkpoints/{saved['id']}/restore")

    assert response.status_code == 200
    header = response.json()
    assert "history" not in header
    assert header["id"] == chat
    assert header["revision"] == before["revision"] + 1
    assert header["context"]["totalMessages"] == 2
    assert history(alice, chat) == ["first", "[offline] You said: first (turn 1)"]
    undo = alice.get(f"/sessions/{chat}/checkpoints").json()[0]
    assert (undo["kind"], undo["label"], undo["itemCount"], undo["data"]) == (
        "restore",
        "before restore",
        4,
        {"restoredCheckpointId": saved["id"]},
    )


def test_restoring_the_undo_point_undoes_the_restore(alice: httpx.Client, chat: str) -> None:
    saved = save(alice, chat, label="one turn")
    send(alice, chat, "second")
    everything = history(alice, chat)
    alice.post(f"/sessions/{chat}/checkpoints/{saved['id']}/restore")
    undo = alice.get(f"/sessions/{chat}/checkpoints").json()[0]

    response = alice.post(f"/sessions/{chat}/checkpoints/{undo['id']}/restore")

    assert response.status_code == 200
    assert response.json()["context"]["totalMessages"] == 4
    assert history(alice, chat) == everything


# -- fork -----------------------------------------------------------------------------------


def test_a_fork_from_a_checkpoint_is_a_new_session_of_the_caller_ending_there(
    service: Service, alice: httpx.Client, chat: str
) -> None:
    saved = save(alice, chat, label="one turn")
    send(alice, chat, "second")

    response = alice.post(f"/sessions/{chat}/fork", json={"checkpointId": saved["id"]})

    assert response.status_code == 201
    fork = response.json()
    assert fork["id"] != chat
    assert (fork["name"], fork["userId"], fork["agentId"], fork["revision"]) == (
        "Chat (fork)",
        "alice",
        service.default_agent_id,
        0,
    )
    assert texts(fork["history"]) == ["first", "[offline] You said: first (turn 1)"]
    assert history(alice, fork["id"]) == texts(fork["history"])
    assert [s["id"] for s in alice.get("/sessions").json()["sessions"]] == [fork["id"], chat]


def test_a_fork_and_its_source_go_on_independently(alice: httpx.Client, chat: str) -> None:
    fork = alice.post(f"/sessions/{chat}/fork", json={"name": "Retry"}).json()

    send(alice, fork["id"], "only in the fork")

    assert fork["name"] == "Retry"
    assert texts(fork["history"]) == ["first", "[offline] You said: first (turn 1)"]
    assert history(alice, chat) == ["first", "[offline] You said: first (turn 1)"]
    assert history(alice, fork["id"])[2:] == [
        "only in the fork",
        "[offline] You said: only in the fork (turn 2)",
    ]


def test_a_fork_with_no_body_fields_copies_the_session_as_it_is(
    alice: httpx.Client, chat: str
) -> None:
    response = alice.post(f"/sessions/{chat}/fork", json={})

    assert response.status_code == 201
    assert texts(response.json()["history"]) == history(alice, chat)


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/checkpoints/{cid}"),
        ("GET", "/checkpoints/{cid}/history"),
        ("DELETE", "/checkpoints/{cid}"),
        ("POST", "/checkpoints/{cid}/restore"),
        ("POST", "/fork"),
    ],
)
def test_an_unknown_checkpoint_answers_404_checkpoint_not_found(
    alice: httpx.Client, chat: str, method: str, path: str
) -> None:
    body = {"checkpointId": UNKNOWN} if path == "/fork" else None

    response = alice.request(method, f"/sessions/{chat}{path.format(cid=UNKNOWN)}", json=body)

    assert response.status_code == 404
    assert error_body(response) == {
        "code": "CHECKPOINT_NOT_FOUND",
        "message": f"session {chat} has no checkpoint {UNKNOWN}",
        "details": {"session_id": chat, "checkpoint_id": UNKNOWN},
    }


def test_a_checkpoint_of_another_session_is_not_found_in_this_one(
    alice: httpx.Client, chat: str
) -> None:
    other = new_session(alice, "Other")
    saved = save(alice, other, label="elsewhere")

    response = alice.post(f"/sessions/{chat}/checkpoints/{saved['id']}/restore")

    assert response.status_code == 404
    assert error_body(response)["code"] == "CHECKPOINT_NOT_FOUND"
    assert len(history(alice, chat)) == 2


def test_an_unknown_session_answers_404_session_not_found(alice: httpx.Client) -> None:
    response = alice.post(f"/sessions/{UNKNOWN}/checkpoints", json={"label": "x"})

    assert response.status_code == 404
    assert error_body(response) == {
        "code": "SESSION_NOT_FOUND",
        "message": f"no session has id {UNKNOWN}",
        "details": {"session_id": UNKNOWN},
    }


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/checkpoints", {"label": "x" * 201}, "body.label"),
        ("/checkpoints", {"data": ["not", "an", "object"]}, "body.data"),
        ("/checkpoints", {"label": "x", "items": []}, "body.items"),
        ("/fork", {"checkpointId": "x", "extra": 1}, "body.extra"),
        ("/fork", {"name": 7}, "body.name"),
    ],
)
def test_a_malformed_body_answers_422_naming_the_field(
    alice: httpx.Client, chat: str, path: str, body: dict[str, Any], location: str
) -> None:
    response = alice.post(f"/sessions/{chat}{path}", json=body)

    assert response.status_code == 422
    failure = error_body(response)
    assert failure["code"] == "VALIDATION_ERROR"
    assert [problem["location"] for problem in failure["details"]["errors"]] == [location]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/checkpoints", {"label": "   "}, "label"),
        ("POST", "/checkpoints", {"label": "two\nlines"}, "label"),
        ("GET", "/checkpoints/not-a-uuid", None, "checkpoint_id"),
        ("DELETE", "/checkpoints/not-a-uuid", None, "checkpoint_id"),
        ("POST", "/checkpoints/not-a-uuid/restore", None, "checkpoint_id"),
        ("POST", "/fork", {"checkpointId": "not-a-uuid"}, "checkpoint_id"),
        ("POST", "/fork", {"name": ""}, "name"),
    ],
)
def test_a_value_the_manager_refuses_answers_422_naming_it(
    alice: httpx.Client,
    chat: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    field: str,
) -> None:
    response = alice.request(method, f"/sessions/{chat}{path}", json=body)

    assert response.status_code == 422
    failure = error_body(response)
    assert failure["code"] == "VALIDATION_ERROR"
    assert failure["details"]["field"] == field
    assert alice.get(f"/sessions/{chat}/checkpoints").json() == []
