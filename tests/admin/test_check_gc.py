"""``check`` reports every record it cannot read; ``gc`` deletes expired sessions only."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from admin.data import populate, sample_session, session_id
from chatruntime.admin import check_store, collect_garbage
from chatruntime.cli._admin import main
from chatruntime.models import ChatSession
from chatruntime.stores import FileStore
from support.factories import T0
from support.stores import (
    damage_session,
    damageable_store_params,
    open_store_for_test,
    store_params,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", damageable_store_params())
async def test_check_reports_a_corrupted_record_and_reads_the_rest(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_store_for_test(kind, tmp_path, request) as store:
        await populate(store, 5)
        # Session 4 has no user (the registry's Redis damage hook finds sessions without one).
        await damage_session(kind, store, session_id(4))

        report = await check_store(store)

        assert [record.session_id for record in report.corrupt] == [session_id(4)]
        assert report.corrupt[0].reason
        assert (report.sessions, report.problems, report.ok) == (4, [], False)


@pytest.mark.parametrize("kind", store_params())
async def test_check_finds_nothing_wrong_in_a_sound_store(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_store_for_test(kind, tmp_path, request) as store:
        await populate(store, 5)
        report = await check_store(store)
        assert (report.sessions, report.corrupt, report.problems, report.ok) == (5, [], [], True)


def test_the_check_command_prints_the_corrupt_record_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fill() -> None:
        store = FileStore(tmp_path / "files")
        await store.initialize()
        try:
            await populate(store, 3)
            await damage_session("file", store, session_id(1))
        finally:
            await store.close()

    anyio.run(fill)
    url = f"file://{tmp_path / 'files'}"

    assert main(["check", "--store", url, "--no-progress"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"corrupt: {tmp_path / 'files' / 'sessions'}/")
    assert f"{session_id(1)}.json: " in lines[0]
    assert lines[1:] == ["checked 3 sessions and 0 checkpoints: 1 corrupt, 0 other problems"]


@pytest.mark.parametrize("kind", store_params())
async def test_gc_deletes_the_expired_sessions_and_no_other(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_store_for_test(kind, tmp_path, request) as store:
        [agent, _] = await populate(store, 0)
        expiries = {0: T0 - 10, 1: T0, 2: T0 + 1, 3: None, 4: T0 - 5}
        for n, expires_at in expiries.items():
            session = sample_session(n, agent)
            header = session.header().model_copy(update={"expires_at": expires_at})
            await store.write_session(header, session.history, expected_revision=None)

        report = await collect_garbage(store, now=T0)

        assert (report.expired_deleted, report.problems) == (3, [])
        remaining = await store.list_sessions()
        assert sorted(header.id for header in remaining.sessions) == [
            session_id(2),
            session_id(3),
        ]


async def test_gc_leaves_a_session_whose_expiry_moved_after_it_was_listed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with open_store_for_test("memory", tmp_path, request) as store:
        [agent, _] = await populate(store, 0)
        session = sample_session(0, agent)
        header = session.header().model_copy(update={"expires_at": T0 - 1})
        await store.write_session(header, session.history, expected_revision=None)
        listed = store.expired_sessions

        async def listed_then_extended(now: int, *, limit: int = 1000) -> list[str]:
            found = await listed(now, limit=limit)
            current = await store.get_session(session.id)
            assert current is not None
            extended = current.header().model_copy(
                update={"expires_at": T0 + 1000, "revision": current.revision + 1}
            )
            await store.write_session(extended, [], expected_revision=current.revision)
            return found

        store.expired_sessions = listed_then_extended  # type: ignore[method-assign]
        report = await collect_garbage(store, now=T0)

        assert report.expired_deleted == 0
        stored = await store.get_session(session.id)
        assert isinstance(stored, ChatSession)
        assert stored.expires_at == T0 + 1000


def test_the_gc_command_says_what_it_did_and_what_the_store_does_not_offer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["gc", "--store", "memory://", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "deleted 0 expired sessions",
        "note: journals: MemoryStore keeps none",
        "note: stale leases: MemoryStore drops none on request (a lease not renewed ends by "
        "itself)",
    ]
