"""Per-turn write time of ``FileStore`` at turn 10 and turn 2,000 of one session, against
the TypeScript original's way: serialise the whole session and write it over the file in
place on every turn. Both sync the file to disk on every turn.

``FileStore`` runs every turn from the first (``write_session`` alone, no lease: the
write's own cost), so whatever it does now and then happens where it would in use; the
rewrite baseline starts from a file already holding the turns before its window, since
running it 2,000 times would take minutes (it is quadratic in the history) and only the
window is measured.

Run alone: ``python -m benchmarks file_store_turns``.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import anyio.to_thread

from chatruntime.models import ChatSession, HistoryItem
from chatruntime.stores import FileStore

from ._bench import Bench, median_ms, ms
from ._data import first_header, header_after, session_id, turn_items
from ._report import Row, Section

NAME = "rewrite"


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


def _window(point: int, half: int) -> range:
    return range(max(1, point - half + 1), point + half + 1)


async def _file_store(folder: Path, last_turn: int) -> tuple[dict[int, float], int]:
    """Seconds of each turn, and the bytes the session's files hold at the end."""
    store = FileStore(folder)
    await store.initialize()
    first = first_header(session_id(NAME, 0))
    await store.write_session(first, [], expected_revision=None)
    seconds: dict[int, float] = {}
    for n in range(1, last_turn + 1):
        header, items = header_after(first, n), turn_items(n)
        started = time.perf_counter()
        await store.write_session(header, items, expected_revision=n - 1)
        seconds[n] = time.perf_counter() - started
    await store.close()
    return seconds, await anyio.to_thread.run_sync(_bytes_of, folder, first.id)


def _bytes_of(folder: Path, session: str) -> int:
    """The bytes of every file under ``folder`` named for ``session``, whatever the layout."""
    return sum(path.stat().st_size for path in folder.rglob(f"*{session}*") if path.is_file())


async def _rewrite(folder: Path, point: int, half: int) -> list[float]:
    """Time the baseline on the turns around ``point``, starting from the turns before."""
    window = _window(point, half)
    first = first_header(session_id(NAME, point))
    header = header_after(first, window.start - 1)
    history: list[HistoryItem] = [item for n in range(1, window.start) for item in turn_items(n)]
    baseline = RewriteWholeFile(folder / f"{first.id}.json")
    await baseline.write(ChatSession.from_parts(header, history))
    seconds: list[float] = []
    for n in window:
        header, items = header_after(first, n), turn_items(n)
        started = time.perf_counter()
        history.extend(items)  # the original mutates its in-memory session, then saves it
        await baseline.write(ChatSession.from_parts(header, history))
        seconds.append(time.perf_counter() - started)
    return seconds


async def run(bench: Bench) -> list[Section]:
    sizes = bench.sizes
    half = sizes.half_window
    points = sizes.rewrite_points
    folder = bench.scratch / NAME
    folder.mkdir(parents=True, exist_ok=True)
    section = Section(
        "FileStore against rewriting the whole file (the TypeScript original)",
        f"median write time of {2 * half} turns around each point, 4 items a turn, fsync on "
        "every write; FileStore: write_session alone",
        versus="rewrite",
    )
    ours, size = await _file_store(folder / "filestore", max(points) + half)
    for point in points:
        theirs = await _rewrite(folder, point, half)
        section.add(
            Row(
                f"FileStore vs rewrite whole file, turn {point}",
                median_ms([ours[n] for n in _window(point, half)]),
                median_ms(theirs),
            )
        )
    everything = list(ours.values())
    section.add(
        Row(
            f"FileStore, mean of all {len(everything):,} turns",
            ms(statistics.fmean(everything)),
            note=f"slowest {ms(max(everything)):.1f} ms",
        )
    )
    section.add(Row(f"session files after turn {len(everything):,}", size / 1e6, unit="MB"))
    return [section]
