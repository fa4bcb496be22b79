"""``FileStore`` reads the last items of a session from the ends of its files, and opens the
layouts it wrote before (and cortex's) by parsing them whole until their next fold."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chatruntime.models import ChatSession, CorruptDataError, HistoryItem, SessionHeader
from chatruntime.stores import FileStore, _file_io, _file_reading, _file_sessions, load_all
from support.factories import bumped, header, turn_items

pytestmark = pytest.mark.anyio

SID = "0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
CORTEX = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cortex" / ".cortex"
WEATHER = "1b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e"
CORTEX_AGENT_A = "3f1c2a9e-8b7d-4c1e-9f2a-1d2c3b4a5e6f"


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


def turns(first: int, last: int) -> list[HistoryItem]:
    return [item for n in range(first, last + 1) for item in turn_items(n)]


async def write_turns(
    store: FileStore, h: SessionHeader, count: int
) -> tuple[SessionHeader, list[HistoryItem]]:
    """``count`` turns after ``h``, one write each: the last header and the items written."""
    written: list[HistoryItem] = []
    for _ in range(count):
        nxt = bumped(h)
        items = turn_items(nxt.revision)
        await store.write_session(nxt, items, expected_revision=h.revision)
        written += items
        h = nxt
    return h, written


class ReadSpy:
    """Counts the bytes ``FileStore`` reads from session files with ``pread``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        real = _file_io.os.pread

        def spy(fd: int, size: int, offset: int) -> bytes:
            data = real(fd, size, offset)
            self.bytes += len(data)
            return data

        monkeypatch.setattr(_file_io.os, "pread", spy)


# -- tail reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("last", [0, 1, 3, 4, 5, 11, 12, 13, 40])
async def test_the_last_items_are_the_end_of_the_whole_history(
    store: FileStore, root: Path, last: int
) -> None:
    # Two turns in the snapshot, two in the journal: a tail may span both files.
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 1), expected_revision=None)
    latest, _ = await write_turns(store, h, 2)
    assert journal_path(root).exists()

    whole = await store.get_session(SID)
    tail = await store.get_session(SID, last=last)

    assert whole is not None and tail is not None
    assert tail.header() == whole.header() == latest.model_copy(update={"schema_version": 1})
    assert tail.history == (whole.history[len(whole.history) - last :] if last else [])


async def test_the_last_items_of_a_folded_session_come_from_the_snapshot_alone(
    root: Path,
) -> None:
    store = FileStore(root, fold_min_bytes=0, fold_ratio=0)
    h = header(id=SID, agent_id=AID)
    first = turns(0, 2)
    await store.write_session(h, first, expected_revision=None)
    latest, written = await write_turns(store, h, 1)
    assert not journal_path(root).exists()

    tail = await store.get_session(SID, last=6)

    assert tail is not None
    assert tail.revision == latest.revision
    assert tail.history == (first + written)[-6:]


async def test_a_tail_read_reads_the_ends_of_the_files_not_the_history(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(root)
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 499), expected_revision=None)
    await write_turns(store, h, 3)
    size = snapshot_path(root).stat().st_size + journal_path(root).stat().st_size
    assert size > 300_000

    spy = ReadSpy(monkeypatch)
    tail = await store.get_session(SID, last=20)

    assert tail is not None and len(tail.history) == 20
    assert spy.bytes < 60_000


async def test_a_tail_read_does_not_see_damage_in_the_part_it_does_not_read(
    store: FileStore, root: Path
) -> None:
    h = header(id=SID, agent_id=AID)
    history = turns(0, 9)
    await store.write_session(h, history, expected_revision=None)
    data = snapshot_path(root).read_bytes()
    second_item = data.index(b'\n    {"', data.index(b'\n    {"') + 1) + 1
    end_of_line = data.index(b"\n", second_item)
    damaged = data[:second_item] + b"    {}" + data[end_of_line - 1 :]
    snapshot_path(root).write_bytes(damaged)
    fresh = FileStore(root)

    tail = await fresh.get_session(SID, last=8)

    assert tail is not None and tail.history == history[-8:]
    with pytest.raises(CorruptDataError):
        await fresh.get_session(SID)


