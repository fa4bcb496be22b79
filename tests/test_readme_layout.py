"""The README's picture of a FileStore folder is the folder a run leaves: every path it lists
exists after a turn and a checkpoint (but the snapshot being written, which lives only while
it is written), and after ``close()`` no journal is left."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatruntime import AgentManager, FileStore, SessionManager

pytestmark = pytest.mark.anyio

README = Path(__file__).resolve().parent.parent / "README.md"


def listed_paths() -> list[str]:
    """The paths of the FileStore layout block, placeholders (``<agentId>``...) kept."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("#### `FileStore`") :]
    block = section[section.index("```\n<root>/\n") + len("```\n<root>/\n") :]
    block = block[: block.index("```")]
    paths = []
    for line in block.splitlines():
        stripped = line.strip()
        if not stripped or not stripped.startswith(("sessions", "agents", "index", ".")):
            continue
        paths.append(stripped.split()[0])
    return paths


def test_the_layout_block_lists_what_the_tests_below_check() -> None:
    assert listed_paths() == [
        "sessions/<agentId>/<sessionId>.json",
        "sessions/<agentId>/<sessionId>.journal",
        "agents/<agentId>.json",
        "sessions/<agentId>/<sessionId>.checkpoints/<checkpointId>.json",
        "sessions/<agentId>/.<sessionId>.json.tmp",
        "index.sqlite3",
        "sessions.lock",
    ]


async def test_every_listed_path_exists_after_a_run(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    agents = AgentManager(store)
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
    session = (await manager.create_session(agent.id, "chat")).unwrap()
    (await manager.send_message(session.id, "Hello")).unwrap()
    checkpoint = (await manager.save_checkpoint(session.id, "first")).unwrap()
    (await manager.send_message(session.id, "Again")).unwrap()
    names = {"agentId": agent.id, "sessionId": session.id, "checkpointId": checkpoint.id}

    def resolved(listed: str) -> Path:
        return tmp_path / re.sub(r"<(\w+)>", lambda m: names[m.group(1)], listed)

    transient = {"sessions/<agentId>/.<sessionId>.json.tmp"}
    for listed in listed_paths():
        if listed in transient:
            assert not resolved(listed).exists(), listed
        else:
            assert resolved(listed).is_file(), listed
    await manager.close()
    # Closing folds the journal: the .json alone is the complete record.
    assert not resolved("sessions/<agentId>/<sessionId>.journal").exists()
    reopened = FileStore(tmp_path)
    await reopened.initialize()
    try:
        stored = await reopened.get_session(session.id)
        assert stored is not None and len(stored.history) == 4
    finally:
        await reopened.close()
