"""20,000 sessions of 20 items: what a fresh process pays to start on them and do one turn.

Each store is filled directly (``write_session``, many at once), as is the SDK's
``SQLiteSession`` database (its own tables, one transaction). Then a fresh process per probe
(``benchmarks._probe``) does what a worker does after a restart, timing it and reading its
memory before and after:

- ours: build the ``SessionManager``, ``initialize()``, open one session (``get_session``),
  ``send_message`` once; then the first page of ``list_sessions`` (50 headers) and the next;
- SDK: open ``SQLiteSession`` on the same number of sessions, ``get_items()`` of one, and one
  ``Runner.run`` turn with that session.

Each probe runs three times; the table shows the medians.

Run alone: ``python -m benchmarks many_sessions``.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from agents.memory import SQLiteSession

from ._bench import STORE_NAMES, Bench, StoreKind, progress
from ._data import T0, first_header, header_after, history_of, sdk_turn_items, session_id
from ._report import Row, Section, Target
from ._services import REPO

NAME = "many"
PAGE = 50
START_TARGET = Target("at_most", 50.0)
RSS_TARGET = Target("at_most", 50.0)
PAGE_TARGET = Target("at_most", 20.0)
PROBE_TIMEOUT = 300.0
_FILL_CONCURRENCY: dict[StoreKind, int] = {"file": 16, "sqlite": 4, "redis": 32, "postgres": 16}
"""Writes in flight while filling: enough to overlap fsyncs, where the store can."""
_FILL_BATCH = 2000


def _turns(bench: Bench) -> int:
    return bench.sizes.items_per_session // 4


async def _fill_ours(bench: Bench, kind: StoreKind) -> None:
    sizes = bench.sizes
    store = bench.open_store(kind, NAME)
    await store.initialize()
    limiter = anyio.CapacityLimiter(_FILL_CONCURRENCY[kind])
    turns = _turns(bench)

    async def write(n: int) -> None:
        async with limiter:
            # Activity one second apart: a listing has an order to keep.
            header = header_after(
                first_header(session_id(NAME, n), name=f"Session {n}"), turns, at=T0 + n * 1000
            )
            items, _ = history_of(sizes.items_per_session)
            await store.write_session(header, items, expected_revision=None)

    try:
        for start in range(0, sizes.many_sessions, _FILL_BATCH):
            async with anyio.create_task_group() as group:
                for n in range(start, min(start + _FILL_BATCH, sizes.many_sessions)):
                    group.start_soon(write, n)
    finally:
        await store.close()


def _fill_sdk(bench: Bench) -> Path:
    """The SDK's tables (made by ``SQLiteSession`` itself), filled in one transaction."""
    sizes = bench.sizes
    database = bench.sdk_database(NAME)
    SQLiteSession(session_id(NAME, 0), database).close()
    turns = _turns(bench)
    with sqlite3.connect(database) as connection:
        for start in range(0, sizes.many_sessions, _FILL_BATCH):
            ids = [
                session_id(NAME, n)
                for n in range(start, min(start + _FILL_BATCH, sizes.many_sessions))
            ]
            connection.executemany(
                "INSERT INTO agent_sessions (session_id) VALUES (?)", [(sid,) for sid in ids]
            )
            connection.executemany(
                "INSERT INTO agent_messages (session_id, message_data) VALUES (?, ?)",
                [
                    (sid, json.dumps(item))
                    for sid in ids
                    for turn in range(1, turns + 1)
                    for item in sdk_turn_items(turn)
                ],
            )
    connection.close()
    return database


