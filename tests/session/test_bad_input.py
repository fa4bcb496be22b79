"""Every bad input gets its own error code, a message a person can act on, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime import ErrorCode
from chatruntime.models import new_id
from chatruntime.stores import load_all
from support.managers import Harness, open_harness

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "file"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(str(request.param), tmp_path, request) as harness:
        yield harness


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name must not be empty or only whitespace"),
        (" \t\n", "name must not be empty or only whitespace"),
        ("x" * 101, "name is 101 characters long; the limit is 100"),
        (42, "name must be a string, got int"),
    ],
)
async def test_bad_names_are_refused(h: Harness, name: Any, message: str) -> None:
    result = await h.manager.create_session(h.agent.id, name)
    assert result.error is not None
    assert (result.error.code, result.error.message) == (ErrorCode.VALIDATION_ERROR, message)
    assert (await load_all(h.store)).sessions == []


async def test_hundred_character_name_is_fine(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "x" * 100)).unwrap()
    assert session.name == "x" * 100


@pytest.mark.parametrize(
    "bad_id", ["", "not-a-uuid", "../../etc/passwd", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/../x"]
)
async def test_ids_that_are_not_uuids_are_refused_everywhere(h: Harness, bad_id: str) -> None:
    session = (await h.manager.create_session(h.agent.id, "Keep me")).unwrap()
    before = await h.store.get_session(session.id)
    results = [
        await h.manager.create_session(bad_id, "Chat"),
        await h.manager.get_session(bad_id),
        await h.manager.update_session(bad_id, name="x"),
        await h.manager.delete_session(bad_id),
        await h.manager.get_recent_messages(bad_id),
        await h.manager.list_sessions(agent_id=bad_id),
    ]
    for result in results:
        assert result.error is not None
        assert result.error.code is ErrorCode.VALIDATION_ERROR
        assert "must be a lowercase UUID" in result.error.message
    assert await h.store.get_session(session.id) == before


async def test_unknown_ids(h: Harness) -> None:
    unknown = new_id()
    assert_code(await h.manager.get_session(unknown), ErrorCode.SESSION_NOT_FOUND)
    assert_code(await h.manager.update_session(unknown, name="x"), ErrorCode.SESSION_NOT_FOUND)
    assert_code(await h.manager.delete_session(unknown), ErrorCode.SESSION_NOT_FOUND)
    assert_code(await h.manager.get_recent_messages(unknown), ErrorCode.SESSION_NOT_FOUND)
    assert_code(await h.manager.create_session(unknown, "Chat"), ErrorCode.AGENT_NOT_FOUND)


async def test_a_session_for_a_deleted_agent_is_refused(h: Harness) -> None:
    (await h.agents.delete_agent(h.agent.id)).unwrap()
    result = await h.manager.create_session(h.agent.id, "Chat")
    assert_code(result, ErrorCode.AGENT_NOT_FOUND)
    assert result.error is not None
    assert result.error.message == f"no agent has id {h.agent.id}; create it first"


@pytest.mark.parametrize("status", ["archived", "ACTIVE", "", None])
async def test_unknown_statuses_are_refused(h: Harness, status: Any) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    result = await h.manager.update_session(session.id, status=status)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.message == (
        f"status must be one of active, paused, completed; got {status!r}"
    )
    assert await h.store.get_session(session.id) == session


async def test_bad_rename_changes_nothing(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    assert_code(await h.manager.update_session(session.id, name=""), ErrorCode.VALIDATION_ERROR)
    assert await h.store.get_session(session.id) == session


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_id": ""}, "user_id must be a non-empty string of at most 256 printable characters"),
        ({"metadata": {"k": object()}}, "metadata must be JSON-serialisable"),
        ({"metadata": {1: "v"}}, "metadata must be a dict with string keys"),
        ({"metadata": ["k"]}, "metadata must be a dict with string keys"),
    ],
)
async def test_bad_user_and_metadata(h: Harness, kwargs: dict[str, Any], message: str) -> None:
    result = await h.manager.create_session(h.agent.id, "Chat", **kwargs)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.message.startswith(message)
    assert (await load_all(h.store)).sessions == []


async def test_clearing_metadata_with_none_is_refused_and_changes_nothing(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat", metadata={"k": 1})).unwrap()
    result = await h.manager.update_session(session.id, metadata=None)  # type: ignore[arg-type]
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        ErrorCode.VALIDATION_ERROR,
        "metadata must be a dict with string keys; pass {} to clear it",
    )
    assert await h.store.get_session(session.id) == session


@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.5, True])
async def test_bad_recent_limits(h: Harness, limit: Any) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    assert_code(await h.manager.get_recent_messages(session.id, limit), ErrorCode.VALIDATION_ERROR)


def assert_code(result: Any, code: ErrorCode) -> None:
    assert result.error is not None, result
    assert result.error.code is code, result.error
