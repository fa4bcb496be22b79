"""Per-turn write time of ``FileStore`` at turn 10 and turn 2,000 of one session.

Beside it, in the same run, the TypeScript original's way: serialise the whole session and
write it over the file in place on every turn. Both sync the file to disk on every turn.

A turn is four history items (a user message, a tool call, its result, an assistant reply)
plus the updated header, as the manager stores it. ``FileStore`` runs every turn from the
first, so its folds (journal rewritten into the ``.json``) happen where they would in use;
the rewrite baseline starts from a file already holding the turns before its window, since
running it 2,000 times would take minutes (it is quadratic in the history) and only the
window is measured.

Run: ``make bench`` or ``python -m benchmarks file_store_turns``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.to_thread

from chatruntime.models import (
    ChatSession,
    FunctionCallItem,
    FunctionCallResultItem,
    HistoryItem,
    MessageItem,
    SessionContext,
    SessionHeader,
    new_id,
)
from chatruntime.stores import FileStore

POINTS = (10, 2000)
"""The turns the table reports."""
HALF_WINDOW = 10
"""Turns measured each side of a point: turns (point - 10, point + 10], 20 samples."""
T0 = 1_753_776_000_000


def turn_items(n: int) -> list[HistoryItem]:
    """The four items of turn ``n``, shaped like a real tool-using turn."""
    call_id = f"call_{n}"
    t = T0 + n * 1000
    return [
        MessageItem(
            role="user", content=f"question {n}: what is the weather in Paris?", timestamp=t
        ),
        FunctionCallItem(
            name="get_weather",
            arguments=f'{{"city": "Paris", "n": {n}}}',
            call_id=call_id,
            timestamp=t,
        ),
        FunctionCallResultItem(
            name="get_weather", call_id=call_id, output=f"18°C, cloudy ({n})", timestamp=t
        ),
        MessageItem(
            role="assistant",
            content=[
                {
                    "type": "output_text",
                    "text": f"It is 18°C and cloudy in Paris ({n}).",
                    "annotations": [],
                }
            ],
            item_id=f"msg_{n}",
            status="completed",
            timestamp=t,
        ),
    ]


def header_after(first: SessionHeader, n: int) -> SessionHeader:
    """The header after turn ``n``: revision, times and counters moved on as the manager does."""
    t = T0 + n * 1000
    return first.model_copy(
        update={
            "revision": n,
            "updated_at": t,
            "context": SessionContext(
                total_messages=2 * n,
                total_function_calls=n,
                total_turns=n,
                requests=2 * n,
                input_tokens=150 * n,
                output_tokens=40 * n,
                total_tokens=190 * n,
                last_activity=t,
            ),
        }
    )


class RewriteWholeFile:
    """The baseline: each turn serialises the whole session and writes it over the file.

    As the TypeScript original does (``JSON.stringify(session, null, 2)`` written in place),
    plus an ``fsync`` so that both sides pay for durability.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(self, session: ChatSession) -> None:
        await anyio.to_thread.run_sync(self._write, session)

    def _write(self, session: ChatSession) -> None:
        data = session.model_dump_json(by_alias=True, exclude_none=True, indent=2).encode()
        with open(self.path, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())


@dataclass
class FileStoreRun:
    seconds: dict[int, float] = field(default_factory=dict)
    """Write time of each turn."""
    folds: list[int] = field(default_factory=list)
    """Turns whose write folded the journal into the ``.json``."""
    snapshot_bytes: int = 0


