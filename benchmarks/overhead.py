"""What ``send_message`` adds to a bare ``Runner.run``, at 10, 1,000 and 5,000 history items.

The same agent and zero-latency model on both sides; ours runs over a ``MemoryStore`` so
the figure is the manager's own work (loading and converting history, locks, statistics,
building the items it stores), not a disk's. The bare run is what an SDK user writes who
keeps the conversation themselves: ``Runner.run(agent, history + [message])``, then
``history = result.to_input_list()``; so both histories grow by the same two items a turn.
Calls alternate between the two sides, each after a garbage collection so that none falls
due inside it, and the overhead is the median of the paired differences.

Run alone: ``python -m benchmarks overhead``.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from agents import Agent, Runner
from agents.items import TResponseInputItem

from chatruntime import AgentManager, SessionManager
from chatruntime.stores import MemoryStore

from ._bench import Bench, median_ms, ms
from ._data import AGENT_ID, first_header, header_after, history_of, session_id
from ._model import RUN_CONFIG, ConstantModel, bench_agent
from ._report import Row, Section, Target

NAME = "overhead"
OVERHEAD_TARGET = Target("at_most", 1.0)
FLAT_TARGET = Target("at_most", 1.0)
WARM_UP = 3


async def _measure(bench: Bench, length: int) -> tuple[list[float], list[float]]:
    """Seconds of each ``send_message`` and of each bare run, in pairs."""
    ours_history, sdk_history = history_of(length)
    model = ConstantModel()
    agent = bench_agent(model)
    store = MemoryStore()
    agents = AgentManager(store)
    agents.register(agent, agent_id=AGENT_ID)
    manager = SessionManager(store, agents, run_config=RUN_CONFIG)
    (await manager.initialize()).unwrap()
    try:
        sid = session_id(NAME, length)
        header = header_after(first_header(sid), length // 4)
        await store.write_session(header, ours_history, expected_revision=None)
        bare: list[TResponseInputItem] = list(sdk_history)
        ours: list[float] = []
        theirs: list[float] = []
        for n in range(WARM_UP + bench.sizes.overhead_samples):
            message = f"message {n}"
            # A collection left pending by the previous call would land in a random side's
            # timing: start each call with none due.
            gc.collect()
            started = time.perf_counter()
            reply = (await manager.send_message(sid, message)).unwrap()
            ours_seconds = time.perf_counter() - started
            ours_sent = model.last_input_items
            gc.collect()
            started = time.perf_counter()
            result = await _bare_run(agent, [*bare, {"role": "user", "content": message}])
            theirs_seconds = time.perf_counter() - started
            bare = result.to_input_list()
            if reply.content != result.final_output:
                raise RuntimeError(f"the two sides answered {reply.content!r} and {result!r}")
            if ours_sent != model.last_input_items:
                raise RuntimeError(
                    f"the model was sent {ours_sent} items by send_message but "
                    f"{model.last_input_items} by the bare run"
                )
            if n >= WARM_UP:
                ours.append(ours_seconds)
                theirs.append(theirs_seconds)
        stored = (await manager.get_session(sid)).unwrap()
        if len(stored.history) != len(bare):
            raise RuntimeError(
                f"history lengths differ: ours {len(stored.history)}, bare {len(bare)}"
            )
    finally:
        await manager.close()
    return ours, theirs


async def _bare_run(agent: Agent[Any], given: list[TResponseInputItem]) -> Any:
    return await Runner.run(agent, given, run_config=RUN_CONFIG)


async def run(bench: Bench) -> list[Section]:
    sizes = bench.sizes
    section = Section(
        "5. send_message overhead over a bare Runner.run",
        f"median of {sizes.overhead_samples} alternating calls after {WARM_UP} warm-up calls; "
        "MemoryStore, zero-latency model, whole history sent (no window)",
        versus="bare run",
    )
    overheads: dict[int, float] = {}
    for length in sizes.overhead_lengths:
        try:
            ours, theirs = await _measure(bench, length)
        except Exception as error:
            section.errors.append(f"{length} items: {type(error).__name__}: {error}")
            continue
        overheads[length] = ms(
            statistics.median([a - b for a, b in zip(ours, theirs, strict=True)])
        )
        section.add(Row(f"turn at {length:,} items", median_ms(ours), median_ms(theirs)))
        section.add(Row(f"overhead at {length:,} items", overheads[length], target=OVERHEAD_TARGET))
    low, high = min(sizes.overhead_lengths), max(sizes.overhead_lengths)
    if low in overheads and high in overheads:
        section.add(
            Row(
                f"overhead growth, {low:,} -> {high:,} items",
                overheads[high] - overheads[low],
                target=FLAT_TARGET,
            )
        )
    return [section]
