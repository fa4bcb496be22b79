"""``export``: every agent, session and checkpoint of a store as export lines, streamed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..models import ChatRuntimeError, now_ms
from ..stores import CorruptRecord, SessionStore
from ._common import Problem, ProgressCallback, keeps_checkpoints, no_progress
from ._records import header_line, record_line

LineWriter = Callable[[str], Awaitable[None]]
"""Writes one line of an export (given without its newline)."""


@dataclass
class ExportReport:
    """What an export wrote, and what it could not.

    Attributes:
        agents: Agent records written.
        sessions: Session records written.
        checkpoints: Checkpoint records written.
        problems: Sessions left out because they cannot be read (corrupt records), or whose
            checkpoints cannot.
    """

    agents: int = 0
    sessions: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether everything in the store was written."""
        return not self.problems


async def export_store(
    store: SessionStore,
    write: LineWriter,
    *,
    progress: ProgressCallback = no_progress,
) -> ExportReport:
    """Write every agent, session and checkpoint of ``store`` as export lines (see
    ``admin._records`` for the format), one session at a time: memory holds one session,
    however many the store keeps.

    A session that cannot be read is left out and reported; the export goes on.

    Example:
        >>> async with await anyio.open_file("backup.jsonl", "w", encoding="utf-8") as out:
        ...     report = await export_store(store, lambda line: out.write(line + "\\n"))

    Args:
        store: An initialized store.
        write: Writes one line (without newline).
        progress: Called with the sessions done and the store's count of sessions.

    Raises:
        ChatRuntimeError: The store failed while listing (agents, or the scan itself).
    """
    report = ExportReport()
    total = await store.count_sessions()
    progress(0, total)
    await write(header_line(now_ms()))
    for spec in await store.list_agents():
        await write(record_line(spec))
        report.agents += 1
    with_checkpoints = keeps_checkpoints(store)
    done = 0
    async for found in store.scan_sessions():
        done += 1
        if isinstance(found, CorruptRecord):
            report.problems.append(Problem(found.location, f"not exported: {found.reason}"))
        else:
            await write(record_line(found))
            report.sessions += 1
            if with_checkpoints:
                try:
                    checkpoints = await store.list_checkpoints(found.id)
                except ChatRuntimeError as error:
                    report.problems.append(
                        Problem(f"session {found.id}", f"checkpoints not exported: {error}")
                    )
                    checkpoints = []
                for checkpoint in checkpoints:
                    await write(record_line(checkpoint))
                    report.checkpoints += 1
        progress(done, max(total, done))
    return report
