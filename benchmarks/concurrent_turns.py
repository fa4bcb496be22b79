"""200 sessions x 20 turns at once: turns per second and the 99th percentile of a turn.

Ours: one ``SessionManager`` (default settings) over the store; every session runs its turns
one after another through ``send_message``, all sessions at the same time. The SDK's: the same
with ``Runner.run(agent, message, session=...)``, one SDK session object per conversation, as
its documentation shows. Both use the same zero-latency model, so the figures are the cost of
the runtime and the store. A turn's latency is timed from the call to its return.

Run alone: ``python -m benchmarks concurrent_turns``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import anyio
from agents import Runner

from chatruntime import AgentManager, SessionManager

from ._bench import (
    SDK_NAMES,
    STORE_NAMES,
    Bench,
    StoreKind,
    close_sdk_session,
    ms,
    percentile,
    progress,
)
from ._data import AGENT_ID, session_id
from ._model import RUN_CONFIG, bench_agent
from ._report import Row, Section, Target
from ._timing import TimedSession, TimedStore

NAME = "concurrent"
TARGETED: tuple[StoreKind, ...] = ("file", "sqlite")
"""The stores the issue sets targets for here; the others are shown for information."""
RATE_TARGET = Target("ratio_at_least", 1.5)
P99_TARGET = Target("at_most", 50.0)
ERRORS_TARGET = Target("at_most", 0)


@dataclass
class Load:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    store_seconds: list[float] = field(default_factory=list)
    """Per turn, the time spent inside store calls (lease waits included)."""
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def describe_failures(self) -> str:
        return ", ".join(f"{count} {code}" for code, count in self.failures.most_common())


async def _ours(bench: Bench, kind: StoreKind) -> Load:
    sizes = bench.sizes
    store = TimedStore(bench.open_store(kind, NAME))
    agents = AgentManager(store)
    agents.register(bench_agent(), agent_id=AGENT_ID)
    manager = SessionManager(store, agents, run_config=RUN_CONFIG)
    load = Load()
    try:
        (await manager.initialize()).unwrap()
        ids = [
            (await manager.create_session(AGENT_ID, f"Concurrent {n}")).unwrap().id
            for n in range(sizes.concurrent_sessions)
        ]
        for sid in ids:
            store.take(sid)

        async def converse(sid: str) -> None:
            for turn in range(sizes.concurrent_turns):
                started = time.perf_counter()
                result = await manager.send_message(sid, f"message {turn}")
                load.latencies.append(time.perf_counter() - started)
                load.store_seconds.append(store.take(sid))
                if not result.success:
                    assert result.error is not None
                    load.failures[result.error.code] += 1

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for sid in ids:
                group.start_soon(converse, sid)
        load.seconds = time.perf_counter() - started
    finally:
        await manager.close()
    return load


async def _sdk(bench: Bench, kind: StoreKind) -> Load:
    sizes = bench.sizes
    agent = bench_agent()
    sessions = [
        TimedSession(bench.sdk_session(kind, NAME, session_id(NAME, n)))
        for n in range(sizes.concurrent_sessions)
    ]
    load = Load()

    async def converse(session: TimedSession) -> None:
        for turn in range(sizes.concurrent_turns):
            started = time.perf_counter()
            try:
                await Runner.run(agent, f"message {turn}", session=session, run_config=RUN_CONFIG)
            except Exception as error:
                load.failures[type(error).__name__] += 1
            load.latencies.append(time.perf_counter() - started)
            load.store_seconds.append(session.take())

    try:
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for session in sessions:
                group.start_soon(converse, session)
        load.seconds = time.perf_counter() - started
    finally:
        for session in sessions:
            await close_sdk_session(session.inner)
    return load


async def run(bench: Bench) -> list[Section]:
    sizes = bench.sizes
    section = Section(
        f"3. {sizes.concurrent_sessions} sessions x {sizes.concurrent_turns} turns at once",
        "ours: SessionManager.send_message, default settings; SDK: Runner.run(agent, message, "
        "session=...); same zero-latency model; a turn's latency from call to return, which "
        "with every session in flight at once is mostly waiting for the CPU behind the other "
        "turns (about sessions / turns per second); the store time of a turn adds up its "
        "store calls (lease waits included)",
    )
    sdk_done: dict[str, Load | Exception] = {}
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
            ours: Load | Exception = await _ours(bench, kind)
        except Exception as error:
            ours = error
        for failed, who in ((ours, ours_name), (theirs, sdk_name)):
            if isinstance(failed, Exception):
                section.errors.append(f"{who}: {type(failed).__name__}: {failed}")
        if isinstance(ours, Exception) or isinstance(theirs, Exception):
            continue
        targeted = kind in TARGETED
        section.add(
            Row(
                f"{ours_name} vs {sdk_name}: turns/s",
                ours.rate,
                theirs.rate,
                unit="turns/s",
                target=RATE_TARGET if targeted else None,
            )
        )
        section.add(
            Row(
                f"{ours_name} vs {sdk_name}: p99 turn",
                ms(percentile(ours.latencies, 0.99)),
                ms(percentile(theirs.latencies, 0.99)),
                target=P99_TARGET if targeted else None,
            )
        )
        section.add(
            Row(
                f"{ours_name} vs {sdk_name}: p99 store time of a turn",
                ms(percentile(ours.store_seconds, 0.99)),
                ms(percentile(theirs.store_seconds, 0.99)),
            )
        )
        section.add(
            Row(
                f"{ours_name} vs {sdk_name}: failed turns",
                sum(ours.failures.values()),
                sum(theirs.failures.values()),
                unit="turns",
                target=ERRORS_TARGET,
                note="; ".join(
                    f"{who}: {load.describe_failures()}"
                    for who, load in (("ours", ours), ("SDK", theirs))
                    if load.failures
                ),
            )
        )
    await bench.close_sdk_clients()
    return [section]
