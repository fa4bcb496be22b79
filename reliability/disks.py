"""Full and read-only disks: the file store and SQLite on a small tmpfs.

Disk full: a store on a 4 MiB tmpfs takes a few turns, then a filler file takes all the space
but ``free`` bytes (0 and a few pages, so some writes tear half-way). Every write then must
answer ``STORAGE_ERROR`` (a ``Result``, never a traceback) or succeed whole; reads go on; once
the filler is removed the same manager serves turns again, and a fresh store finds every
acknowledged turn, no failed one and no partial one.

Read-only: a store holding sessions is remounted read-only (we run as root, so permission
bits would not stop us: the mount does). Reads must work and writes answer ``STORAGE_ERROR``.
``FileStore(root, read_only=True)`` is tried when the store offers the option.

The trial needs ``mount``: without the privilege its rows say ``not run`` and why.
"""

from __future__ import annotations

import errno
import inspect
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from chatruntime import ChatSession, ErrorCode, FileStore, SessionManager

from ._report import Row
from ._stores import StoreSpec
from ._workload import AGENT_ID, RUN_CONFIG, agent_manager, history_problems, turn_content

Calls = dict[str, Callable[[], Awaitable[Any]]]

TMPFS_SIZE = "4m"
RECOVERY_TIMEOUT = 35.0
"""Seconds the same manager may take to serve a turn again once space is back."""


@dataclass(frozen=True)
class DiskSizes:
    """Attributes:
    free_bytes: The space left free in each round of the disk-full trial.
    turns_before: Good turns stored before the disk fills.
    """

    free_bytes: tuple[int, ...]
    turns_before: int = 3


class MountError(RuntimeError):
    """``mount`` refused (no privilege, no tmpfs)."""


@asynccontextmanager
async def tmpfs(parent: Path) -> AsyncIterator[Path]:
    """A fresh tmpfs of :data:`TMPFS_SIZE`, unmounted (lazily, if busy) on leaving."""
    point = Path(tempfile.mkdtemp(prefix="reliability-disk-", dir=parent))
    done = await anyio.run_process(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(point)], check=False
    )
    if done.returncode != 0:
        await anyio.Path(point).rmdir()
        message = (done.stderr or done.stdout).decode(errors="replace").strip()
        raise MountError(message or f"mount exited {done.returncode}")
    try:
        yield point
    finally:
        with anyio.CancelScope(shield=True):
            result = await anyio.run_process(["umount", str(point)], check=False)
            if result.returncode != 0:
                await anyio.run_process(["umount", "-l", str(point)], check=False)
            await anyio.Path(point).rmdir()


@asynccontextmanager
async def read_only_view(point: Path) -> AsyncIterator[Path]:
    """``point`` mounted again, read-only, at a new folder (a read-only bind mount: unlike a
    remount, it needs no file under ``point`` to be closed)."""
    view = Path(tempfile.mkdtemp(prefix="reliability-ro-", dir=point.parent))
    steps = [
        ["mount", "--bind", str(point), str(view)],
        ["mount", "-o", "remount,bind,ro", str(view)],
    ]
    mounted = False
    try:
        for step in steps:
            done = await anyio.run_process(step, check=False)
            if done.returncode != 0:
                message = (done.stderr or done.stdout).decode(errors="replace").strip()
                raise MountError(message or f"{' '.join(step)} exited {done.returncode}")
            mounted = True
        yield view
    finally:
        with anyio.CancelScope(shield=True):
            if mounted:
                result = await anyio.run_process(["umount", str(view)], check=False)
                if result.returncode != 0:
                    await anyio.run_process(["umount", "-l", str(view)], check=False)
            await anyio.Path(view).rmdir()


def fill(point: Path, free: int) -> Path:
    """Write a filler file until the disk is full, then give ``free`` bytes back."""
    filler = point / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        # A short last chunk: fill the remaining pages too.
        for size in (16384, 4096, 512, 1):
            while True:
                try:
                    out.write(chunk[:size])
                except OSError:
                    break
    if free:
        os.truncate(filler, max(filler.stat().st_size - free, 0))
    return filler


def _manager(spec: StoreSpec, **options: Any) -> SessionManager:
    store = spec.build(**options)
    return SessionManager(store, agent_manager(store), run_config=RUN_CONFIG)


def _code(result: Any) -> str:
    return "OK" if result.success else str(result.error.code)


async def _stored(spec: StoreSpec, session_id: str) -> ChatSession | str:
    """The session as a fresh store (another process) reads it, or why it could not."""
    manager = _manager(spec)
    opened = await manager.initialize()
    if not opened.success:
        return f"initialize: {opened.error.code}"
    try:
        found = await manager.get_session(session_id)
        return found.data if found.success else f"{found.error.code}: {found.error.message}"
    finally:
        await manager.close()