async def test_a_damaged_line_in_the_tail_is_reported_as_a_whole_read_reports_it(
    store: FileStore, root: Path
) -> None:
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 1), expected_revision=None)
    await write_turns(store, h, 2)
    journal_path(root).write_bytes(
        journal_path(root).read_bytes().replace(b'"revision":2,', b'"revision":"two",', 1)
    )

    with pytest.raises(CorruptDataError) as from_tail:
        await FileStore(root).get_session(SID, last=2)
    with pytest.raises(CorruptDataError) as from_whole:
        await FileStore(root).get_session(SID)

    assert from_tail.value.details == from_whole.value.details
    assert from_tail.value.details["path"] == str(journal_path(root))


async def test_a_journal_left_by_an_interrupted_fold_is_not_read_twice_by_a_tail_read(
    store: FileStore, root: Path
) -> None:
    h = header(id=SID, agent_id=AID)
    first = turns(0, 0)
    await store.write_session(h, first, expected_revision=None)
    latest, written = await write_turns(store, h, 2)
    journal = journal_path(root).read_bytes()
    await store.close()
    journal_path(root).write_bytes(journal)  # the fold "crashed" before removing it

    tail = await FileStore(root).get_session(SID, last=12)

    assert tail is not None
    assert tail.revision == latest.revision
    assert tail.history == first + written


async def test_last_must_not_be_negative(store: FileStore) -> None:
    from chatruntime.models import InvalidInputError

    with pytest.raises(InvalidInputError) as raised:
        await store.get_session(SID, last=-1)
    assert raised.value.details == {"field": "last"}


# -- earlier layouts ----------------------------------------------------------------------------


def previous_layout(session: ChatSession) -> bytes:
    """How this store wrote a snapshot before: the whole session indented, items over several
    lines."""
    return session.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()


async def test_a_snapshot_of_the_previous_layout_reads_whole_and_in_part(root: Path) -> None:
    h = header(id=SID, agent_id=AID)
    history = turns(0, 4)
    snapshot_path(root).parent.mkdir(parents=True)
    snapshot_path(root).write_bytes(previous_layout(ChatSession.from_parts(h, history)))
    store = FileStore(root)

    assert await store.get_session(SID) == ChatSession.from_parts(h, history)
    tail = await store.get_session(SID, last=3)
    assert tail is not None and tail.history == history[-3:]
    assert await store.get_revision(SID) == 0


async def test_a_folder_of_the_previous_layout_opens_and_is_upgraded(root: Path) -> None:
    """Sessions, a journal and the per-session lock files of the previous layout."""
    h = header(id=SID, agent_id=AID, user_id="user-1")
    history = turns(0, 1)
    snapshot_path(root).parent.mkdir(parents=True)
    snapshot_path(root).write_bytes(previous_layout(ChatSession.from_parts(h, history)))
    h1 = bumped(h, name="Renamed")
    second = turn_items(2)
    line: dict[str, Any] = {
        "revision": 1,
        "header": h1.to_wire(),
        "items": [item.to_wire() for item in second],
    }
    journal_path(root).write_text(json.dumps(line, separators=(",", ":")) + "\n", "utf-8")
    for folder in ("locks", "leases"):
        (root / folder).mkdir()
    (root / "locks" / f"{SID}.lock").write_bytes(b"")
    store = FileStore(root)
    await store.initialize()

    page = await store.list_sessions(user_id="user-1")
    assert [(s.id, s.name, s.revision) for s in page.sessions] == [(SID, "Renamed", 1)]
    assert not (root / "locks").exists() and not (root / "leases").exists()
    h2, third = bumped(h1), turn_items(3)
    await store.write_session(h2, third, expected_revision=1)
    await store.close()

    on_disk = snapshot_path(root).read_bytes()
    assert b'\n  "history": [\n    {"id":' in on_disk  # one item per line now
    assert await FileStore(root).get_session(SID) == ChatSession.from_parts(
        h2, history + second + third
    )


