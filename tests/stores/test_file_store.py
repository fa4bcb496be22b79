"""``FileStore`` beyond the contract: the files on disk, the journal, cortex's folders, damage,
failed writes, several processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from chatruntime.models import (
    BusyError,
    ChatSession,
    ConflictError,
    CorruptDataError,
    ErrorOutput,
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    InvalidInputError,
    MessageItem,
    SessionContext,
    SessionHeader,
    StorageError,
    StoreVersionError,
    TextOutput,
)
from chatruntime.stores import (
    CorruptRecord,
    FileStore,
    _file_codec,
    _file_io,
    _file_sessions,
    load_all,
)
from support.factories import T0, agent_spec, bumped, header, turn_items

pytestmark = pytest.mark.anyio

SID = "0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"

TESTS = Path(__file__).resolve().parents[1]
CORTEX = TESTS.parent / ".." / "shared" / "data" / "cortex" / ".cortex"
CORTEX_AGENT_A = "3f1c2a9e-8b7d-4c1e-9f2a-1d2c3b4a5e6f"
CORTEX_AGENT_B = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PLAIN = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
WEATHER = "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"
TRIAGE = "2c3d4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f"
EMPTY = "3d4e5f6a-7b8c-4d9e-9f0a-2b3c4d5e6f7a"
TRUNCATED = "4e5f6a7b-8c9d-4e0f-8a1b-3c4d5e6f7a8b"
INVALID = "5f6a7b8c-9d0e-4f1a-9b2c-4d5e6f7a8b9c"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[FileStore]:
    opened = FileStore(root)
    await opened.initialize()
    yield opened
    await opened.close()


def snapshot_path(root: Path, session_id: str = SID, agent_id: str = AID) -> Path:
    return root / "sessions" / agent_id / f"{session_id}.json"


def journal_path(root: Path, session_id: str = SID, agent_id: str = AID) -> Path:
    return root / "sessions" / agent_id / f"{session_id}.journal"


def journal_lines(root: Path, session_id: str = SID, agent_id: str = AID) -> list[dict[str, Any]]:
    text = journal_path(root, session_id, agent_id).read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def folders_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.is_dir())


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def pretty(value: dict[str, Any]) -> str:
    """How the TypeScript original writes a record: 2-space indent, no trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def ours(record: dict[str, Any]) -> str:
    """How this store writes a session: the header as the original does, then ``history``
    last, one compact item per line."""
    head = pretty({key: value for key, value in record.items() if key != "history"})
    lines = [
        json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in record["history"]
    ]
    if not lines:
        return head[: -len("\n}")] + ',\n  "history": []\n}'
    body = ",\n".join(f"    {line}" for line in lines)
    return head[: -len("\n}")] + ',\n  "history": [\n' + body + "\n  ]\n}"


def wire_items(items: list[Any]) -> list[dict[str, Any]]:
    return [item.to_wire() for item in items]


def first_header(**overrides: Any) -> SessionHeader:
    values: dict[str, Any] = {"id": SID, "agent_id": AID, "user_id": "user-1"}
    values.update(overrides)
    return header(**values)


ZERO_CONTEXT = {
    "totalTokens": 0,
    "totalMessages": 0,
    "totalFunctionCalls": 0,
    "lastActivity": T0,
    "inputTokens": 0,
    "outputTokens": 0,
    "requests": 0,
    "totalTurns": 0,
    "totalHandoffs": 0,
}


# -- the files on disk ----------------------------------------------------------------------


async def test_create_writes_the_header_indented_and_one_history_item_per_line(
    store: FileStore, root: Path
) -> None:
    h = first_header(metadata={"topic": "weather"})
    items = turn_items(1)
    await store.write_session(h, items, expected_revision=None)

    expected = {
        "id": SID,
        "agentId": AID,
        "name": "First chat",
        "createdAt": T0,
        "updatedAt": T0,
        "context": ZERO_CONTEXT,
        "status": "active",
        "schemaVersion": 1,
        "revision": 0,
        "userId": "user-1",
        "metadata": {"topic": "weather"},
        "state": {},
        "turnKeys": [],
        "history": [
            {
                "id": items[0].id,
                "timestamp": T0,
                "type": "message",
                "role": "user",
                "content": "question 1",
            },
            {
                "id": items[1].id,
                "timestamp": T0,
                "type": "function_call",
                "name": "lookup",
                "arguments": '{"n": 1}',
                "callId": "call_1",
            },
            {
                "id": items[2].id,
                "timestamp": T0,
                "type": "function_call_result",
                "name": "lookup",
                "callId": "call_1",
                "output": "result 1",
            },
            {
                "id": items[3].id,
                "timestamp": T0,
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "answer 1", "annotations": []}],
                "status": "completed",
                "itemId": "msg_1",
            },
        ],
    }
    assert snapshot_path(root).read_text(encoding="utf-8") == ours(expected)
    assert not journal_path(root).exists()
    assert sorted(p.name for p in (root / "sessions" / AID).iterdir()) == [f"{SID}.json"]


