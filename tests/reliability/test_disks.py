"""Full and read-only disks at tiny size (as root: the trial mounts a 4 MiB tmpfs)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from reliability import disks

pytestmark = pytest.mark.allow_blocking


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_a_full_disk_answers_storage_error_and_keeps_every_turn(kind: str, tmp_path: Path) -> None:
    row = anyio.run(disks.disk_full, kind, tmp_path, disks.DiskSizes(free_bytes=(0, 8192)))

    assert (row.not_run, row.tried, row.lost, row.corrupt, row.changed, row.failed) == (
        None,
        10,
        0,
        0,
        0,
        0,
    ), row.notes
    assert row.acknowledged >= 5  # three before, one back after each round


def test_a_file_store_on_a_read_only_disk_reads_and_refuses_writes(tmp_path: Path) -> None:
    row = anyio.run(disks.read_only_disk, "file", tmp_path)

    assert (row.not_run, row.tried, row.lost, row.failed) == (None, 6, 0, 0), row.notes


def test_a_sqlite_store_on_a_read_only_disk_reads_and_refuses_writes(tmp_path: Path) -> None:
    row = anyio.run(disks.read_only_disk, "sqlite", tmp_path)

    assert (row.not_run, row.tried, row.lost, row.failed) == (None, 6, 0, 0), row.notes


def test_a_read_only_file_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    row = anyio.run(disks.read_only_option, tmp_path)

    assert (row.not_run, row.tried, row.lost, row.failed) == (None, 6, 0, 0), row.notes
