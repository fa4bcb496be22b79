"""``copy``: every agent, session and checkpoint from one store into another, resumable, and
verified at the end by counts and revisions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..models import ChatRuntimeError, ChatSession, SessionHeader
from ..stores import CorruptRecord, SessionStore
from ._common import (
    DEFAULT_CONCURRENCY,
    Problem,
    ProgressCallback,
    keeps_checkpoints,
    no_progress,
    run_pool,
)
from ._writing import AgentOutcome, Outcome, put_agent, put_checkpoints, put_session

_PAGE: int = 500


@dataclass
class Verification:
    """How the target compares with the source after a copy.

    Attributes:
        source_count: Sessions the source counts.
        target_count: Sessions the target counts (more when it held others before).
        checked: Sessions of the source looked up in the target.
        mismatches: Sessions missing from the target or at another revision there.
    """

    source_count: int = 0
    target_count: int = 0
    checked: int = 0
    mismatches: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every session of the source is in the target at the same revision."""
        return not self.mismatches and self.checked == self.source_count


@dataclass
class CopyReport:
    """What a copy did, and what its verification found.

    Attributes:
        agents_copied: Agents written to the target.
        sessions_copied: Sessions written to the target (replaced ones included).
        sessions_skipped: Sessions already in the target at the same revision: a copy run
            again after an interruption skips what the first run finished.
        checkpoints_copied: Checkpoints written to the target.
        problems: What could not be copied (unreadable sessions, conflicts, refused writes).
        verification: The comparison made at the end.
    """

    agents_copied: int = 0
    sessions_copied: int = 0
    sessions_skipped: int = 0
    checkpoints_copied: int = 0
    problems: list[Problem] = field(default_factory=list)
    verification: Verification = field(default_factory=Verification)

    @property
    def ok(self) -> bool:
        """Everything was copied and the verification found the stores alike."""
        return not self.problems and self.verification.ok


async def copy_store(
    source: SessionStore,
    target: SessionStore,
    *,
    replace: bool = False,
    progress: ProgressCallback = no_progress,
    verify_progress: ProgressCallback = no_progress,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> CopyReport:
    """Copy agents, sessions (history and revision as they are) and checkpoints from
    ``source`` to ``target``, then verify that every session of the source is in the target
    at the same revision, and compare the counts.

    Resumable: a session already in the target at the same revision is skipped (its missing
    checkpoints are still copied), so a copy interrupted anywhere is finished by running it
    again. A session in the target at another revision is reported as a conflict, or
    replaced with ``replace``. Sessions are read one at a time from the source's scan.

    Example:
        >>> report = await copy_store(FileStore("data"), SqlStore(postgres_url))
        >>> report.ok, report.verification.source_count
        (True, 10000)

    Args:
        source: An initialized store to read.
        target: An initialized store to write.
        replace: Overwrite sessions the target holds at another revision.
        progress: Called with the sessions copied and the source's count.
        verify_progress: Called with the sessions verified and the source's count.
        concurrency: Sessions written at once.

    Raises:
        ChatRuntimeError: A store failed while listing (agents, the scan, the verification).
    """
    report = CopyReport()
    with_checkpoints = keeps_checkpoints(source) and keeps_checkpoints(target)
    for spec in await source.list_agents():
        try:
            outcome = await put_agent(target, spec, replace=replace)
        except ChatRuntimeError as error:
            report.problems.append(Problem(f"agent {spec.id}", f"not copied: {error}"))
            continue
        if outcome is AgentOutcome.CONFLICT:
            report.problems.append(
                Problem(f"agent {spec.id}", "the target holds it with other settings")
            )
        elif outcome is not AgentOutcome.UNCHANGED:
            report.agents_copied += 1

    total = await source.count_sessions()
    done = 0
    progress(0, total)

    async def sessions() -> AsyncIterator[ChatSession]:
        async for found in source.scan_sessions():
            if isinstance(found, CorruptRecord):
                report.problems.append(Problem(found.location, f"not copied: {found.reason}"))
                _step()
            else:
                yield found

    def _step() -> None:
        nonlocal done
        done += 1
        progress(done, max(total, done))

    async def copy_one(session: ChatSession) -> None:
        where = f"session {session.id}"
        try:
            outcome, stored = await put_session(target, session, replace=replace)
            if outcome is Outcome.CONFLICT:
                report.problems.append(
                    Problem(
                        where,
                        f"the target holds revision {stored}, the source {session.revision}: "
                        "left as it is (--replace overwrites it)",
                    )
                )
                return
            if outcome is Outcome.UNCHANGED:
                report.sessions_skipped += 1
            else:
                report.sessions_copied += 1
            if with_checkpoints:
                checkpoints = await source.list_checkpoints(session.id)
                report.checkpoints_copied += await put_checkpoints(target, checkpoints)
        except ChatRuntimeError as error:
            report.problems.append(Problem(where, f"not copied: {error}"))
        finally:
            _step()

    await run_pool(sessions(), copy_one, concurrency=concurrency)
    report.verification = await verify_copy(
        source, target, progress=verify_progress, concurrency=concurrency
    )
    return report


async def verify_copy(
    source: SessionStore,
    target: SessionStore,
    *,
    progress: ProgressCallback = no_progress,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Verification:
    """Look every session the source lists up in the target: it must be there at the same
    revision. Reads headers and revisions only (no history)."""
    verification = Verification()
    verification.source_count = await source.count_sessions()
    progress(0, verification.source_count)

    async def headers() -> AsyncIterator[SessionHeader]:
        cursor: str | None = None
        while True:
            page = await source.list_sessions(limit=_PAGE, cursor=cursor)
            for header in page.sessions:
                yield header
            cursor = page.next_cursor
            if cursor is None:
                return

    async def check(header: SessionHeader) -> None:
        stored = await target.get_revision(header.id)
        verification.checked += 1
        if stored is None:
            verification.mismatches.append(
                Problem(f"session {header.id}", "missing from the target")
            )
        elif stored != header.revision:
            verification.mismatches.append(
                Problem(
                    f"session {header.id}",
                    f"at revision {stored} in the target, {header.revision} in the source",
                )
            )
        progress(verification.checked, max(verification.source_count, verification.checked))

    await run_pool(headers(), check, concurrency=concurrency)
    verification.target_count = await target.count_sessions()
    return verification
