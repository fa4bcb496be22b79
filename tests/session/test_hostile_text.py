"""Text no store can keep is refused up front with VALIDATION_ERROR, the same on every store.

Lone surrogates cannot be encoded as UTF-8; NUL cannot be stored by PostgreSQL; metadata nested
deeper than every store's JSON reader can read back was once accepted and then unreadable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime import ErrorCode
from chatruntime.models import METADATA_MAX_BYTES, METADATA_MAX_DEPTH
from chatruntime.stores import load_all
from support.managers import Harness, open_harness

pytestmark = pytest.mark.anyio

LONE = "\ud800"


@pytest.fixture(params=["memory", "file", "sqlite", "postgres", "redis"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(request.param, tmp_path, request) as harness:
        yield harness


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": f"bad {LONE}"}, "name holds a lone surrogate (U+D800) at position 4"),
        ({"name": "a\x00b"}, "name holds a control character (U+0000) at position 1"),
        ({"user_id": f"u{LONE}"}, "user_id must be a non-empty string of at most 256"),
        ({"user_id": "u\x00"}, "user_id must be a non-empty string of at most 256"),
        ({"metadata": {"k": LONE}}, "metadata holds a lone surrogate (U+D800)"),
        ({"metadata": {LONE: 1}}, "metadata has a key that holds a lone surrogate"),
        (
            {"metadata": nested(METADATA_MAX_DEPTH + 1)},
            f"metadata is nested more than {METADATA_MAX_DEPTH} levels deep",
        ),
        ({"metadata": {"big": "x" * METADATA_MAX_BYTES}}, "metadata is 262,155 bytes as JSON"),
    ],
)
async def test_creating_with_unstorable_text_is_a_validation_error(
    h: Harness, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"name": "Chat", **kwargs}
    result = await h.manager.create_session(h.agent.id, **arguments)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.message.startswith(message)
    assert (await load_all(h.store)).sessions == []


async def test_metadata_at_the_depth_limit_reads_back_after_a_restart(h: Harness) -> None:
    deep = nested(METADATA_MAX_DEPTH)
    session = (await h.manager.create_session(h.agent.id, "Deep", metadata=deep)).unwrap()
    (await h.manager.refresh()).unwrap()
    again = (await h.manager.get_session(session.id)).unwrap()
    assert again.metadata == deep
    stored = await h.store.get_session(session.id)
    assert stored is not None and stored.metadata == deep


async def test_updating_with_unstorable_text_changes_nothing(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    for kwargs in ({"name": LONE}, {"metadata": {"k": LONE}}, {"metadata": nested(40)}):
        result = await h.manager.update_session(session.id, **kwargs)  # type: ignore[arg-type]
        assert result.error is not None
        assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert await h.store.get_session(session.id) == session


async def test_a_message_with_a_lone_surrogate_is_refused_before_the_model(h: Harness) -> None:
    session = (await h.manager.create_session(h.agent.id, "Chat")).unwrap()
    result = await h.manager.send_message(session.id, f"hi {LONE}")
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        ErrorCode.VALIDATION_ERROR,
        "content holds a lone surrogate (U+D800) at position 3; text must be valid Unicode",
    )
    assert await h.store.get_session(session.id) == session


@pytest.mark.parametrize("field", ["name", "instructions"])
async def test_an_agent_with_unstorable_text_is_refused(h: Harness, field: str) -> None:
    arguments = {"name": "Agent", "instructions": "Be brief.", field: f"x{LONE}"}
    result = await h.agents.create_agent(**arguments)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert f"{field} holds a lone surrogate" in result.error.message