async def test_an_update_appends_one_journal_line_and_leaves_the_snapshot_alone(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    snapshot_before = snapshot_path(root).read_bytes()
    h1 = bumped(h, updated_at=T0 + 5, context=SessionContext(total_messages=2, last_activity=T0))
    second = turn_items(2)

    await store.write_session(h1, second, expected_revision=0)

    assert snapshot_path(root).read_bytes() == snapshot_before
    assert journal_lines(root) == [
        {
            "revision": 1,
            "header": {
                "id": SID,
                "agentId": AID,
                "name": "First chat",
                "createdAt": T0,
                "updatedAt": T0 + 5,
                "context": {**ZERO_CONTEXT, "totalMessages": 2},
                "status": "active",
                "schemaVersion": 1,
                "revision": 1,
                "userId": "user-1",
                "metadata": {},
                "state": {},
                "turnKeys": [],
            },
            "items": wire_items(second),
        }
    ]


async def test_a_rename_is_a_journal_line_without_items(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)

    await store.write_session(bumped(h, name="Renamed"), [], expected_revision=0)

    [line] = journal_lines(root)
    assert (line["revision"], line["header"]["name"], line["items"]) == (1, "Renamed", [])
    assert json.loads(snapshot_path(root).read_text(encoding="utf-8"))["name"] == "First chat"
    loaded = await store.get_session(SID)
    assert loaded is not None
    assert (loaded.name, loaded.revision, len(loaded.history)) == ("Renamed", 1, 4)


async def test_close_folds_the_journal_into_the_snapshot(root: Path) -> None:
    store = FileStore(root)
    await store.initialize()
    h = first_header()
    first, second, third = turn_items(1), turn_items(2), turn_items(3)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h, name="Renamed")
    await store.write_session(h1, second, expected_revision=0)
    h2 = bumped(h1, status="paused")
    await store.write_session(h2, third, expected_revision=1)

    await store.close()

    assert not journal_path(root).exists()
    expected = ChatSession.from_parts(h2, first + second + third).to_wire()
    assert snapshot_path(root).read_text(encoding="utf-8") == ours(expected)
    assert (expected["revision"], expected["name"], expected["status"]) == (2, "Renamed", "paused")


async def test_the_journal_is_folded_once_it_passes_the_threshold(root: Path) -> None:
    probe = FileStore(root / "probe")
    h = first_header()
    await probe.write_session(h, turn_items(1), expected_revision=None)
    await probe.write_session(bumped(h), turn_items(2), expected_revision=0)
    one_line = journal_path(root / "probe").stat().st_size
    # Room for one line but not two: the second update folds.
    store = FileStore(root, fold_min_bytes=one_line + 10, fold_ratio=0)
    h1, h2 = bumped(h), bumped(bumped(h))

    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(h1, turn_items(2), expected_revision=0)
    assert [line["revision"] for line in journal_lines(root)] == [1]
    await store.write_session(h2, turn_items(3), expected_revision=1)

    assert not journal_path(root).exists()
    on_disk = json.loads(snapshot_path(root).read_text(encoding="utf-8"))
    assert on_disk["revision"] == 2
    assert [item["content"] for item in on_disk["history"][::4]] == [
        "question 1",
        "question 2",
        "question 3",
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [(0, 0), (0, 2), (3, 0), (3, 2)],
    ids=["empty+nothing", "empty+turns", "turns+nothing", "turns+turns"],
)
def test_a_fold_writes_exactly_what_encoding_the_whole_session_writes(
    before: int, after: int
) -> None:
    h = first_header(name="Ωmega 🚀", metadata={"history": [1, 2], "nested": {"history": []}})
    old = [item for n in range(before) for item in turn_items(n)]
    new = [item for n in range(before, before + after) for item in turn_items(n)]
    later = bumped(h, name="Renamed")

    folded = _file_codec.extend_snapshot(
        _file_codec.encode_snapshot(ChatSession.from_parts(h, old)), later, new
    )

    assert folded == _file_codec.encode_snapshot(ChatSession.from_parts(later, old + new))


def test_a_snapshot_in_cortexs_layout_is_not_spliced() -> None:
    cortex_like = pretty({"id": SID, "history": [{"type": "message"}], "status": "active"})
    assert _file_codec.extend_snapshot(cortex_like.encode(), first_header(), []) is None


async def test_the_fold_threshold_grows_with_the_snapshot(root: Path) -> None:
    store = FileStore(root, fold_min_bytes=0, fold_ratio=1.0)
    h = first_header()
    await store.write_session(
        h, [i for n in range(20) for i in turn_items(n)], expected_revision=None
    )
    await store.write_session(bumped(h), turn_items(20), expected_revision=0)
    # One turn is far smaller than twenty: the journal stays.
    assert [line["revision"] for line in journal_lines(root)] == [1]


@pytest.mark.parametrize(
    ("settings", "shown"),
    [
        ({"fold_min_bytes": -1}, "fold_min_bytes=-1, fold_ratio=0.5"),
        ({"fold_ratio": -0.5}, "fold_min_bytes=262144, fold_ratio=-0.5"),
    ],
)
def test_negative_fold_settings_are_a_value_error(
    root: Path, settings: dict[str, Any], shown: str
) -> None:
    with pytest.raises(ValueError) as caught:
        FileStore(root, **settings)
    assert str(caught.value) == f"fold_min_bytes and fold_ratio must not be negative, got {shown}"
    assert not root.exists()


async def test_a_journal_is_replayed_after_a_crash(root: Path) -> None:
    writer = FileStore(root)
    h = first_header()
    first, second = turn_items(1), turn_items(2)
    await writer.write_session(h, first, expected_revision=None)
    h1 = bumped(h, name="After")
    await writer.write_session(h1, second, expected_revision=0)
    # The writer "dies" here: no close(), so no fold.

    reader = FileStore(root)
    assert await reader.get_session(SID) == ChatSession.from_parts(h1, first + second)
    assert await reader.get_revision(SID) == 1
    assert journal_path(root).exists()


