"""``copy`` moves every session between stores, verified by counts and revisions, and a copy
interrupted anywhere is finished by running it again."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from admin.data import add_checkpoints, assert_same_data, populate, sample_session
from chatruntime.admin import copy_store
from chatruntime.cli._admin import main
from chatruntime.models import ChatSession
from chatruntime.stores import FileStore, SqlStore
from support.stores import open_store_for_test

pytestmark = pytest.mark.anyio

COUNT = 300


@pytest.mark.services
@pytest.mark.parametrize(
    ("source_kind", "target_kind"), [("file", "postgres"), ("postgres", "file")]
)
async def test_a_copy_interrupted_midway_is_finished_by_running_it_again(
    source_kind: str, target_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        open_store_for_test(source_kind, tmp_path / "source", request) as source,
        open_store_for_test(target_kind, tmp_path / "target", request) as target,
    ):
        await populate(source, COUNT)
        await add_checkpoints(source)
        with anyio.CancelScope() as interrupted:

            def stop_after_100(done: int, total: int) -> None:
                if done >= 100:
                    interrupted.cancel()

            await copy_store(source, target, progress=stop_after_100)
        assert interrupted.cancelled_caught
        copied_first = await target.count_sessions()
        assert 100 <= copied_first < COUNT

        report = await copy_store(source, target)

        assert report.problems == []
        assert report.sessions_skipped == copied_first
        assert report.sessions_copied == COUNT - copied_first
        verified = report.verification
        assert (verified.source_count, verified.target_count, verified.checked) == (
            COUNT,
            COUNT,
            COUNT,
        )
        assert (verified.mismatches, report.ok) == ([], True)
        assert await assert_same_data(source, target) == COUNT


async def test_a_session_at_another_revision_in_the_target_is_a_conflict(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        open_store_for_test("memory", tmp_path / "source", request) as source,
        open_store_for_test("memory", tmp_path / "target", request) as target,
    ):
        [agent, _] = await populate(source, 3)
        await target.save_agent(agent)
        old = sample_session(0, agent)
        older = ChatSession.from_parts(
            old.header().model_copy(update={"revision": 5}), old.history[:2]
        )
        await target.write_session(older.header(), older.history, expected_revision=None)

        report = await copy_store(source, target)
        assert [str(problem) for problem in report.problems] == [
            f"session {old.id}: the target holds revision 5, the source 0: left as it is "
            "(--replace overwrites it)"
        ]
        assert [str(mismatch) for mismatch in report.verification.mismatches] == [
            f"session {old.id}: at revision 5 in the target, 0 in the source"
        ]
        assert not report.ok

        replaced = await copy_store(source, target, replace=True)
        assert (replaced.ok, replaced.sessions_copied, replaced.sessions_skipped) == (True, 1, 2)
        assert await assert_same_data(source, target) == 3


def test_the_command_copies_between_urls_and_says_what_it_verified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fill() -> None:
        store = FileStore(tmp_path / "files")
        await store.initialize()
        try:
            await populate(store, 20)
        finally:
            await store.close()

    anyio.run(fill)
    source = f"file://{tmp_path / 'files'}"
    target = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"

    assert main(["copy", "--from", source, "--to", target, "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "copied 2 agents, 20 sessions (0 already there at the same revision), 0 checkpoints",
        "verified 20 of 20 sessions of the source: 0 missing or at another revision in the "
        "target; the target counts 20",
    ]
    assert main(["copy", "--from", source, "--to", target, "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "copied 0 agents, 0 sessions (20 already there at the same revision), 0 checkpoints"
    )

    async def compare() -> None:
        files, sql = FileStore(tmp_path / "files"), SqlStore(target)
        await files.initialize()
        await sql.initialize()
        try:
            assert await assert_same_data(files, sql) == 20
        finally:
            await files.close()
            await sql.close()

    anyio.run(compare)
