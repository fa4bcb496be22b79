"""``export`` then ``import`` into another store kind gives back every session exactly.

At 10,000 sessions from the file store into SQLite, PostgreSQL, Redis and memory (one file
store and one export shared by the four), with the memory an export and an import take
measured; between every other pair of kinds at 200 sessions.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from admin.data import (
    add_checkpoints,
    assert_same_data,
    export_to,
    lines_of,
    populate,
    rss_bytes,
)
from chatruntime.admin import export_store, import_store
from chatruntime.stores import FileStore, SessionStore
from support.stores import STORE_KINDS, open_store_for_test

pytestmark = pytest.mark.anyio

BIG = 10_000
SMALL = 200
BIG_TARGETS = ("sqlite", "postgres", "redis", "memory")
SMALL_PAIRS = [
    (source, target)
    for source in STORE_KINDS
    for target in STORE_KINDS
    if source != target and not (source == "file" and target in BIG_TARGETS)
]
RSS_LIMIT = 48 * 1024 * 1024
"""Growth allowed while 10,000 sessions pass through: loading them all would take several
times this (the export file alone is over 20 MB)."""


@dataclass(frozen=True)
class BigExport:
    root: Path
    path: Path
    sessions: int
    rss_growth: int


class _PeakRss:
    """The most the RSS grew while the ``with`` body ran, sampled every 20 ms by a thread
    (reading ``/proc`` on the event loop's thread would block it)."""

    def __init__(self) -> None:
        self.base = 0
        self.peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _PeakRss:
        gc.collect()
        self.base = self.peak = rss_bytes()
        self._sampler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._sampler.join()
        self.peak = max(self.peak, rss_bytes())

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigExport]:
    """A file store of 10,000 sessions and its export, made once for the module."""
    folder = tmp_path_factory.mktemp("big")

    async def make() -> BigExport:
        store = FileStore(folder / "store")
        await store.initialize()
        try:
            await populate(store, BIG)
        finally:
            await store.close()
        # A fresh store, as an operator's export would open it.
        store = FileStore(folder / "store")
        await store.initialize()
        try:
            with _PeakRss() as peak:
                async with await anyio.open_file(
                    folder / "export.jsonl", "w", encoding="utf-8"
                ) as out:

                    async def write(line: str) -> None:
                        await out.write(line + "\n")

                    report = await export_store(store, write)
        finally:
            await store.close()
        assert report.ok and report.sessions == BIG
        return BigExport(folder / "store", folder / "export.jsonl", report.sessions, peak.growth)

    yield anyio.run(make)


@pytest.mark.parametrize("target_kind", [STORE_KINDS[kind].param() for kind in BIG_TARGETS])
async def test_10000_sessions_from_the_file_store_round_trip_exactly(
    big_export: BigExport,
    target_kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    record_property: pytest.RecordProperty,
) -> None:
    source = FileStore(big_export.root)
    await source.initialize()
    try:
        async with open_store_for_test(target_kind, tmp_path, request) as target:
            with _PeakRss() as peak:
                report = await import_store(target, lines_of(big_export.path))
            assert (report.problems, report.sessions_created, report.agents_created) == (
                [],
                BIG,
                2,
            )
            assert await assert_same_data(source, target) == BIG
    finally:
        await source.close()
    record_property("export_rss_growth", _mb(big_export.rss_growth))
    record_property("import_rss_growth", _mb(peak.growth))
    print(
        f"\nRSS growth: export {_mb(big_export.rss_growth)}, import into {target_kind} "
        f"{_mb(peak.growth)}",
        file=sys.stderr,
    )
    assert big_export.rss_growth < RSS_LIMIT
    if target_kind != "memory":  # a memory store holds what it is given
        assert peak.growth < RSS_LIMIT


async def _exported(source: SessionStore, tmp_path: Path, count: int) -> Path:
    await populate(source, count)
    await add_checkpoints(source)
    path = tmp_path / "export.jsonl"
    report = await export_to(source, path)
    assert report.ok and report.sessions == count
    return path


@pytest.mark.parametrize(
    ("source_kind", "target_kind"),
    [
        pytest.param(
            source,
            target,
            marks=[pytest.mark.services]
            if STORE_KINDS[source].needs_services or STORE_KINDS[target].needs_services
            else [],
            id=f"{source}-{target}",
        )
        for source, target in SMALL_PAIRS
    ],
)
async def test_sessions_round_trip_exactly_between_every_other_pair_of_kinds(
    source_kind: str, target_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        open_store_for_test(source_kind, tmp_path / "source", request) as source,
        open_store_for_test(target_kind, tmp_path / "target", request) as target,
    ):
        path = await _exported(source, tmp_path, SMALL)
        report = await import_store(target, lines_of(path))
        assert (report.problems, report.sessions_created) == ([], SMALL)
        assert await assert_same_data(source, target) == SMALL


async def test_importing_the_same_file_again_changes_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        open_store_for_test("memory", tmp_path / "source", request) as source,
        open_store_for_test("sqlite", tmp_path / "target", request) as target,
    ):
        path = await _exported(source, tmp_path, 30)
        first = await import_store(target, lines_of(path))
        again = await import_store(target, lines_of(path))
        assert (first.sessions_created, first.sessions_unchanged) == (30, 0)
        assert (again.sessions_created, again.sessions_unchanged, again.agents_created) == (
            0,
            30,
            0,
        )
        assert (again.agents_unchanged, again.checkpoints_written, again.problems) == (2, 0, [])
        assert await assert_same_data(source, target) == 30


async def test_checkpoints_are_exported_and_imported_with_their_session(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with (
        open_store_for_test("memory", tmp_path / "source", request) as source,
        open_store_for_test("memory", tmp_path / "target", request) as target,
    ):
        path = await _exported(source, tmp_path, 25)
        report = await import_store(target, lines_of(path))
        # Sessions 0, 10 and 20 have two checkpoints each.
        assert (report.checkpoints_written, report.problems) == (6, [])
        assert await assert_same_data(source, target) == 25