async def disk_full(kind: str, scratch: Path, sizes: DiskSizes) -> Row:
    """The disk-full trial on one store kind."""
    row = Row("disk full", kind, unit="faults")
    started = time.perf_counter()
    try:
        async with tmpfs(scratch) as point:
            spec = StoreSpec(kind, point)
            await _disk_full_rounds(spec, point, sizes, row)
    except MountError as error:
        row.not_run = f"cannot mount a tmpfs ({error})"
    row.seconds = time.perf_counter() - started
    return row


async def _disk_full_rounds(spec: StoreSpec, point: Path, sizes: DiskSizes, row: Row) -> None:
    manager = _manager(spec)
    (await manager.initialize()).unwrap()
    try:
        session_id = (await manager.create_session(AGENT_ID, "Full disk")).unwrap().id
        acknowledged: list[str] = []  # reply ids, in order
        number = 0

        async def good_turn() -> None:
            nonlocal number
            number += 1
            content = turn_content(f"full-{number}", number, 200)
            reply = (await manager.send_message(session_id, content)).unwrap()
            acknowledged.append(reply.id)
            row.acknowledged += 1

        for _ in range(sizes.turns_before):
            await good_turn()
        for free in sizes.free_bytes:
            filler = await anyio.to_thread.run_sync(fill, point, free)
            attempts: list[tuple[str, Callable[[int], str]]] = [
                ("send_message", lambda n: turn_content(f"fail-{n}", 1, 200)),
                ("send_message (tool)", lambda n: turn_content(f"fail-{n}", 2, 200)),
                ("send_message (large)", lambda n: turn_content(f"fail-{n}", 1, 40_000)),
            ]
            for what, content_of in attempts:
                number += 1
                row.tried += 1
                result = await manager.send_message(session_id, content_of(number))
                _judge_write(row, what, free, result)
                if result.success:
                    acknowledged.append(result.data.id)
                    row.acknowledged += 1
            writes: Calls = {
                "create_session": lambda: manager.create_session(AGENT_ID, "Another"),
                "update_session": lambda: manager.update_session(session_id, name="Renamed"),
            }
            for what, call in writes.items():
                row.tried += 1
                _judge_write(row, what, free, await call())
            reads: Calls = {
                "get_session": lambda: manager.get_session(session_id),
                "list_sessions": lambda: manager.list_sessions(limit=10),
            }
            for what, call in reads.items():
                read = await call()
                if not read.success:
                    row.failed += 1
                    row.note(f"{what} on a full disk (free {free} B): {_code(read)}")
            await anyio.Path(filler).unlink()
            await _recover(manager, session_id, row, free, acknowledged)
        stored = await _stored(spec, session_id)
        _judge_history(row, stored, acknowledged)
    finally:
        await manager.close()


def _judge_write(row: Row, what: str, free: int, result: Any) -> None:
    if result.success:
        return
    if result.error.code != ErrorCode.STORAGE_ERROR:
        row.failed += 1
        row.note(
            f"{what} on a full disk (free {free} B) answered {result.error.code}, "
            f"not STORAGE_ERROR: {result.error.message[:160]}"
        )


async def _recover(
    manager: SessionManager, session_id: str, row: Row, free: int, acknowledged: list[str]
) -> None:
    """Once space is back, the same manager must serve a turn again."""
    started = anyio.current_time()
    last = ""
    while anyio.current_time() - started < RECOVERY_TIMEOUT:
        content = turn_content(f"back-{len(acknowledged)}-{free}", 1, 100)
        result = await manager.send_message(session_id, content)
        if result.success:
            acknowledged.append(result.data.id)
            row.acknowledged += 1
            waited = anyio.current_time() - started
            if waited > 1.0:
                row.note(f"service came back {waited:.1f} s after space was freed (free {free} B)")
            return
        last = f"{result.error.code}: {result.error.message[:160]}"
        await anyio.sleep(0.5)
    row.failed += 1
    row.note(f"no turn succeeded within {RECOVERY_TIMEOUT:.0f} s of freeing space: {last}")


