"""Per-turn store cost at turn 10 and turn 2,000, and the last-50 read of a 2,000-turn session.

The store-level part of a turn, timed from the first call to the last:

- ours, as the manager does it: take the session's lease, learn the stored revision (from
  the lease when the store read it in the same step, else ``get_revision``), then
  ``write_session(header, 4 items, expected_revision, lease=lease)`` and give the lease back;
- the SDK's, as its runner does it with a session: ``get_items()`` (the whole history,
  which the next model call needs) then ``add_items(4 items)``.

Our stores run every turn from the first, so whatever a store does now and then (a file
store folding its journal) happens where it would in use. The SDK's session is filled in
bulk up to the window of each point, then its window's turns are timed one by one. Each
point reports the median of the turns ``(point - 10, point + 10]``.

Then, on the same 2,000-turn sessions: ``get_session(id, last=50)`` and the manager's
``get_recent_messages(id, limit=50)`` against the SDK's ``get_items(50)``.

Run alone: ``python -m benchmarks per_turn``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.items import TResponseInputItem

from chatruntime import AgentManager, SessionManager

from ._bench import (
    SDK_NAMES,
    STORE_NAMES,
    Bench,
    StoreKind,
    close_sdk_session,
    median_ms,
    ms,
    progress,
)
from ._data import first_header, header_after, sdk_turn_items, session_id, turn_items
from ._model import RUN_CONFIG
from ._report import Row, Section, Target

NAME = "per_turn"
SCENARIOS = ("per_turn",)
PER_TURN_TARGET = Target("ratio_at_most", 1.2)
LAST_TARGET = Target("ratio_at_most", 2.0)
_BULK_ITEMS = 400
"""Untimed SDK turns are added this many items at a time."""


@dataclass
class Timings:
    turns: dict[int, float] = field(default_factory=dict)
    """Seconds of each timed turn."""
    last: list[float] = field(default_factory=list)
    """Seconds of each last-N read of the store (ours) or the session (SDK)."""
    recent_first: float | None = None
    """Seconds of the manager's first ``get_recent_messages`` (nothing cached yet)."""
    recent: list[float] = field(default_factory=list)
    """Seconds of each later ``get_recent_messages``."""


def _windows(bench: Bench) -> dict[int, range]:
    half = bench.sizes.half_window
    return {
        point: range(max(1, point - half + 1), point + half + 1)
        for point in bench.sizes.turn_points
    }


async def _ours(bench: Bench, kind: StoreKind) -> Timings:
    sizes = bench.sizes
    last_turn = max(sizes.turn_points) + sizes.half_window
    store = bench.open_store(kind, NAME)
    await store.initialize()
    manager: SessionManager | None = None
    timings = Timings()
    try:
        sid = session_id(NAME, 0)
        first = first_header(sid)
        await store.write_session(first, [], expected_revision=None)
        for n in range(1, last_turn + 1):
            header, items = header_after(first, n), turn_items(n)
            started = time.perf_counter()
            async with store.lease(sid) as lease:
                revision = lease.revision if lease.revision_known else await store.get_revision(sid)
                await store.write_session(header, items, expected_revision=revision, lease=lease)
            timings.turns[n] = time.perf_counter() - started
            if revision != n - 1:
                raise RuntimeError(f"turn {n} found revision {revision}, not {n - 1}")

        for _ in range(sizes.read_samples):
            started = time.perf_counter()
            session = await store.get_session(sid, last=sizes.last_items)
            timings.last.append(time.perf_counter() - started)
            _check_last(session.history if session else None, sizes.last_items, STORE_NAMES[kind])

        agents = AgentManager(store)
        manager = SessionManager(store, agents, run_config=RUN_CONFIG)
        (await manager.initialize()).unwrap()
        for index in range(sizes.read_samples + 1):
            started = time.perf_counter()
            recent = (await manager.get_recent_messages(sid, sizes.last_items)).unwrap()
            seconds = time.perf_counter() - started
            if index == 0:
                timings.recent_first = seconds
            else:
                timings.recent.append(seconds)
            _check_last(recent, sizes.last_items, "get_recent_messages")
    finally:
        if manager is not None:
            await manager.close()  # closes the store too
        else:
            await store.close()
    return timings


