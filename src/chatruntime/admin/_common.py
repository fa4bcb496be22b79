"""What every admin operation shares: progress callbacks, problems, and a pool of writers."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import anyio
import anyio.abc

from ..stores import SessionStore

T = TypeVar("T")

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while an operation runs; ``total`` is ``0`` when it is
not known, and may grow as the operation goes (the CLI's ``Progress`` draws a bar from it)."""

DEFAULT_CONCURRENCY: Final = 8
"""Sessions written at once by an import or a copy: enough to overlap a server's round trips,
few enough that memory holds only a handful of sessions at a time."""


def no_progress(done: int, total: int) -> None:
    """The progress callback that shows nothing."""


@dataclass(frozen=True)
class Problem:
    """Something an operation could not do, or found wrong, and why.

    Attributes:
        where: What it is about: ``line 12`` of an import, a session id, a file path.
        reason: What went wrong, in words a person can act on.
    """

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


async def run_pool(
    units: AsyncIterable[T], work: Callable[[T], Awaitable[None]], *, concurrency: int
) -> None:
    """Run ``work`` on every unit ``units`` yields, ``concurrency`` at a time, in order of
    arrival; at most ``concurrency`` units wait in between, so memory stays bounded however
    many there are."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    send, receive = anyio.create_memory_object_stream[T](max_buffer_size=concurrency)

    async def worker(units: anyio.abc.ObjectReceiveStream[T]) -> None:
        async with units:
            async for unit in units:
                await work(unit)

    async with anyio.create_task_group() as group:
        async with receive:
            for _ in range(concurrency):
                group.start_soon(worker, receive.clone())
        async with send:
            async for unit in units:
                await send.send(unit)


def keeps_checkpoints(store: SessionStore) -> bool:
    """Whether ``store`` has the checkpoint calls of the protocol (a store written for the
    protocol before checkpoints, such as a third party's, is exported without them)."""
    return callable(getattr(store, "list_checkpoints", None)) and callable(
        getattr(store, "save_checkpoint", None)
    )
