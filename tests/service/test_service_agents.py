"""Agents over HTTP: an admin creates, lists, reads, changes and deletes them."""

from __future__ import annotations

import httpx

from conftest import Service, error_body

UNKNOWN_AGENT = "00000000-0000-4000-8000-000000000000"


def test_an_admin_creates_an_agent_and_gets_its_spec(service: Service, admin: httpx.Client) -> None:
    response = admin.post(
        "/agents",
        json={
            "name": "Poet",
            "instructions": "Answer in verse.",
            "model": "gpt-test",
            "modelSettings": {"temperature": 0.5},
        },
    )

    assert response.status_code == 201
    spec = response.json()
    assert {key: spec[key] for key in ("name", "instructions", "model", "tools", "handoffs")} == {
        "name": "Poet",
        "instructions": "Answer in verse.",
        "model": "gpt-test",
        "tools": [],
        "handoffs": [],
    }
    assert spec["modelSettings"]["temperature"] == 0.5
    stored = service.call(lambda: service.agents.get_agent(spec["id"])).unwrap()
    assert stored.name == "Poet"


def test_an_admin_lists_agents_oldest_first(service: Service, admin: httpx.Client) -> None:
    admin.post("/agents", json={"name": "Second"})

    listed = admin.get("/agents")

    assert listed.status_code == 200
    assert [agent["name"] for agent in listed.json()] == ["Assistant", "Second"]


def test_an_admin_reads_one_agent(service: Service, admin: httpx.Client) -> None:
    response = admin.get(f"/agents/{service.default_agent_id}")

    assert response.status_code == 200
    assert response.json()["name"] == "Assistant"


def test_an_admin_changes_only_the_fields_given(admin: httpx.Client) -> None:
    agent = admin.post("/agents", json={"name": "Poet", "instructions": "Verse."}).json()

    response = admin.patch(f"/agents/{agent['id']}", json={"name": "Bard"})

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["instructions"]) == ("Bard", "Verse.")
    assert admin.get(f"/agents/{agent['id']}").json()["name"] == "Bard"


def test_an_admin_deletes_an_agent(admin: httpx.Client) -> None:
    agent = admin.post("/agents", json={"name": "Doomed"}).json()

    deleted = admin.delete(f"/agents/{agent['id']}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert admin.get(f"/agents/{agent['id']}").status_code == 404


def test_an_unknown_agent_answers_404_agent_not_found(admin: httpx.Client) -> None:
    for response in (
        admin.get(f"/agents/{UNKNOWN_AGENT}"),
        admin.patch(f"/agents/{UNKNOWN_AGENT}", json={"name": "X"}),
        admin.delete(f"/agents/{UNKNOWN_AGENT}"),
    ):
        assert response.status_code == 404
        assert error_body(response) == {
            "code": "AGENT_NOT_FOUND",
            "message": f"no agent has id {UNKNOWN_AGENT}",
            "details": {"agent_id": UNKNOWN_AGENT},
        }


def test_settings_out_of_range_answer_422_validation_error(admin: httpx.Client) -> None:
    response = admin.post("/agents", json={"name": "Hot", "modelSettings": {"temperature": 3}})

    assert response.status_code == 422
    body = error_body(response)
    assert body["code"] == "VALIDATION_ERROR"
    assert "temperature" in body["message"]


def test_an_unknown_tool_answers_422_validation_error(admin: httpx.Client) -> None:
    response = admin.post("/agents", json={"name": "Tooled", "tools": ["no_such_tool"]})

    assert response.status_code == 422
    assert error_body(response)["code"] == "VALIDATION_ERROR"


def test_a_malformed_agent_id_answers_422_validation_error(admin: httpx.Client) -> None:
    response = admin.get("/agents/not-a-uuid")

    assert response.status_code == 422
    assert error_body(response)["details"]["field"] == "agent_id"
