"""A fresh process that starts on a big store, does one turn, and reports time and memory.

Run by ``many_sessions`` as ``python -m benchmarks._probe '<json>'``; prints one JSON object
as its last line. Modules are imported before the clock and the memory baseline start, so
the figures are what opening the data costs, not what loading Python code costs.

Memory is read from ``/proc/self/status``: ``VmRSS`` before and after, and ``VmHWM`` (the
peak) after resetting it through ``/proc/self/clear_refs``, so a burst that is freed again
before the end still shows.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {name}")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _warm_imports(url: str) -> None:
    # Attribute access imports an optional store's module (see chatruntime.stores).
    import agents.run

    import chatruntime.stores

    assert agents.run is not None
    if url.startswith("sqlite"):
        import aiosqlite
        import sqlalchemy.dialects.sqlite.aiosqlite

        assert aiosqlite and sqlalchemy.dialects.sqlite.aiosqlite
        assert chatruntime.stores.SqlStore is not None
    elif url.startswith("postgresql"):
        import asyncpg
        import sqlalchemy.dialects.postgresql.asyncpg

        assert asyncpg and sqlalchemy.dialects.postgresql.asyncpg
        assert chatruntime.stores.SqlStore is not None
    elif url.startswith("redis"):
        import redis.asyncio

        assert redis.asyncio
        assert chatruntime.stores.RedisStore is not None


async def _ours(job: dict[str, Any]) -> dict[str, Any]:
    _warm_imports(job["url"])
    from chatruntime import AgentManager, SessionManager
    from chatruntime.stores import open_store

    from ._data import AGENT_ID
    from ._model import RUN_CONFIG, bench_agent

    sid: str = job["session_id"]
    limit: int = job["page"]
    rss_before = _status_kb("VmRSS")
    peak_known = _reset_peak()
    started = time.perf_counter()
    store = open_store(job["url"], **job["options"])
    agents = AgentManager(store)
    agents.register(bench_agent(), agent_id=AGENT_ID)
    manager = SessionManager(store, agents, run_config=RUN_CONFIG)
    (await manager.initialize()).unwrap()
    initialized = time.perf_counter()
    session = (await manager.get_session(sid)).unwrap()
    opened = time.perf_counter()
    reply = (await manager.send_message(sid, "hello")).unwrap()
    answered = time.perf_counter()
    rss_after = _status_kb("VmRSS")
    peak = _status_kb("VmHWM") if peak_known else rss_after

    page_started = time.perf_counter()
    page = (await manager.list_sessions(limit=limit)).unwrap()
    page_seconds = time.perf_counter() - page_started
    next_seconds = None
    if page.next_cursor is not None:
        next_started = time.perf_counter()
        following = (await manager.list_sessions(limit=limit, cursor=page.next_cursor)).unwrap()
        next_seconds = time.perf_counter() - next_started
        if {s.id for s in following.sessions} & {s.id for s in page.sessions}:
            raise RuntimeError("the second page repeats sessions of the first")
    await manager.close()
    return {
        "initialize_ms": _ms(initialized - started),
        "open_ms": _ms(opened - initialized),
        "turn_ms": _ms(answered - opened),
        "total_ms": _ms(answered - started),
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "peak_growth_mb": (peak - rss_before) / 1024,
        "history": len(session.history),
        "reply": reply.content if isinstance(reply.content, str) else str(reply.content),
        "page_ms": _ms(page_seconds),
        "next_page_ms": None if next_seconds is None else _ms(next_seconds),
        "listed": len(page.sessions),
        "first_listed": page.sessions[0].id if page.sessions else None,
    }


async def _sdk(job: dict[str, Any]) -> dict[str, Any]:
    from agents import Runner
    from agents.memory import SQLiteSession

    from ._model import RUN_CONFIG, bench_agent

    agent = bench_agent()
    rss_before = _status_kb("VmRSS")
    peak_known = _reset_peak()
    started = time.perf_counter()
    session = SQLiteSession(job["session_id"], job["database"])
    items = await session.get_items()
    read = time.perf_counter()
    await Runner.run(agent, "hello", session=session, run_config=RUN_CONFIG)
    answered = time.perf_counter()
    rss_after = _status_kb("VmRSS")
    peak = _status_kb("VmHWM") if peak_known else rss_after
    session.close()
    return {
        "read_ms": _ms(read - started),
        "total_ms": _ms(answered - started),
        "rss_growth_mb": (rss_after - rss_before) / 1024,
        "peak_growth_mb": (peak - rss_before) / 1024,
        "history": len(items),
    }


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    from agents import set_tracing_disabled

    set_tracing_disabled(True)
    work = _ours if job["side"] == "ours" else _sdk
    print(json.dumps(asyncio.run(work(job))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