async def _sdk(bench: Bench, kind: StoreKind) -> Timings:
    sizes = bench.sizes
    timed = {n for window in _windows(bench).values() for n in window}
    last_turn = max(timed)
    session = bench.sdk_session(kind, NAME, session_id(NAME, 0))
    timings = Timings()
    try:
        pending: list[TResponseInputItem] = []
        for n in range(1, last_turn + 1):
            if n not in timed:
                pending.extend(sdk_turn_items(n))
                if len(pending) >= _BULK_ITEMS:
                    await session.add_items(pending)
                    pending = []
                continue
            if pending:
                await session.add_items(pending)
                pending = []
            items = sdk_turn_items(n)
            started = time.perf_counter()
            history = await session.get_items()
            await session.add_items(items)
            timings.turns[n] = time.perf_counter() - started
            if len(history) != 4 * (n - 1):
                raise RuntimeError(f"SDK turn {n} read {len(history)} items, not {4 * (n - 1)}")
        for _ in range(sizes.read_samples):
            started = time.perf_counter()
            last = await session.get_items(sizes.last_items)
            timings.last.append(time.perf_counter() - started)
            _check_last(last, sizes.last_items, SDK_NAMES[kind])
    finally:
        await close_sdk_session(session)
    return timings


def _check_last(items: Sequence[object] | None, n: int, who: str) -> None:
    if items is None or len(items) != n:
        raise RuntimeError(f"{who} returned {None if items is None else len(items)}, not {n}")


async def run(bench: Bench) -> list[Section]:
    sizes = bench.sizes
    low, high = sizes.turn_points
    samples = 2 * sizes.half_window
    per_turn = Section(
        "1. Per-turn store cost",
        f"median of {samples} turns around turn {low} and turn {high} (4 items a turn); ours: "
        "lease + revision check + write_session; SDK: get_items() + add_items(); "
        "fsync on every commit on both sides",
    )
    last = Section(
        f"2. Last-{sizes.last_items} read of a {high + sizes.half_window}-turn session",
        f"median of {sizes.read_samples} reads; ours: get_session(id, last={sizes.last_items}) "
        f"and SessionManager.get_recent_messages(limit={sizes.last_items}); "
        f"SDK: get_items({sizes.last_items})",
    )
    windows = _windows(bench)
    sdk_done: dict[str, Timings | Exception] = {}
    for kind in bench.kinds:
        ours_name, sdk_name = STORE_NAMES[kind], SDK_NAMES[kind]
        if sdk_name not in sdk_done:
            progress(f"{NAME}: {sdk_name}")
            try:
                sdk_done[sdk_name] = await _sdk(bench, kind)
            except Exception as error:
                sdk_done[sdk_name] = error
        theirs = sdk_done[sdk_name]
        progress(f"{NAME}: {ours_name}")
        try:
            ours: Timings | Exception = await _ours(bench, kind)
        except Exception as error:
            ours = error
        for section in (per_turn, last):
            for failed, who in ((ours, ours_name), (theirs, sdk_name)):
                if isinstance(failed, Exception):
                    section.errors.append(f"{who}: {type(failed).__name__}: {failed}")
        if isinstance(ours, Exception) or isinstance(theirs, Exception):
            continue
        target = PER_TURN_TARGET if kind != "postgres" else None
        for point, window in windows.items():
            per_turn.add(
                Row(
                    f"{ours_name} vs {sdk_name}, turn {point}",
                    median_ms([ours.turns[n] for n in window]),
                    median_ms([theirs.turns[n] for n in window]),
                    target=target,
                )
            )
        sdk_last = median_ms(theirs.last)
        last.add(
            Row(
                f"{ours_name}.get_session(last=N)",
                median_ms(ours.last),
                sdk_last,
                target=LAST_TARGET,
            )
        )
        last.add(
            Row(
                f"get_recent_messages on {ours_name}",
                median_ms(ours.recent),
                sdk_last,
                target=LAST_TARGET,
            )
        )
        assert ours.recent_first is not None
        last.add(
            Row(
                f"get_recent_messages on {ours_name}, first call",
                ms(ours.recent_first),
                sdk_last,
                note="session not cached yet",
            )
        )
    await bench.close_sdk_clients()
    return [per_turn, last]