async def test_a_torn_last_journal_line_is_ignored_and_cut_by_the_next_write(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    first, second, third = turn_items(1), turn_items(2), turn_items(3)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, second, expected_revision=0)
    intact = journal_path(root).read_bytes()
    with journal_path(root).open("ab") as journal:
        journal.write(b'{"revision":2,"header":{"id":"')  # a crash mid-append

    fresh = FileStore(root)
    assert await fresh.get_session(SID) == ChatSession.from_parts(h1, first + second)
    assert await fresh.get_revision(SID) == 1
    assert await store.get_revision(SID) == 1

    h2 = bumped(h1)
    await fresh.write_session(h2, third, expected_revision=1)
    assert journal_path(root).read_bytes().startswith(intact)
    assert [line["revision"] for line in journal_lines(root)] == [1, 2]
    assert await store.get_session(SID) == ChatSession.from_parts(h2, first + second + third)


async def test_a_journal_left_by_an_interrupted_fold_is_skipped_then_removed(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    first, second, third = turn_items(1), turn_items(2), turn_items(3)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, second, expected_revision=0)
    journal = journal_path(root).read_bytes()
    await store.close()
    # The fold replaced the snapshot, then "crashed" before removing the journal.
    journal_path(root).write_bytes(journal)

    fresh = FileStore(root)
    assert await fresh.get_session(SID) == ChatSession.from_parts(h1, first + second)
    assert await fresh.get_revision(SID) == 1
    h2 = bumped(h1)
    await fresh.write_session(h2, third, expected_revision=1)

    assert [line["revision"] for line in journal_lines(root)] == [2]
    assert await fresh.get_session(SID) == ChatSession.from_parts(h2, first + second + third)


