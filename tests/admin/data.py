"""Sessions written straight through a store, quickly, with every kind of field set."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from chatruntime.admin import ExportReport, export_store
from chatruntime.admin._common import keeps_checkpoints
from chatruntime.models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    SessionContext,
    SessionHeader,
    TurnKey,
)
from chatruntime.stores import CorruptRecord, SessionStore
from support.factories import T0, agent_spec, turn_items

STATUSES = ("active", "paused", "completed")
WRITERS = 16


def session_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def sample_session(n: int, agent: AgentSpec) -> ChatSession:
    """Session ``n``: one turn of four items, a revision, user, status, metadata, state,
    expiry and an idempotency key that vary with ``n``."""
    at = T0 + n
    # Ids fixed by n, so that the same session is built again equal.
    items = [
        item.model_copy(update={"id": f"00000000-0000-4000-a000-{n * 10 + k:012d}"})
        for k, item in enumerate(turn_items(n, t=at))
    ]
    header = SessionHeader(
        id=session_id(n),
        agent_id=agent.id,
        name=f"Session {n} é",
        created_at=at,
        updated_at=at,
        context=SessionContext(
            last_activity=at, total_messages=2, total_turns=1, total_function_calls=1
        ),
        status=STATUSES[n % 3],
        schema_version=1,
        revision=n % 7,
        user_id=f"user-{n % 5}" if n % 4 else None,
        metadata={"n": n, "tags": ["a", {"b": [1, 2.5, None]}]} if n % 2 else {},
        expires_at=at + 86_400_000 if n % 3 == 0 else None,
        state={"counter": {"value": n}} if n % 5 == 0 else {},
        turn_keys=[TurnKey(key=f"key-{n}", item_id=items[0].id, item_count=4, created_at=at)]
        if n % 6 == 0
        else [],
    )
    return ChatSession.from_parts(header, items)


async def populate(
    store: SessionStore, count: int, *, agents: int = 2, start: int = 0
) -> list[AgentSpec]:
    """Write ``agents`` agents and sessions ``start`` to ``start + count - 1`` through
    ``store`` directly, several at a time (each write waits for its disk or server)."""
    specs = [agent_spec(name=f"Agent {k}", created_at=T0 + k) for k in range(agents)]
    for spec in specs:
        await store.save_agent(spec)
    numbers = iter(range(start, start + count))

    async def writer() -> None:
        for n in numbers:
            session = sample_session(n, specs[n % agents])
            await store.write_session(session.header(), session.history, expected_revision=None)

    async with anyio.create_task_group() as group:
        for _ in range(WRITERS):
            group.start_soon(writer)
    return specs


def sample_checkpoint(session: ChatSession, k: int) -> Checkpoint:
    """A checkpoint of ``session`` after its first two items (it shares them)."""
    return Checkpoint(
        id=f"00000000-0000-4000-9000-{int(session.id[-12:]) * 10 + k:012d}",
        session_id=session.id,
        label=f"before answer {k}",
        created_at=session.created_at + k,
        data={"k": k},
        header=session.header(),
        item_count=3,
        shared_count=2,
        items=session.history[2:3],
    )


async def add_checkpoints(store: SessionStore, every: int = 10) -> int:
    """Save two checkpoints of every ``every``-th session ``populate`` wrote (stores
    without checkpoints get none); how many were saved."""
    if not keeps_checkpoints(store):
        return 0
    saved = 0
    async for found in store.scan_sessions():
        assert not isinstance(found, CorruptRecord)
        if int(found.id[-12:]) % every == 0:
            for k in (1, 2):
                await store.save_checkpoint(sample_checkpoint(found, k))
                saved += 1
    return saved


async def assert_same_data(source: SessionStore, target: SessionStore) -> int:
    """Every agent, session (header, then history item by item) and checkpoint of
    ``source`` is in ``target`` as it is, and ``target`` holds no other session; returns how
    many sessions were compared."""
    assert await target.list_agents() == await source.list_agents()
    checkpoints = keeps_checkpoints(source) and keeps_checkpoints(target)
    compared = 0
    async for found in source.scan_sessions():
        assert not isinstance(found, CorruptRecord), found
        got = await target.get_session(found.id)
        assert got is not None, found.id
        assert got.header() == found.header()
        assert len(got.history) == len(found.history)
        for mine, theirs in zip(got.history, found.history, strict=True):
            assert mine == theirs
        if checkpoints:
            assert await target.list_checkpoints(found.id) == await source.list_checkpoints(
                found.id
            )
        compared += 1
    assert await target.count_sessions() == compared
    return compared


async def export_to(store: SessionStore, path: Path) -> ExportReport:
    """Export ``store`` into the file at ``path``."""
    async with await anyio.open_file(path, "w", encoding="utf-8") as out:

        async def write(line: str) -> None:
            await out.write(line + "\n")

        return await export_store(store, write)


async def lines_of(path: Path) -> AsyncIterator[str]:
    """The lines of the file at ``path``."""
    async with await anyio.open_file(path, encoding="utf-8") as lines:
        async for line in lines:
            yield line


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
