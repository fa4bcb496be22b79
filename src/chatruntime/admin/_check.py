"""``check``: read every record of a store and report what cannot be read or used."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import ChatRuntimeError
from ..stores import CorruptRecord, SessionStore
from ._common import Problem, ProgressCallback, keeps_checkpoints, no_progress


@dataclass
class CheckReport:
    """What a full scan found.

    Attributes:
        sessions: Sessions read whole.
        checkpoints: Checkpoints read.
        corrupt: Sessions that cannot be read, each with where it lives and why.
        problems: Other findings: sessions of an agent that is not stored, checkpoints that
            cannot be read, an index that counts otherwise than the scan.
    """

    sessions: int = 0
    checkpoints: int = 0
    corrupt: list[CorruptRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing was found wrong."""
        return not self.corrupt and not self.problems


async def check_store(
    store: SessionStore, *, progress: ProgressCallback = no_progress
) -> CheckReport:
    """Read every session (whole, history included) and its checkpoints, one at a time.

    Example:
        >>> report = await check_store(store)
        >>> for record in report.corrupt:
        ...     print(record.location, record.reason)

    Args:
        store: An initialized store.
        progress: Called with the sessions read and the store's count of sessions.

    Raises:
        ChatRuntimeError: The store failed while listing agents or scanning.
    """
    report = CheckReport()
    agents = {spec.id for spec in await store.list_agents()}
    with_checkpoints = keeps_checkpoints(store)
    total = await store.count_sessions()
    progress(0, total)
    done = 0
    async for found in store.scan_sessions():
        done += 1
        if isinstance(found, CorruptRecord):
            report.corrupt.append(found)
        else:
            report.sessions += 1
            where = f"session {found.id}"
            if found.agent_id not in agents:
                report.problems.append(
                    Problem(where, f"belongs to agent {found.agent_id}, which is not stored")
                )
            if with_checkpoints:
                try:
                    report.checkpoints += len(await store.list_checkpoints(found.id))
                except ChatRuntimeError as error:
                    report.problems.append(Problem(where, f"checkpoints unreadable: {error}"))
        progress(done, max(total, done))
    if done != total:
        report.problems.append(
            Problem(
                "index",
                f"the store's index counts {total} sessions, the scan found {done}"
                " (a store that was written during the check counts otherwise too)",
            )
        )
    return report
