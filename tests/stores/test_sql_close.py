"""``SqlStore.close()`` on SQLite leaves nothing running, whatever was cut short before it.

Turns cut short by a raw ``Task.cancel()`` (``asyncio.wait_for``, as a caller's timeout or a
web framework does it) at every moment — waiting for the lease, reading, queued for the
writer, committing — and a ``close()`` that is itself given too little time: afterwards no
task of the store or of SQLAlchemy's aiosqlite adapter is left, and ``asyncio.run`` returns.
Each run is a fresh event loop in a fresh process with a hard time limit, so a hang fails the
test instead of the suite.
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
HARD_LIMIT = 60.0
TURN_TIMEOUTS = (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
"""Raw cancellations from before the lease is taken to after the commit."""
CLOSE_TIMEOUT = 0.0005
"""Less than closing five connections takes: ``close()`` is cancelled while it runs."""

CHILD = f"""
import asyncio, json, sys
from pathlib import Path

sys.path.insert(0, {str(Path(__file__).parents[1])!r})
from chatruntime.stores import SqlStore
from support.factories import bumped, header, turn_items


async def turn(store, session_id):
    async with store.lease(session_id, timeout=5) as lease:
        stored = await store.get_session(session_id, last=2)
        await store.write_session(
            bumped(stored.header()), turn_items(1), expected_revision=stored.revision, lease=lease
        )


async def main(path):
    store = SqlStore(f"sqlite+aiosqlite:///{{path}}")
    await store.initialize()
    h = header()
    await store.write_session(h, [], expected_revision=None)
    outcomes = []
    for timeout in {TURN_TIMEOUTS!r}:
        try:
            await asyncio.wait_for(turn(store, h.id), timeout)
            outcomes.append("done")
        except TimeoutError:
            outcomes.append("timed out")
    stored = await store.get_session(h.id)
    # Every turn that committed stored its four items whole.
    whole = len(stored.history) == 4 * stored.revision
    try:
        await asyncio.wait_for(store.close(), {CLOSE_TIMEOUT!r})
    except TimeoutError:
        pass
    await store.close()
    left = asyncio.all_tasks() - {{asyncio.current_task()}}
    return {{"whole": whole, "left": sorted(repr(task) for task in left)}}


folder = Path(sys.argv[1])
for run in range({RUNS_PER_PROCESS}):
    print(json.dumps(asyncio.run(main(folder / f"run{{run}}.db"))), flush=True)
print("exited", flush=True)
"""


def run_child(folder: Path) -> subprocess.CompletedProcess[str]:
    folder.mkdir()
    return subprocess.run(
        # ResourceWarnings shown: a connection left open is reported on stderr.
        [sys.executable, "-W", "always::ResourceWarning", "-c", CHILD, str(folder)],
        capture_output=True,
        text=True,
        timeout=HARD_LIMIT,
        check=False,
    )


def test_close_after_cut_short_calls_leaves_no_task_and_the_process_exits(
    tmp_path: Path,
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(run_child, [tmp_path / f"p{n}" for n in range(PROCESSES)]))

    for child in done:
        assert child.returncode == 0, child.stderr[-3000:]
        assert child.stderr == ""
        *runs, last = child.stdout.splitlines()
        assert last == "exited"
        assert [json.loads(run) for run in runs] == [{"whole": True, "left": []}] * RUNS_PER_PROCESS