async def test_a_damaged_journal_line_makes_the_session_corrupt_and_untouched(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    damaged = b"not json\n" + journal_path(root).read_bytes()
    journal_path(root).write_bytes(damaged)
    snapshot = snapshot_path(root).read_bytes()

    fresh = FileStore(root)
    with pytest.raises(CorruptDataError) as raised:
        await fresh.get_session(SID)
    assert raised.value.details["path"] == str(journal_path(root))
    assert raised.value.details["reason"] == (
        "line 1: not valid JSON: expected ident at line 1 column 2"
    )
    with pytest.raises(CorruptDataError):
        await fresh.write_session(bumped(bumped(h)), turn_items(3), expected_revision=1)
    await fresh.close()

    assert (journal_path(root).read_bytes(), snapshot_path(root).read_bytes()) == (
        damaged,
        snapshot,
    )
    report = await load_all(fresh)
    assert report.sessions == []
    assert report.corrupt == [
        CorruptRecord(SID, str(journal_path(root)), raised.value.details["reason"])
    ]


async def test_a_gap_between_snapshot_and_journal_is_corrupt(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, [], expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, [], expected_revision=0)
    await store.write_session(bumped(h1), [], expected_revision=1)
    lines = journal_path(root).read_bytes().splitlines(keepends=True)
    journal_path(root).write_bytes(lines[1])  # revision 2 without revision 1

    with pytest.raises(CorruptDataError) as raised:
        await FileStore(root).get_session(SID)
    assert raised.value.details["reason"] == (
        "the journal starts at revision 2 but the snapshot is at revision 0: "
        "revisions in between are missing"
    )


# -- revisions --------------------------------------------------------------------------------


async def test_a_stale_update_conflicts_and_writes_nothing(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    journal = journal_path(root).read_bytes()

    with pytest.raises(ConflictError) as raised:
        await store.write_session(bumped(h, name="Stale"), turn_items(3), expected_revision=0)

    assert raised.value.details == {
        "session_id": SID,
        "stored_revision": 1,
        "expected_revision": 0,
    }
    assert journal_path(root).read_bytes() == journal


async def test_an_update_must_advance_the_revision_by_one(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, [], expected_revision=None)
    with pytest.raises(InvalidInputError):
        await store.write_session(h.model_copy(update={"revision": 5}), [], expected_revision=0)
    assert not journal_path(root).exists()


async def test_a_session_cannot_move_to_another_agent(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, [], expected_revision=None)
    with pytest.raises(InvalidInputError):
        await store.write_session(bumped(h, agent_id=str(uuid.uuid4())), [], expected_revision=0)
    assert await store.get_revision(SID) == 0


async def test_get_revision_reads_only_journal_lines_it_has_not_seen(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    reads: list[tuple[str, int]] = []
    real_read = _file_sessions.read_file

    def spy(path: Path, offset: int = 0) -> Any:
        reads.append((path.name, offset))
        return real_read(path, offset)

    monkeypatch.setattr(_file_sessions, "read_file", spy)

    assert await store.get_revision(SID) == 1
    assert reads == []  # this store wrote everything there is

    size = journal_path(root).stat().st_size
    other = FileStore(root)
    await other.write_session(bumped(bumped(h)), turn_items(3), expected_revision=1)
    reads.clear()
    assert await store.get_revision(SID) == 2
    assert reads == [(f"{SID}.journal", size)]


# -- a failed directory sync ------------------------------------------------------------------


def _fail_directory_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: Path) -> None:
        raise _file_io.storage_error("sync directory", path, OSError(5, "Input/output error"))

    monkeypatch.setattr(_file_io, "fsync_dir", fail)


async def test_a_create_whose_directory_sync_fails_leaves_nothing_behind(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = str(uuid.uuid4())
    await store.write_session(first_header(id=other), turn_items(1), expected_revision=None)
    before = files_under(root / "sessions")
    h = first_header()
    with monkeypatch.context() as patched:
        _fail_directory_syncs(patched)
        with pytest.raises(StorageError, match="cannot sync directory"):
            await store.write_session(h, turn_items(1), expected_revision=None)

    assert files_under(root / "sessions") == before
    assert await store.get_session(SID) is None
    await store.write_session(h, turn_items(1), expected_revision=None)  # no conflict
    assert await store.get_revision(SID) == 0


async def test_a_new_agent_whose_directory_sync_fails_is_not_saved(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.save_agent(agent_spec())
    before = files_under(root)
    spec = agent_spec()
    with monkeypatch.context() as patched:
        _fail_directory_syncs(patched)
        with pytest.raises(StorageError, match="cannot sync directory"):
            await store.save_agent(spec)

    assert files_under(root) == before
    assert await store.get_agent(spec.id) is None


async def test_a_first_journal_line_whose_directory_sync_fails_is_cut_back(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = first_header()
    first = turn_items(1)
    await store.write_session(h, first, expected_revision=None)
    with monkeypatch.context() as patched:
        _fail_directory_syncs(patched)
        with pytest.raises(StorageError, match="cannot sync directory"):
            await store.write_session(bumped(h), turn_items(2), expected_revision=0)

    assert journal_path(root).read_bytes() == b""
    assert await store.get_revision(SID) == 0
    assert await FileStore(root).get_session(SID) == ChatSession.from_parts(h, first)
    second = turn_items(2)
    await store.write_session(bumped(h), second, expected_revision=0)
    assert await FileStore(root).get_session(SID) == ChatSession.from_parts(
        bumped(h), first + second
    )


# -- deleting -------------------------------------------------------------------------------


async def test_delete_removes_snapshot_and_journal_and_leaves_no_file_behind(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)

    assert await store.delete_session(SID) is True

    assert list((root / "sessions" / AID).iterdir()) == []
    assert folders_in(root) == ["agents", "sessions"]


async def test_delete_syncs_the_session_directory_after_removing_the_files(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    synced: list[tuple[Path, list[str]]] = []
    real_fsync_dir = _file_io.fsync_dir

    def spy(path: Path) -> None:
        synced.append((path, sorted(p.name for p in path.iterdir())))
        real_fsync_dir(path)

    monkeypatch.setattr(_file_sessions, "fsync_dir", spy, raising=False)

    assert await store.delete_session(SID) is True

    # Synced once both files were gone, so that the delete survives a power cut.
    assert (root / "sessions" / AID, []) in synced


# -- several processes ------------------------------------------------------------------------


async def test_a_write_by_another_store_on_the_same_folder_is_seen(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    assert await store.get_revision(SID) == 0

    other = FileStore(root)
    h1 = bumped(h, name="Other")
    await other.write_session(h1, second, expected_revision=0)

    assert await store.get_revision(SID) == 1
    assert await store.get_session(SID) == ChatSession.from_parts(h1, first + second)
    with pytest.raises(ConflictError):
        await store.write_session(bumped(h), turn_items(3), expected_revision=0)


async def test_a_fold_by_another_store_is_seen(store: FileStore, root: Path) -> None:
    h = first_header()
    first, second, third = turn_items(1), turn_items(2), turn_items(3)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, second, expected_revision=0)
    other = FileStore(root)
    h2 = bumped(h1)
    await other.write_session(h2, third, expected_revision=1)
    await other.close()
    assert not journal_path(root).exists()

    assert await store.get_revision(SID) == 2
    h3 = bumped(h2)
    await store.write_session(h3, [], expected_revision=2)
    assert await store.get_session(SID) == ChatSession.from_parts(h3, first + second + third)


async def test_concurrent_writers_in_two_stores_never_lose_a_turn(root: Path) -> None:
    h = first_header()
    await FileStore(root).write_session(h, [], expected_revision=None)
    # One store folds after every write, the other never: folds race with appends.
    stores = [FileStore(root, fold_min_bytes=0, fold_ratio=0), FileStore(root)]

    async def writer(store: FileStore, base: int) -> None:
        for n in range(base, base + 10):
            while True:
                current = await store.get_session(SID)
                assert current is not None
                try:
                    await store.write_session(
                        bumped(current.header()), turn_items(n), expected_revision=current.revision
                    )
                    break
                except ConflictError:
                    continue

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer, stores[0], 0)
        tg.start_soon(writer, stores[1], 100)

    final = await FileStore(root).get_session(SID)
    assert final is not None
    assert final.revision == 20
    questions = [item.content for item in final.history[::4] if isinstance(item, MessageItem)]
    assert sorted(questions) == sorted(
        [f"question {n}" for n in range(10)] + [f"question {n}" for n in range(100, 110)]
    )


WRITER_PROCESS = f"""
import sys, anyio
from chatruntime.models import ConflictError
from chatruntime.stores import FileStore
sys.path.insert(0, sys.argv[3])
from support.factories import bumped, turn_items

async def main() -> None:
    store = FileStore(sys.argv[1])
    base = int(sys.argv[2])
    for n in range(base, base + 10):
        while True:
            current = await store.get_session("{SID}")
            try:
                await store.write_session(
                    bumped(current.header()), turn_items(n), expected_revision=current.revision
                )
                break
            except ConflictError:
                continue
    await store.close()

anyio.run(main)
"""


async def test_writer_processes_sharing_a_folder_are_serialised(root: Path) -> None:
    h = first_header()
    await FileStore(root).write_session(h, [], expected_revision=None)
    tests_dir = str(TESTS)
    processes = [
        await anyio.open_process(
            [sys.executable, "-c", WRITER_PROCESS, str(root), str(base), tests_dir]
        )
        for base in (0, 100)
    ]
    try:
        with anyio.fail_after(60):
            codes = [await process.wait() for process in processes]
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
    assert codes == [0, 0]

    final = await FileStore(root).get_session(SID)
    assert final is not None
    assert final.revision == 20
    texts = sorted(item.text for item in final.history if isinstance(item, MessageItem))
    assert texts == sorted(
        [f"question {n}" for base in (0, 100) for n in range(base, base + 10)]
        + [f"answer {n}" for base in (0, 100) for n in range(base, base + 10)]
    )
    assert not journal_path(root).exists()  # every writer closed: the .json is complete


# -- leases -----------------------------------------------------------------------------------


LEASE_HOLDER = f"""
import sys, anyio
from chatruntime.stores import FileStore

async def main() -> None:
    async with FileStore(sys.argv[1]).lease("{SID}"):
        print("holding", flush=True)
        await anyio.sleep(120)

anyio.run(main)
"""


@pytest.fixture
def lease_holder(root: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lease of ``SID``, until the test kills it."""
    process = subprocess.Popen(
        [sys.executable, "-c", LEASE_HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline() == "holding\n"
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()


async def test_a_lease_held_by_another_process_is_busy_until_it_dies(
    store: FileStore, lease_holder: subprocess.Popen[str]
) -> None:
    with pytest.raises(BusyError) as raised:
        async with store.lease(SID, timeout=0.3):
            pytest.fail("the lease was granted while another process held it")
    assert raised.value.details == {"session_id": SID, "timeout": 0.3}

    os.kill(lease_holder.pid, signal.SIGKILL)
    lease_holder.wait()

    with anyio.fail_after(5):
        async with store.lease(SID, timeout=2):
            pass


async def test_leases_and_turns_create_no_files(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    before = files_under(root)

    for revision in (1, 2):
        async with store.lease(SID, timeout=1) as lease:
            await store.write_session(
                h.model_copy(update={"revision": revision + 1}),
                turn_items(3),
                expected_revision=revision,
                lease=lease,
            )
        async with store.lease(str(uuid.uuid4()), timeout=1):
            pass

    assert files_under(root) == before


async def test_leases_of_two_stores_in_one_process_exclude_each_other(root: Path) -> None:
    first, second = FileStore(root), FileStore(root)
    async with first.lease(SID, timeout=1):
        with pytest.raises(BusyError):
            async with second.lease(SID, timeout=0.2):
                pass
    async with second.lease(SID, timeout=1):
        pass


async def test_the_lease_and_the_write_lock_are_different_locks(store: FileStore) -> None:
    h = first_header()
    with anyio.fail_after(5):
        async with store.lease(SID, timeout=1):
            await store.write_session(h, turn_items(1), expected_revision=None)
            await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    assert await store.get_revision(SID) == 1


# -- bad ids ----------------------------------------------------------------------------------

BAD_IDS = [
    "../../etc/passwd",
    "..",
    f"../{AID}",
    f"{SID}/../x",
    SID.upper(),
    f"{SID}.json",
    "",
    "/tmp/x",
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_ids_that_are_not_uuids_are_rejected(
    store: FileStore, root: Path, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(InvalidInputError):
        await store.get_session(bad)
    with pytest.raises(InvalidInputError):
        await store.get_revision(bad)
    with pytest.raises(InvalidInputError):
        await store.delete_session(bad)
    with pytest.raises(InvalidInputError):
        await store.get_agent(bad)
    with pytest.raises(InvalidInputError):
        await store.delete_agent(bad)
    with pytest.raises(InvalidInputError):
        async with store.lease(bad, timeout=0.1):
            pass
    forged = first_header().model_copy(update={"id": bad})
    with pytest.raises(InvalidInputError):
        await store.write_session(forged, [], expected_revision=None)
    forged = first_header().model_copy(update={"agent_id": bad})
    with pytest.raises(InvalidInputError):
        await store.write_session(forged, [], expected_revision=None)
    forged_agent = agent_spec().model_copy(update={"id": bad})
    with pytest.raises(InvalidInputError):
        await store.save_agent(forged_agent)

    assert sorted(os.listdir(tmp_path)) == ["store"]
    assert files_under(root / "sessions") == files_under(root / "agents") == []


async def test_files_that_are_not_sessions_are_left_alone(store: FileStore, root: Path) -> None:
    h = first_header()
    await store.write_session(h, turn_items(1), expected_revision=None)
    strays = {
        root / "sessions" / "notes.txt": b"hello",
        root / "sessions" / "not-an-agent" / f"{SID}.json": b"{}",
        root / "sessions" / AID / "README.md": b"# notes",
        root / "sessions" / AID / f"{SID}.json.bak": b"{",
        root / "sessions" / AID / f"{SID.upper()}.json": b"{",
        root / "sessions" / AID / "draft.json": b"{",
        root / "sessions" / AID / f".{SID}.json.1234.tmp": b"{",
        root / "agents" / "helper.json": b"{",
    }
    for path, data in strays.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "sessions" / AID / str(uuid.uuid4())).mkdir()

    report = await load_all(store)
    assert ([s.id for s in report.sessions], report.corrupt) == ([SID], [])
    assert await store.list_agents() == []
    await store.write_session(bumped(h), turn_items(2), expected_revision=0)
    await store.close()
    assert {path: path.read_bytes() for path in strays} == strays


# -- damaged and newer files --------------------------------------------------------------------


async def test_a_snapshot_of_a_newer_version_is_refused_and_kept(
    store: FileStore, root: Path
) -> None:
    await store.write_session(first_header(), [], expected_revision=None)
    record = json.loads(snapshot_path(root).read_text(encoding="utf-8"))
    record["schemaVersion"] = 99
    record["newField"] = "from the future"
    newer = pretty(record).encode()
    snapshot_path(root).write_bytes(newer)
    reason = (
        "written by a newer chatruntime (schema version 99; this one reads up to 1): "
        "upgrade chatruntime to read it"
    )

    fresh = FileStore(root)
    report = await load_all(fresh)
    assert report.corrupt == [CorruptRecord(SID, str(snapshot_path(root)), reason)]
    with pytest.raises(StoreVersionError) as raised:
        await fresh.get_session(SID)
    assert raised.value.details == {
        "session_id": SID,
        "path": str(snapshot_path(root)),
        "reason": reason,
    }
    with pytest.raises(StoreVersionError):
        await fresh.write_session(bumped(first_header()), [], expected_revision=0)
    assert snapshot_path(root).read_bytes() == newer


async def test_a_snapshot_under_the_wrong_name_is_corrupt(store: FileStore, root: Path) -> None:
    await store.write_session(first_header(), [], expected_revision=None)
    other = str(uuid.uuid4())
    snapshot_path(root).rename(snapshot_path(root, other))

    report = await load_all(FileStore(root))

    assert report.sessions == []
    assert report.corrupt == [
        CorruptRecord(
            other,
            str(snapshot_path(root, other)),
            f"the file holds session {SID} of agent {AID}, "
            f"but its path says session {other} of agent {AID}",
        )
    ]


async def test_a_session_in_two_agent_folders_reports_the_second_copy(
    store: FileStore, root: Path
) -> None:
    first_agent, second_agent = sorted([AID, str(uuid.uuid4())])
    await store.write_session(first_header(agent_id=first_agent), [], expected_revision=None)
    copy = snapshot_path(root, SID, second_agent)
    copy.parent.mkdir()
    shutil.copy(snapshot_path(root, SID, first_agent), copy)

    report = await load_all(FileStore(root))

    assert [s.agent_id for s in report.sessions] == [first_agent]
    assert report.corrupt == [
        CorruptRecord(
            SID,
            str(copy),
            f"another copy of this session is in {snapshot_path(root, SID, first_agent)}",
        )
    ]


# -- failed writes ----------------------------------------------------------------------------


async def test_a_create_that_cannot_make_its_folder_fails_and_stores_nothing(
    store: FileStore, root: Path
) -> None:
    (root / "sessions" / AID).write_bytes(b"a file where the agent's folder should be")

    with pytest.raises(StorageError) as raised:
        await store.write_session(first_header(), turn_items(1), expected_revision=None)

    assert type(raised.value) is StorageError
    assert raised.value.message == (
        f"cannot create directory {root / 'sessions' / AID}: Not a directory"
    )
    assert raised.value.details["errno"] == "ENOTDIR"
    assert await store.get_session(SID) is None
    assert (await load_all(store)).sessions == []


async def test_an_update_that_cannot_reach_its_journal_fails_and_changes_nothing(
    store: FileStore, root: Path
) -> None:
    h = first_header()
    first = turn_items(1)
    await store.write_session(h, first, expected_revision=None)
    snapshot = snapshot_path(root).read_bytes()
    journal_path(root).mkdir()  # a folder where the journal should be

    with pytest.raises(StorageError) as raised:
        await store.write_session(bumped(h), turn_items(2), expected_revision=0)

    assert type(raised.value) is StorageError
    assert raised.value.message == f"cannot read {journal_path(root)}: Is a directory"
    journal_path(root).rmdir()
    assert snapshot_path(root).read_bytes() == snapshot
    assert await store.get_session(SID) == ChatSession.from_parts(h, first)


async def test_a_full_disk_during_an_append_leaves_the_journal_as_it_was(
    store: FileStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = first_header()
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    h1 = bumped(h)
    await store.write_session(h1, second, expected_revision=0)
    journal = journal_path(root).read_bytes()
    real_write_all = _file_io._write_all

    def disk_full(fd: int, data: bytes) -> None:
        real_write_all(fd, data[: len(data) // 2])
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(_file_io, "_write_all", disk_full)
    with pytest.raises(StorageError) as raised:
        await store.write_session(bumped(h1), turn_items(3), expected_revision=1)
    monkeypatch.undo()

    assert raised.value.message == f"cannot append to {journal_path(root)}: No space left on device"
    assert raised.value.details["errno"] == "ENOSPC"
    assert journal_path(root).read_bytes() == journal
    assert await FileStore(root).get_session(SID) == ChatSession.from_parts(h1, first + second)
    await store.write_session(bumped(h1), turn_items(3), expected_revision=1)
    assert [line["revision"] for line in journal_lines(root)] == [1, 2]


async def test_a_failed_fold_keeps_the_write_and_the_journal(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(root, fold_min_bytes=0, fold_ratio=0)
    h = first_header()
    first, second = turn_items(1), turn_items(2)
    await store.write_session(h, first, expected_revision=None)
    snapshot = snapshot_path(root).read_bytes()

    def no_space(path: Path, data: bytes, **options: Any) -> Any:
        raise _file_io.storage_error("write", path, OSError(28, os.strerror(28)))

    monkeypatch.setattr(_file_sessions, "write_atomically", no_space)
    h1 = bumped(h)
    await store.write_session(h1, second, expected_revision=0)  # succeeds: it is journaled
    monkeypatch.undo()

    assert snapshot_path(root).read_bytes() == snapshot
    assert [line["revision"] for line in journal_lines(root)] == [1]
    assert await FileStore(root).get_session(SID) == ChatSession.from_parts(h1, first + second)
    await store.close()
    assert not journal_path(root).exists()


# -- agents -----------------------------------------------------------------------------------


async def test_an_agent_is_one_indented_json_file(store: FileStore, root: Path) -> None:
    spec = agent_spec(id=AID, created_at=T0, updated_at=T0, tools=["lookup"])
    await store.save_agent(spec)
    assert (root / "agents" / f"{AID}.json").read_text(encoding="utf-8") == pretty(
        {
            "id": AID,
            "name": "Helper",
            "instructions": "Be brief.",
            "modelSettings": {},
            "tools": ["lookup"],
            "handoffs": [],
            "createdAt": T0,
            "updatedAt": T0,
            "schemaVersion": 1,
        }
    )


async def test_a_damaged_agent_file_is_reported_and_skipped_in_lists(
    store: FileStore, root: Path
) -> None:
    good = agent_spec()
    await store.save_agent(good)
    (root / "agents" / f"{AID}.json").write_bytes(b'{"id": "')

    with pytest.raises(CorruptDataError) as raised:
        await store.get_agent(AID)
    assert raised.value.details == {
        "agent_id": AID,
        "path": str(root / "agents" / f"{AID}.json"),
        "reason": "not valid JSON: EOF while parsing a string at line 1 column 8",
    }
    assert await store.list_agents() == [good]


# -- the TypeScript original's folder ---------------------------------------------------------


@pytest.fixture
def cortex_root(tmp_path: Path) -> Path:
    """A writable copy of cortex's ``.cortex`` folder (the original is read-only)."""
    if not CORTEX.is_dir():
        pytest.fail(f"cortex's sample folder is not next to this checkout ({CORTEX})")
    copy = tmp_path / ".cortex"
    shutil.copytree(CORTEX, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


def cortex_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted((root / "sessions").rglob("*"))
        if path.is_file()
    }


async def test_cortex_sessions_load_exactly(cortex_root: Path) -> None:
    store = FileStore(cortex_root)
    await store.initialize()
    by_id = {s.id: s for s in (await load_all(store)).sessions}
    assert sorted(by_id) == [PLAIN, WEATHER, TRIAGE, EMPTY]

    plain = by_id[PLAIN]
    assert (plain.agent_id, plain.name, plain.status) == (
        CORTEX_AGENT_A,
        "我的第一次对话",
        "active",
    )
    assert (plain.created_at, plain.updated_at, plain.schema_version, plain.revision) == (
        1753776000000,
        1753776009000,
        0,
        0,
    )
    assert plain.context == SessionContext(
        total_tokens=0, total_messages=4, total_function_calls=0, last_activity=1753776009000
    )
    assert [(m.id, m.role, m.content, m.timestamp, m.status) for m in plain.messages()] == [
        (
            "5a0e1f4e-0c55-4f0e-a6a7-5d1f0b8c9a01",
            "user",
            "你好，请介绍一下自己",
            1753776001000,
            "completed",
        ),
        (
            "5a0e1f4e-0c55-4f0e-a6a7-5d1f0b8c9a02",
            "assistant",
            "你好！我是一个助手。",
            1753776003000,
            "completed",
        ),
        (
            "5a0e1f4e-0c55-4f0e-a6a7-5d1f0b8c9a03",
            "user",
            "What can you do?",
            1753776006000,
            "completed",
        ),
        (
            "5a0e1f4e-0c55-4f0e-a6a7-5d1f0b8c9a04",
            "assistant",
            "I can answer questions and call tools.",
            1753776009000,
            "completed",
        ),
    ]

    weather = by_id[WEATHER]
    filled = lambda index: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{WEATHER}#{index}"))  # noqa: E731
    assert weather.history == [
        MessageItem(
            id=filled(0),
            role="system",
            content="Answer in one sentence.",
            timestamp=1753776100000,
        ),
        MessageItem(
            id="6b1f2a5f-1d66-4a1f-b7b8-6e2a1c9d0b01",
            role="user",
            content=[{"type": "text", "text": "Weather in Paris?"}],
            timestamp=1753776101000,
            status="completed",
        ),
        FunctionCallItem(
            id="fc_01",
            name="get_weather",
            arguments='{"city": "Paris"}',
            call_id="call_abc123",
            status="completed",
            provider_data={"model": "gpt-4.1-mini"},
            timestamp=1753776101000,
        ),
        FunctionCallResultItem(
            id=filled(3),
            name="get_weather",
            call_id="call_abc123",
            status="completed",
            output=TextOutput(text="18°C, cloudy"),
            timestamp=1753776101000,
        ),
        FunctionCallItem(
            id="fc_02",
            name="get_forecast",
            arguments='{"city": "Paris", "days": 2}',
            call_id="call_def456",
            status="failed",
            timestamp=1753776101000,
        ),
        FunctionCallResultItem(
            id=filled(5),
            name="get_forecast",
            call_id="call_def456",
            status="failed",
            output=ErrorOutput(error="forecast service unavailable"),
            timestamp=1753776101000,
        ),
        MessageItem(
            id="6b1f2a5f-1d66-4a1f-b7b8-6e2a1c9d0b02",
            role="assistant",
            content=[
                {
                    "type": "output_text",
                    "text": "It is 18°C and cloudy in Paris.",
                    "providerData": {"annotations": []},
                }
            ],
            timestamp=1753776160000,
            status="completed",
        ),
    ]
    assert (weather.context.total_messages, weather.context.total_function_calls) == (3, 2)

    triage = by_id[TRIAGE]
    assert (triage.agent_id, triage.status, triage.context.last_agent_id) == (
        CORTEX_AGENT_B,
        "paused",
        CORTEX_AGENT_A,
    )
    assert triage.history[1] == HandoffItem(
        id="7c2a3b60-2e77-4b2a-88c9-7f3b2d0e1c02",
        from_agent_id=CORTEX_AGENT_B,
        to_agent_id=CORTEX_AGENT_A,
        reason="language",
        timestamp=1753776202000,
    )
    assert [item.type for item in triage.history] == ["message", "handoff", "message"]

    empty = by_id[EMPTY]
    assert (empty.name, empty.status, empty.history) == ("x" * 100, "completed", [])

    again = {s.id: s for s in (await load_all(FileStore(cortex_root))).sessions}
    assert again == by_id  # filled ids and timestamps are the same on every load


async def test_cortex_broken_sessions_are_reported_with_path_and_reason(
    cortex_root: Path,
) -> None:
    store = FileStore(cortex_root)
    await store.initialize()

    report = await load_all(store)

    assert report.corrupt == [
        CorruptRecord(
            TRUNCATED,
            str(snapshot_path(cortex_root, TRUNCATED, CORTEX_AGENT_B)),
            "not valid JSON: EOF while parsing a string at line 1 column 112",
        ),
        CorruptRecord(
            INVALID,
            str(snapshot_path(cortex_root, INVALID, CORTEX_AGENT_B)),
            "name: String should have at least 1 character; "
            "status: Input should be 'active', 'paused' or 'completed'; "
            "extra: Extra inputs are not permitted",
        ),
    ]
    with pytest.raises(CorruptDataError) as raised:
        await store.get_session(TRUNCATED)
    assert raised.value.message == (
        f"session {TRUNCATED} cannot be read from "
        f"{snapshot_path(cortex_root, TRUNCATED, CORTEX_AGENT_B)}: "
        "not valid JSON: EOF while parsing a string at line 1 column 112"
    )


async def test_cortex_broken_files_survive_writes_deletes_and_close(cortex_root: Path) -> None:
    before = cortex_files(cortex_root)
    broken = {name: data for name, data in before.items() if TRUNCATED in name or INVALID in name}
    store = FileStore(cortex_root, fold_min_bytes=0, fold_ratio=0)
    await store.initialize()
    plain = await store.get_session(PLAIN)
    assert plain is not None
    h1, items = bumped(plain.header()), turn_items(1)
    await store.write_session(h1, items, expected_revision=plain.revision)
    for session_id in (TRUNCATED, INVALID):
        with pytest.raises(CorruptDataError):
            await store.write_session(
                header(id=session_id, agent_id=CORTEX_AGENT_B, revision=1), [], expected_revision=0
            )
        with pytest.raises(ConflictError):
            await store.write_session(
                header(id=session_id, agent_id=CORTEX_AGENT_B), [], expected_revision=None
            )
        with pytest.raises(CorruptDataError):
            await store.delete_session(session_id)
    await store.delete_session(EMPTY)
    await store.close()

    after = cortex_files(cortex_root)
    assert {name: after[name] for name in broken} == broken
    assert EMPTY not in "".join(after)
    written = await FileStore(cortex_root).get_session(PLAIN)
    assert written == ChatSession.from_parts(
        h1.model_copy(update={"schema_version": 1}), plain.history + items
    )


async def test_a_cortex_session_takes_turns_and_is_folded_into_our_format(
    cortex_root: Path,
) -> None:
    store = FileStore(cortex_root)
    await store.initialize()
    original = await store.get_session(WEATHER)
    assert original is not None
    untouched = snapshot_path(cortex_root, WEATHER, CORTEX_AGENT_A).read_bytes()
    h1 = bumped(original.header(), updated_at=1753776200000)
    items = turn_items(1)

    await store.write_session(h1, items, expected_revision=0)
    assert snapshot_path(cortex_root, WEATHER, CORTEX_AGENT_A).read_bytes() == untouched
    await store.close()

    on_disk = json.loads(snapshot_path(cortex_root, WEATHER, CORTEX_AGENT_A).read_text("utf-8"))
    original_wire = json.loads(untouched)
    assert (on_disk["schemaVersion"], on_disk["revision"], on_disk["updatedAt"]) == (
        1,
        1,
        1753776200000,
    )
    # The original's items keep every key they had; ours add only the ids and timestamps
    # cortex left out.
    for ours, theirs in zip(on_disk["history"], original_wire["history"], strict=False):
        assert {key: ours[key] for key in theirs} == theirs
    assert len(on_disk["history"]) == len(original_wire["history"]) + 4
    reloaded = await FileStore(cortex_root).get_session(WEATHER)
    assert reloaded is not None
    assert reloaded.history == original.history + items
