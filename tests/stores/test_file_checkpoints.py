"""``FileStore``'s checkpoints on disk: one JSON file each in
``sessions/<agentId>/<sessionId>.checkpoints/``, written atomically, gone with their session,
and what a killed writer or a cut-short delete leaves is cleared."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatruntime.models import Checkpoint, ConflictError, CorruptDataError, SessionHeader
from chatruntime.stores import FileStore
from support.factories import T0, header, turn_items

pytestmark = pytest.mark.anyio

SID = "0b7d4f3e-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
AID = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
CID = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
OTHER_CID = "7a2f3e4d-5c6b-4a89-9706-b5c4d3e2f1a0"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[FileStore]:
    opened = FileStore(root)
    await opened.write_session(session_header(), turn_items(1), expected_revision=None)
    yield opened
    await opened.close()


def session_header() -> SessionHeader:
    return header(id=SID, agent_id=AID)


def checkpoint(checkpoint_id: str = CID, **overrides: object) -> Checkpoint:
    values: dict[str, object] = {
        "id": checkpoint_id,
        "session_id": SID,
        "created_at": T0,
        "label": "before the edit",
        "header": session_header(),
        "item_count": 5,
        "shared_count": 4,
        "items": turn_items(2)[:1],
    }
    values.update(overrides)
    return Checkpoint.model_validate(values)


def folder(root: Path) -> Path:
    return root / "sessions" / AID / f"{SID}.checkpoints"


async def test_a_checkpoint_is_one_indented_json_file_beside_its_session(
    store: FileStore, root: Path
) -> None:
    saved = checkpoint()
    await store.save_checkpoint(saved)
    assert sorted(os.listdir(root / "sessions" / AID)) == [f"{SID}.checkpoints", f"{SID}.json"]
    assert os.listdir(folder(root)) == [f"{CID}.json"]
    text = (folder(root) / f"{CID}.json").read_text(encoding="utf-8")
    assert text == saved.model_dump_json(by_alias=True, exclude_none=True, indent=2)
    assert json.loads(text)["sessionId"] == SID


async def test_deleting_the_session_removes_its_checkpoints_folder(
    store: FileStore, root: Path
) -> None:
    await store.save_checkpoint(checkpoint())
    await store.save_checkpoint(checkpoint(OTHER_CID))
    assert await store.delete_session(SID) is True
    assert os.listdir(root / "sessions" / AID) == []


async def test_clearing_removes_the_folder_but_leaves_files_that_are_not_checkpoints(
    store: FileStore, root: Path
) -> None:
    await store.save_checkpoint(checkpoint())
    (folder(root) / "notes.txt").write_text("mine", encoding="utf-8")
    assert await store.clear_checkpoints(SID) == 1
    assert os.listdir(folder(root)) == ["notes.txt"]
    assert await store.list_checkpoints(SID) == []


async def test_a_temporary_file_left_by_a_killed_save_is_removed_by_the_next_listing(
    store: FileStore, root: Path
) -> None:
    saved = checkpoint()
    await store.save_checkpoint(saved)
    leftover = folder(root) / f".{OTHER_CID}.json.tmp"
    leftover.write_bytes(b'{"id": "half of a checkp')
    assert await store.list_checkpoints(SID) == [saved]
    assert os.listdir(folder(root)) == [f"{CID}.json"]


async def test_a_damaged_checkpoint_is_corrupt_to_get_and_left_out_of_the_list(
    store: FileStore, root: Path
) -> None:
    kept = checkpoint(OTHER_CID)
    await store.save_checkpoint(checkpoint())
    await store.save_checkpoint(kept)
    damaged = folder(root) / f"{CID}.json"
    damaged.write_bytes(b"{not json")
    with pytest.raises(CorruptDataError) as raised:
        await store.get_checkpoint(SID, CID)
    assert raised.value.details["path"] == str(damaged)
    assert raised.value.details["checkpoint_id"] == CID
    assert await store.list_checkpoints(SID) == [kept]
    assert damaged.read_bytes() == b"{not json"  # never rewritten


async def test_a_checkpoint_file_under_another_id_is_corrupt(store: FileStore, root: Path) -> None:
    await store.save_checkpoint(checkpoint())
    os.rename(folder(root) / f"{CID}.json", folder(root) / f"{OTHER_CID}.json")
    with pytest.raises(CorruptDataError) as raised:
        await store.get_checkpoint(SID, OTHER_CID)
    assert raised.value.details["reason"] == f"the file holds checkpoint {CID} of session {SID}"


async def test_a_checkpoint_of_a_missing_session_is_refused(root: Path) -> None:
    store = FileStore(root)
    with pytest.raises(ConflictError):
        await store.save_checkpoint(checkpoint())
    await store.close()
    assert os.listdir(root / "sessions") == []


async def test_checkpoints_left_by_a_cut_short_delete_are_removed_when_the_index_is_rebuilt(
    store: FileStore, root: Path
) -> None:
    await store.save_checkpoint(checkpoint())
    await store.close()
    # The delete removed the snapshot, then its process died.
    (root / "sessions" / AID / f"{SID}.json").unlink()
    (root / "index.sqlite3").unlink()

    reopened = FileStore(root)
    await reopened.initialize()
    assert os.listdir(root / "sessions" / AID) == []
    await reopened.close()


async def test_checkpoints_left_by_a_cut_short_delete_do_not_reach_a_new_session(
    store: FileStore, root: Path
) -> None:
    await store.save_checkpoint(checkpoint())
    await store.close()
    stray = folder(root) / f"{CID}.json"
    kept = stray.read_bytes()
    fresh = FileStore(root)
    assert await fresh.delete_session(SID) is True
    folder(root).mkdir()
    stray.write_bytes(kept)  # as if the delete had died before removing it

    await fresh.write_session(session_header(), [], expected_revision=None)
    assert await fresh.list_checkpoints(SID) == []
    assert not folder(root).exists()
    await fresh.close()