def _probe(job: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks._probe", json.dumps(job)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"probe exited with {completed.returncode}: {tail}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


async def _probes(bench: Bench, job: dict[str, Any]) -> dict[str, Any]:
    """The median of each figure over ``sizes.probes`` fresh processes; other values (what
    the probe saw) from the first, since each probe's turn adds to the session."""
    runs = [await anyio.to_thread.run_sync(_probe, job) for _ in range(bench.sizes.probes)]
    merged: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [run[key] for run in runs]
        if isinstance(first, float) and all(isinstance(v, float) for v in values):
            merged[key] = statistics.median(values)
        else:
            merged[key] = first
    return merged


async def run(bench: Bench) -> list[Section]:
    sizes = bench.sizes
    target_session = session_id(NAME, sizes.many_sessions // 2)
    section = Section(
        f"4. A fresh process on {sizes.many_sessions:,} sessions of "
        f"{sizes.items_per_session} items",
        f"median of {sizes.probes} fresh processes, after imports; ours: SessionManager "
        "initialize() + get_session + send_message, then list_sessions pages of "
        f"{PAGE}; SDK: SQLiteSession open + get_items() + one Runner.run turn",
    )
    progress(f"{NAME}: filling SQLiteSession with {sizes.many_sessions:,} sessions")
    started = time.perf_counter()
    database = await anyio.to_thread.run_sync(_fill_sdk, bench)
    sdk_fill = time.perf_counter() - started
    sdk: dict[str, Any] | None = None
    try:
        sdk = await _probes(
            bench, {"side": "sdk", "session_id": target_session, "database": str(database)}
        )
        if sdk["history"] != sizes.items_per_session:
            raise RuntimeError(f"SDK probe read {sdk['history']} items")
    except Exception as error:
        section.errors.append(f"SQLiteSession probe: {type(error).__name__}: {error}")
    if sdk is not None:
        section.add(
            Row(
                "SQLiteSession: open + get_items() of one session",
                None,
                sdk["read_ms"],
            )
        )
    for kind in bench.kinds:
        name = STORE_NAMES[kind]
        progress(f"{NAME}: filling {name} with {sizes.many_sessions:,} sessions")
        try:
            started = time.perf_counter()
            await _fill_ours(bench, kind)
            fill = time.perf_counter() - started
            progress(f"{NAME}: probing {name}")
            ours = await _probes(
                bench,
                {
                    "side": "ours",
                    "url": bench.store_url(kind, NAME),
                    "options": bench.store_options(kind, NAME),
                    "session_id": target_session,
                    "page": PAGE,
                },
            )
            _check(ours, sizes.items_per_session, target_session, sizes.many_sessions)
        except Exception as error:
            section.errors.append(f"{name}: {type(error).__name__}: {error}")
            continue
        # The SDK figures are SQLite's: beside our file and SQLite stores only.
        versus = sdk if kind in ("file", "sqlite") else None
        section.add(
            Row(
                f"{name}: start + open one session + one turn",
                ours["total_ms"],
                versus["total_ms"] if versus else None,
                target=START_TARGET,
                note=f"initialize() {ours['initialize_ms']:.1f} ms",
            )
        )
        section.add(
            Row(
                f"{name}: RSS growth",
                ours["rss_growth_mb"],
                versus["rss_growth_mb"] if versus else None,
                unit="MB",
                target=RSS_TARGET,
                note=f"peak {ours['peak_growth_mb']:.1f} MB",
            )
        )
        section.add(Row(f"{name}: list_sessions first page", ours["page_ms"], target=PAGE_TARGET))
        section.add(Row(f"{name}: list_sessions next page", ours["next_page_ms"]))
        section.add(Row(f"{name}: filling the store", fill, unit="s"))
    section.add(Row("SQLiteSession: filling its tables", None, sdk_fill, unit="s"))
    return [section]


def _check(ours: dict[str, Any], items: int, sid: str, sessions: int) -> None:
    """What the probe saw must be what was stored: the session whole, the listing right."""
    if ours["history"] != items:
        raise RuntimeError(f"the probe's session had {ours['history']} items, not {items}")
    if ours["listed"] != min(PAGE, sessions):
        raise RuntimeError(f"the first page listed {ours['listed']} sessions")
    if ours["first_listed"] != sid:
        raise RuntimeError("the session just used is not first in the listing")