async def run_file_store(folder: Path, last_turn: int) -> FileStoreRun:
    store = FileStore(folder)
    await store.initialize()
    first = SessionHeader(
        id=new_id(), agent_id=new_id(), name="Benchmark", created_at=T0, updated_at=T0
    )
    await store.write_session(first, [], expected_revision=None)
    journal = anyio.Path(folder / "sessions" / first.agent_id / f"{first.id}.journal")
    run = FileStoreRun()
    journal_bytes = 0
    for n in range(1, last_turn + 1):
        header, items = header_after(first, n), turn_items(n)
        started = time.perf_counter()
        await store.write_session(header, items, expected_revision=n - 1)
        run.seconds[n] = time.perf_counter() - started
        now = (await journal.stat()).st_size if await journal.exists() else 0
        if now < journal_bytes:
            run.folds.append(n)
        journal_bytes = now
    await store.close()
    snapshot = anyio.Path(folder / "sessions" / first.agent_id / f"{first.id}.json")
    run.snapshot_bytes = (await snapshot.stat()).st_size
    return run


async def run_rewrite(folder: Path, point: int) -> list[float]:
    """Time the baseline on the turns around ``point``, starting from the turns before."""
    first_turn = max(1, point - HALF_WINDOW + 1)
    header = header_after(
        SessionHeader(
            id=new_id(), agent_id=new_id(), name="Benchmark", created_at=T0, updated_at=T0
        ),
        first_turn - 1,
    )
    history = [item for n in range(1, first_turn) for item in turn_items(n)]
    baseline = RewriteWholeFile(folder / f"{header.id}.json")
    await baseline.write(ChatSession.from_parts(header, history))
    seconds: list[float] = []
    for n in range(first_turn, point + HALF_WINDOW + 1):
        header, items = header_after(header, n), turn_items(n)
        started = time.perf_counter()
        history.extend(items)  # the original mutates its in-memory session, then saves it
        await baseline.write(ChatSession.from_parts(header, history))
        seconds.append(time.perf_counter() - started)
    return seconds


def window(run: FileStoreRun, point: int) -> list[float]:
    first_turn = max(1, point - HALF_WINDOW + 1)
    return [run.seconds[n] for n in range(first_turn, point + HALF_WINDOW + 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


async def measure() -> None:
    with tempfile.TemporaryDirectory(prefix="chatruntime-bench-") as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        ours = await run_file_store(folder / "filestore", max(POINTS) + HALF_WINDOW)
        theirs = {point: await run_rewrite(folder, point) for point in POINTS}
        elapsed = time.perf_counter() - started

    ours_median = {point: statistics.median(window(ours, point)) for point in POINTS}
    theirs_median = {point: statistics.median(theirs[point]) for point in POINTS}
    low, high = POINTS
    samples = len(theirs[high])
    print(
        f"Per-turn write time, median of {samples} turns around each point "
        f"(4 items per turn, fsync on every write)"
    )
    print()
    print(f"  {'':30}{'turn ' + str(low):>12}{'turn ' + str(high):>12}{'growth':>10}")
    for name, medians in (
        ("FileStore (journal)", ours_median),
        ("rewrite whole file", theirs_median),
    ):
        growth = medians[high] / medians[low]
        print(f"  {name:30}{ms(medians[low]):>12}{ms(medians[high]):>12}{growth:>9.1f}x")
    ratios = [theirs_median[point] / ours_median[point] for point in POINTS]
    print(f"  {'ratio rewrite / FileStore':30}{ratios[0]:>11.1f}x{ratios[1]:>11.1f}x")
    print()
    all_turns = list(ours.seconds.values())
    fold_times = [ours.seconds[n] for n in ours.folds]
    mean = ms(statistics.fmean(all_turns)).strip()
    print(
        f"  FileStore over all {len(all_turns)} turns: mean {mean}"
        f" per turn, folds included ({len(ours.folds)} folds, at turns "
        f"{', '.join(map(str, ours.folds)) or '-'}; slowest "
        f"{ms(max(fold_times)).strip() if fold_times else '-'})"
    )
    print(
        f"  session file after turn {len(all_turns)}: {ours.snapshot_bytes / 1e6:.2f} MB; "
        f"benchmark took {elapsed:.1f} s"
    )


def main() -> None:
    anyio.run(measure)


if __name__ == "__main__":
    main()