async def test_lock_folders_holding_other_files_are_left_in_place(root: Path) -> None:
    (root / "locks").mkdir(parents=True)
    (root / "locks" / f"{SID}.lock").write_bytes(b"")
    (root / "locks" / "notes.txt").write_bytes(b"mine")

    await FileStore(root).initialize()

    assert sorted(path.name for path in (root / "locks").iterdir()) == ["notes.txt"]


async def test_a_cortex_session_is_read_in_part_too(tmp_path: Path) -> None:
    if not CORTEX.is_dir():
        pytest.fail(f"cortex's sample folder is not next to this checkout ({CORTEX})")
    copy = tmp_path / ".cortex"
    shutil.copytree(CORTEX, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    store = FileStore(copy)

    whole = await store.get_session(WEATHER)
    tail = await store.get_session(WEATHER, last=2)

    assert whole is not None and tail is not None
    assert tail.history == whole.history[-2:]
    assert tail.header() == whole.header()
    assert len((await load_all(store)).sessions) == 4


# -- how a tail read reads ------------------------------------------------------------------------


async def test_a_tail_read_over_writes_of_any_size_is_the_end_of_the_whole_history(
    store: FileStore, root: Path
) -> None:
    # Writes of 0, 1, 4 and 30 items: a tail read guesses how many journal lines it needs
    # from what it has read so far, and reads more until it has enough.
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 2), expected_revision=None)
    for size in [1, 0, 30, 4, 0, 1, 1, 4, 0, 2]:
        nxt = bumped(h)
        written = turns(nxt.revision * 10, nxt.revision * 10 + 7)[:size]
        await store.write_session(nxt, written, expected_revision=h.revision)
        h = nxt
    whole = await store.get_session(SID)
    assert whole is not None and journal_path(root).exists()

    for last in range(len(whole.history) + 3):
        tail = await store.get_session(SID, last=last)
        assert tail is not None
        assert tail.header() == whole.header()
        assert tail.history == (whole.history[-last:] if last else [])


async def test_a_torn_last_line_of_the_journal_is_not_part_of_a_tail_read(
    store: FileStore, root: Path
) -> None:
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 0), expected_revision=None)
    latest, _ = await write_turns(store, h, 3)
    whole = await store.get_session(SID)
    with journal_path(root).open("ab") as journal:
        journal.write(b'{"revision":5,"header":{"id":')  # an append that never returned

    tail = await FileStore(root).get_session(SID, last=6)

    assert whole is not None and tail is not None
    assert tail.revision == latest.revision
    assert tail.history == whole.history[-6:]


async def test_a_tail_read_parses_the_lines_it_needs_in_one_call(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 19), expected_revision=None)
    await write_turns(store, h, 20)
    calls: list[str] = []
    for module, name in (
        (_file_sessions, "decode_journal_tail"),
        (_file_sessions, "decode_journal_items_block"),
        (_file_reading, "decode_item_block"),
    ):
        monkeypatch.setattr(module, name, _counted(getattr(module, name), calls))

    from_journal = await store.get_session(SID, last=50)
    assert from_journal is not None and len(from_journal.history) == 50
    assert calls == ["decode_journal_tail"]

    calls.clear()
    across_both = await store.get_session(SID, last=100)
    assert across_both is not None and len(across_both.history) == 100
    assert calls == ["decode_journal_tail", "decode_item_block"]


async def test_a_tail_read_reads_the_head_of_an_unchanged_snapshot_once(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = header(id=SID, agent_id=AID)
    await store.write_session(h, turns(0, 9), expected_revision=None)
    await write_turns(store, h, 3)
    heads: list[int] = []
    real = _file_sessions.read_head

    def spy(fd: int, path: Path, size: int) -> Any:
        heads.append(size)
        return real(fd, path, size)

    monkeypatch.setattr(_file_sessions, "read_head", spy)
    fresh = FileStore(store.root)

    first = await fresh.get_session(SID, last=30)
    second = await fresh.get_session(SID, last=30)

    assert first == second
    assert len(heads) == 1
    await fresh.close()


def _counted(function: Any, calls: list[str]) -> Any:
    def spy(*args: Any) -> Any:
        calls.append(function.__name__)
        return function(*args)

    return spy
