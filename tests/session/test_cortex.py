"""A folder written by the TypeScript original, opened by ``SessionManager`` as it is."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatruntime import AgentManager, ErrorCode, SessionManager
from chatruntime.stores import FileStore

pytestmark = pytest.mark.anyio

CORTEX = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cortex" / ".cortex"
AGENT_A = "3f1c2a9e-8b7d-4c1e-9f2a-1d2c3b4a5e6f"
AGENT_B = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PLAIN = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
WEATHER = "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"
TRIAGE = "2c3d4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f"
EMPTY = "3d4e5f6a-7b8c-4d9e-9f0a-2b3c4d5e6f7a"
TRUNCATED = "4e5f6a7b-8c9d-4e0f-8a1b-3c4d5e6f7a8b"
INVALID = "5f6a7b8c-9d0e-4f1a-9b2c-4d5e6f7a8b9c"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    if not CORTEX.is_dir():
        pytest.fail(f"the shared cortex sample folder is missing: {CORTEX}")
    copy = tmp_path / ".cortex"
    shutil.copytree(CORTEX, copy)
    return copy


@pytest.fixture
async def manager(root: Path) -> AsyncIterator[SessionManager]:
    store = FileStore(root)
    manager = SessionManager(store, AgentManager(store))
    try:
        yield manager
    finally:
        await manager.close()


def broken_bytes(root: Path) -> dict[str, bytes]:
    return {
        sid: (root / "sessions" / AGENT_B / f"{sid}.json").read_bytes()
        for sid in (TRUNCATED, INVALID)
    }


async def test_initialize_reads_nothing_and_check_reports_the_two_broken(
    manager: SessionManager, root: Path
) -> None:
    (await manager.initialize()).unwrap()
    assert (manager.cached_sessions, manager.corrupt_sessions) == (0, [])
    seen: list[tuple[int, int]] = []
    report = (await manager.check(progress=lambda done, total: seen.append((done, total)))).unwrap()
    assert seen == [(n, 6) for n in range(1, 7)]
    assert report.sessions == 4
    assert sorted(r.session_id for r in manager.corrupt_sessions) == [TRUNCATED, INVALID]
    reported = {record.session_id: record for record in report.corrupt}
    assert sorted(reported) == [TRUNCATED, INVALID]
    assert reported[TRUNCATED].location == str(root / "sessions" / AGENT_B / f"{TRUNCATED}.json")
    assert reported[INVALID].location == str(root / "sessions" / AGENT_B / f"{INVALID}.json")
    assert "JSON" in reported[TRUNCATED].reason
    for field in ("name", "status", "extra"):
        assert field in reported[INVALID].reason


async def test_the_four_sessions_answer_with_their_original_values(
    manager: SessionManager,
) -> None:
    (await manager.initialize()).unwrap()
    by_agent_a = (await manager.get_sessions_by_agent(AGENT_A)).unwrap()
    by_agent_b = (await manager.get_sessions_by_agent(AGENT_B)).unwrap()
    assert [s.id for s in by_agent_a.sessions] == [WEATHER, PLAIN]
    assert [s.id for s in by_agent_b.sessions] == [EMPTY, TRIAGE]
    triage = (await manager.get_session(TRIAGE)).unwrap()
    assert (triage.name, triage.status, triage.context.last_agent_id) == (
        "Triage",
        "paused",
        AGENT_A,
    )
    assert [item.type for item in triage.history] == ["message", "handoff", "message"]
    plain = (await manager.get_recent_messages(PLAIN, limit=2)).unwrap()
    assert [item.id for item in plain] == [
        "5a0e1f4e-0c55-4f0e-a6a7-5d1f0b8c9a03",
        "5a0e1f4e-0c55-4f0e-a6a7-5d1f0b8c9a04",
    ]


async def test_broken_sessions_answer_corrupt_data_and_stay_untouched(
    manager: SessionManager, root: Path
) -> None:
    before = broken_bytes(root)
    (await manager.initialize()).unwrap()
    for sid in (TRUNCATED, INVALID):
        for result in (
            await manager.get_session(sid),
            await manager.update_session(sid, name="Fixed?"),
            await manager.get_recent_messages(sid),
            await manager.delete_session(sid),
            await manager.send_message(sid, "Hello?"),
        ):
            assert result.error is not None
            assert result.error.code is ErrorCode.CORRUPT_DATA
            assert sid in result.error.message
    renamed = await manager.update_session(PLAIN, name="Still works")
    assert renamed.unwrap().name == "Still works"
    await manager.close()
    assert broken_bytes(root) == before


async def test_a_renamed_cortex_session_reloads_after_restart(root: Path) -> None:
    store = FileStore(root)
    async with SessionManager(store, AgentManager(store)) as first:
        (await first.update_session(WEATHER, name="Paris weather")).unwrap()
    store = FileStore(root)
    async with SessionManager(store, AgentManager(store)) as second:
        again = (await second.get_session(WEATHER)).unwrap()
    assert (again.name, again.revision, len(again.history)) == ("Paris weather", 1, 7)