def _judge_history(row: Row, stored: ChatSession | str, acknowledged: list[str]) -> None:
    if isinstance(stored, str):
        row.corrupt += 1
        row.lost += len(acknowledged)
        row.note(f"a fresh store cannot read the session: {stored}")
        return
    problems = history_problems(stored)
    if problems:
        row.corrupt += 1
        row.note(f"stored history: {problems[0]}")
    replies = [
        item.id for item in stored.history if item.type == "message" and item.role == "assistant"
    ]
    missing = [reply for reply in acknowledged if reply not in replies]
    row.lost += len(missing)
    extra = len(replies) - (len(acknowledged) - len(missing))
    if extra:
        row.changed += extra
        row.note(f"{extra} turn(s) stored although their call failed")


async def read_only_disk(kind: str, scratch: Path) -> Row:
    """A store holding a session, remounted read-only: reads work, writes are refused."""
    row = Row("read-only disk", kind, unit="calls")
    started = time.perf_counter()
    try:
        async with tmpfs(scratch) as point:
            stored = await _populate(StoreSpec(kind, point), row)
            async with read_only_view(point) as view:
                await _read_only_calls(StoreSpec(kind, view), stored, row, {})
    except MountError as error:
        row.not_run = f"cannot mount a read-only view ({error})"
    row.seconds = time.perf_counter() - started
    return row


async def read_only_option(scratch: Path) -> Row:
    """``FileStore(root, read_only=True)`` on a store another process writes."""
    row = Row("read_only=True", "file", unit="calls")
    if "read_only" not in inspect.signature(FileStore.__init__).parameters:
        row.not_run = "FileStore has no read_only option"
        return row
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        spec = StoreSpec("file", Path(folder))
        stored = await _populate(spec, row)
        await _read_only_calls(spec, stored, row, {"read_only": True})
    row.seconds = time.perf_counter() - started
    return row


async def _populate(spec: StoreSpec, row: Row) -> tuple[str, int]:
    """A session with three turns; its id and how many items it holds."""
    manager = _manager(spec)
    (await manager.initialize()).unwrap()
    try:
        session_id = (await manager.create_session(AGENT_ID, "Read me")).unwrap().id
        for number in range(3):
            content = turn_content(f"ro-{number}", number, 50)
            (await manager.send_message(session_id, content)).unwrap()
            row.acknowledged += 1
        items = len((await manager.get_session(session_id)).unwrap().history)
    finally:
        await manager.close()
    return session_id, items


async def _read_only_calls(
    spec: StoreSpec, stored: tuple[str, int], row: Row, options: dict[str, Any]
) -> None:
    session_id, items = stored
    manager = _manager(spec, **options)
    opened = await manager.initialize()
    row.tried += 1
    if not opened.success:
        row.failed += 1
        row.note(f"initialize on read-only data: {opened.error.code}: {opened.error.message}")
        return
    try:
        reads: Calls = {
            "get_session": lambda: manager.get_session(session_id),
            "list_sessions": lambda: manager.list_sessions(limit=10),
            "get_recent_messages": lambda: manager.get_recent_messages(session_id, 5),
        }
        for what, call in reads.items():
            row.tried += 1
            result = await call()
            if not result.success:
                row.failed += 1
                row.note(f"{what} on read-only data: {result.error.code}: {result.error.message}")
            elif what == "get_session" and len(result.data.history) != items:
                row.lost += 1
                row.note(
                    f"get_session on read-only data found {len(result.data.history)} items "
                    f"of {items}"
                )
        writes: Calls = {
            "send_message": lambda: manager.send_message(session_id, "Hello"),
            "create_session": lambda: manager.create_session(AGENT_ID, "New"),
        }
        for what, call in writes.items():
            row.tried += 1
            result = await call()
            if result.success:
                row.failed += 1
                row.note(f"{what} on read-only data succeeded")
            elif result.error.code not in (ErrorCode.STORAGE_ERROR, ErrorCode.VALIDATION_ERROR):
                row.failed += 1
                row.note(f"{what} on read-only data answered {result.error.code}")
    finally:
        await manager.close()


async def run(scratch: Path, sizes: DiskSizes) -> list[Row]:
    """Every disk trial: full on each local store, read-only on each, ``read_only=True``."""
    trials: list[tuple[str, str, Callable[[], Awaitable[Row]]]] = []
    for kind in ("file", "sqlite"):
        trials.append(("disk full", kind, partial(disk_full, kind, scratch, sizes)))
    for kind in ("file", "sqlite"):
        trials.append(("read-only disk", kind, partial(read_only_disk, kind, scratch)))
    trials.append(("read_only=True", "file", partial(read_only_option, scratch)))
    rows = []
    for trial, kind, run_one in trials:
        try:
            rows.append(await run_one())
        except Exception as error:
            # One trial's crash is reported in its own row; the others still run.
            rows.append(Row(trial, kind, not_run=f"crashed: {type(error).__name__}: {error}"))
    return rows
