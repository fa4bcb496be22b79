"""``import`` checks each line on its own: bad ones are reported with their number and
reason and skipped; the rest are imported."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from admin.data import sample_checkpoint, sample_session
from chatruntime.admin import import_store, record_line
from chatruntime.admin._records import header_line
from chatruntime.cli._admin import main
from chatruntime.models import ChatSession
from chatruntime.stores import MemoryStore
from support.factories import agent_spec

pytestmark = pytest.mark.anyio

AGENT = agent_spec(name="Imported", created_at=1)


async def _lines(lines: list[str | bytes]) -> AsyncIterator[str | bytes]:
    for line in lines:
        yield line


def _session_with(n: int, **changes: object) -> str:
    wire = sample_session(n, AGENT).to_wire()
    wire.update(changes)
    return json.dumps({"kind": "session", "session": wire})


async def test_bad_lines_are_reported_with_their_number_and_skipped() -> None:
    stranger = agent_spec()
    orphan = sample_session(7, stranger)
    store = MemoryStore()
    lines: list[str | bytes] = [
        header_line(1),  # 1
        record_line(AGENT),  # 2
        record_line(sample_session(1, AGENT)),  # 3
        "not json",  # 4
        _session_with(2, name=""),  # 5
        '{"kind": "thread", "thread": {}}',  # 6
        record_line(orphan),  # 7
        record_line(sample_checkpoint(orphan, 1)),  # 8
        _session_with(3, metadata={"bad": "\ud800"}),  # 9
        "",  # 10
        b'{"kind": "agent", "agent": "\xff"}',  # 11
        record_line(sample_session(4, AGENT)),  # 12
    ]

    report = await import_store(store, _lines(lines))

    assert [str(problem) for problem in report.problems] == [
        "line 4: not valid JSON: Expecting value: line 1 column 1 (char 0)",
        "line 5: invalid session: name: String should have at least 1 character",
        "line 6: unknown kind 'thread': a record is one of export, agent, session, checkpoint",
        f"line 7: session {orphan.id} belongs to agent {stranger.id}, which is neither in the "
        "store nor earlier in the file",
        "line 8: checkpoint 00000000-0000-4000-9000-000000000071 not imported: its session was "
        "not imported",
        "line 9: the session holds a lone surrogate: text must be valid Unicode",
        "line 11: not valid UTF-8: invalid start byte at byte 28",
    ]
    assert (report.lines, report.sessions_created, report.agents_created) == (12, 2, 1)
    stored = await store.list_sessions()
    assert sorted(header.id for header in stored.sessions) == [
        sample_session(1, AGENT).id,
        sample_session(4, AGENT).id,
    ]


async def test_metadata_nested_deeper_than_the_api_accepts_is_refused() -> None:
    deep: object = "leaf"
    for _ in range(40):
        deep = [deep]
    report = await import_store(
        MemoryStore(), _lines([record_line(AGENT), _session_with(1, metadata={"deep": deep})])
    )
    assert [str(problem) for problem in report.problems] == [
        "line 2: invalid session: metadata is nested more than 32 levels deep"
    ]


async def test_a_session_stored_at_another_revision_is_left_unless_replace_is_asked() -> None:
    store = MemoryStore()
    await store.save_agent(AGENT)
    stored = sample_session(6, AGENT)  # revision 6
    await store.write_session(stored.header(), stored.history, expected_revision=None)
    newer = ChatSession.from_parts(
        stored.header().model_copy(update={"revision": 9, "name": "Renamed"}), stored.history
    )
    lines: list[str | bytes] = [record_line(AGENT), record_line(newer)]

    left = await import_store(store, _lines(lines))
    assert [str(problem) for problem in left.problems] == [
        f"line 2: session {stored.id} is stored at revision 6, the file has revision 9: left as "
        "stored (--replace overwrites it)"
    ]
    assert (await store.get_session(stored.id)) == stored

    replaced = await import_store(store, _lines(lines), replace=True)
    assert (replaced.problems, replaced.sessions_replaced) == ([], 1)
    assert (await store.get_session(stored.id)) == newer


def test_the_command_reports_bad_lines_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join([record_line(AGENT), record_line(sample_session(1, AGENT)), "[1, 2]"]) + "\n",
        encoding="utf-8",
    )
    store = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"

    assert main(["import", "--store", store, str(path), "--no-progress"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "read 3 lines: 1 session imported, 0 already there, 0 replaced; 1 agent imported, "
        "0 already there; 0 checkpoints imported; 1 line skipped",
        "problem: line 3: a record is a JSON object, not list",
    ]
    assert main(["import", "--store", store, str(path), "--no-progress"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "read 3 lines: 0 sessions imported, 1 already there, 0 replaced; 0 agents imported, "
        "1 already there; 0 checkpoints imported; 1 line skipped"
    )


def test_importing_a_missing_file_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", "--store", "memory://", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == (
        f"chatruntime admin import: no file {tmp_path / 'nope.jsonl'}\n"
    )
