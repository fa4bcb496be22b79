"""``close()`` leaves nothing running after turns that timed out, and the process exits.

A turn cut short by its timeout on ``SqlStore`` (SQLite) must not leave a task of the store's
connections behind: ``asyncio.run`` would then wait for it, or never return. Each run is a
fresh process with a hard time limit, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROCESSES = 6
RUNS_PER_PROCESS = 5
"""30 ``asyncio.run`` in all, two processes at a time (the load of two cores)."""
HARD_LIMIT = 30.0
TIMEOUTS = (0.0005, 0.001, 0.002, 0.005, 0.05)
"""Per turn: before the lease, while taking it, and while the (slow) model runs."""

CHILD = f"""
import asyncio, json, sys
from pathlib import Path

from agents import Agent

from chatruntime import AgentManager, OfflineModel, OfflineModelProvider, SessionManager
from chatruntime.stores import SqlStore


async def main(path: Path) -> dict[str, object]:
    store = SqlStore(f"sqlite+aiosqlite:///{{path}}")
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    manager = SessionManager(store, agents)
    (await manager.initialize()).unwrap()
    agent_id = agents.register(Agent(name="Slow", model=OfflineModel(delay=0.2)))
    session_id = (await manager.create_session(agent_id, "Chat")).unwrap().id
    codes = []
    for timeout in {TIMEOUTS!r}:
        result = await manager.send_message(session_id, "Hello", timeout=timeout)
        codes.append(result.error.code if result.error else "OK")
    await manager.close()
    left = asyncio.all_tasks() - {{asyncio.current_task()}}
    return {{"codes": codes, "left": sorted(repr(task) for task in left)}}


folder = Path(sys.argv[1])
for run in range({RUNS_PER_PROCESS}):
    print(json.dumps(asyncio.run(main(folder / f"run{{run}}.db"))), flush=True)
print("exited", flush=True)
"""


def run_child(folder: Path) -> subprocess.CompletedProcess[str]:
    folder.mkdir()
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)],
        capture_output=True,
        text=True,
        timeout=HARD_LIMIT,
        check=False,
    )


def test_close_after_timed_out_turns_on_sqlite_leaves_no_task_and_the_process_exits(
    tmp_path: Path,
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(run_child, [tmp_path / f"p{n}" for n in range(PROCESSES)]))

    for child in done:
        assert child.returncode == 0, child.stderr[-3000:]
        *runs, last = child.stdout.splitlines()
        assert last == "exited"
        assert [json.loads(run) for run in runs] == [
            {"codes": ["TIMEOUT"] * len(TIMEOUTS), "left": []}
        ] * RUNS_PER_PROCESS
