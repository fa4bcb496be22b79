"""``import``: export lines into a store, each checked on its own; safe to run again."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from ..models import AgentSpec, ChatRuntimeError, ChatSession, Checkpoint
from ..stores import SessionStore
from ._common import (
    DEFAULT_CONCURRENCY,
    Problem,
    ProgressCallback,
    keeps_checkpoints,
    no_progress,
    run_pool,
)
from ._records import ExportHeader, RecordError, parse_line
from ._writing import AgentOutcome, Outcome, put_agent, put_checkpoints, put_session


@dataclass
class ImportReport:
    """What an import stored, left, and refused.

    Attributes:
        lines: Lines read (blank ones included).
        agents_created: Agents the store did not have.
        agents_unchanged: Agents the store had already, the same.
        sessions_created: Sessions the store did not have.
        sessions_unchanged: Sessions the store had at the same revision: skipped, so a
            second run of the same import changes nothing.
        sessions_replaced: Sessions the store had at another revision, replaced (only when
            asked to replace).
        checkpoints_written: Checkpoints the store did not have (or had otherwise).
        problems: Each line not imported, by line number, with the reason, in file order.
    """

    lines: int = 0
    agents_created: int = 0
    agents_unchanged: int = 0
    agents_replaced: int = 0
    sessions_created: int = 0
    sessions_unchanged: int = 0
    sessions_replaced: int = 0
    checkpoints_written: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every line was imported (or was already there)."""
        return not self.problems


@dataclass
class _Unit:
    """A session and the checkpoints that follow it, written by one worker in order; or a
    checkpoint on its own (``session`` ``None``) for a session stored before."""

    line: int
    session: ChatSession | None
    checkpoints: list[tuple[int, Checkpoint]] = field(default_factory=list)
    refused: bool = False
    """The session was refused on reading (its agent is unknown): nothing of it is written."""


class _Importer:
    def __init__(
        self,
        target: SessionStore,
        *,
        replace: bool,
        progress: ProgressCallback,
        total: int,
    ) -> None:
        self.target = target
        self.replace = replace
        self.progress = progress
        self.total = total
        self.report = ImportReport()
        self.known_agents: set[str] = set()
        self.with_checkpoints = keeps_checkpoints(target)
        self._problems: list[tuple[int, Problem]] = []

    def problem(self, line: int, reason: str) -> None:
        self._problems.append((line, Problem(f"line {line}", reason)))

    def finish(self) -> ImportReport:
        self._problems.sort(key=lambda numbered: numbered[0])
        self.report.problems = [problem for _, problem in self._problems]
        return self.report

    async def units(self, lines: AsyncIterable[str | bytes]) -> AsyncIterator[_Unit]:
        """Read the lines: agents are stored at once (every later session may need them),
        sessions go out with the checkpoints that follow them."""
        pending: _Unit | None = None
        number = 0
        async for given in lines:
            number += 1
            self.report.lines = number
            self.progress(number, max(self.total, number))
            try:
                text = given.decode("utf-8") if isinstance(given, bytes) else given
            except UnicodeDecodeError as error:
                self.problem(number, f"not valid UTF-8: {error.reason} at byte {error.start}")
                continue
            if not text.strip():
                continue
            try:
                record = parse_line(text)
            except RecordError as error:
                self.problem(number, error.reason)
                continue
            if isinstance(record, ExportHeader):
                continue
            if isinstance(record, AgentSpec):
                await self._agent(number, record)
            elif isinstance(record, ChatSession):
                if pending is not None:
                    yield pending
                pending = self._session_unit(number, record)
            elif (
                pending is not None
                and pending.session is not None
                and (pending.session.id == record.session_id)
            ):
                pending.checkpoints.append((number, record))
            else:
                if pending is not None:
                    yield pending
                pending = None
                yield _Unit(number, None, [(number, record)])
        if pending is not None:
            yield pending

    async def _agent(self, line: int, spec: AgentSpec) -> None:
        try:
            outcome = await put_agent(self.target, spec, replace=self.replace)
        except ChatRuntimeError as error:
            self.problem(line, f"agent {spec.id} not imported: {error}")
            return
        self.known_agents.add(spec.id)
        if outcome is AgentOutcome.CREATED:
            self.report.agents_created += 1
        elif outcome is AgentOutcome.UNCHANGED:
            self.report.agents_unchanged += 1
        elif outcome is AgentOutcome.REPLACED:
            self.report.agents_replaced += 1
        else:
            self.problem(
                line,
                f"agent {spec.id} is stored with other settings: left as stored "
                "(--replace overwrites it)",
            )

    def _session_unit(self, line: int, session: ChatSession) -> _Unit:
        if session.agent_id not in self.known_agents:
            self.problem(
                line,
                f"session {session.id} belongs to agent {session.agent_id}, which is neither "
                "in the store nor earlier in the file",
            )
            return _Unit(line, session, refused=True)
        return _Unit(line, session)

    async def write(self, unit: _Unit) -> None:
        session = unit.session
        if unit.refused:
            self._skip_checkpoints(unit, "its session was not imported")
            return
        if session is not None:
            try:
                outcome, stored = await put_session(self.target, session, replace=self.replace)
            except ChatRuntimeError as error:
                self.problem(unit.line, f"session {session.id} not imported: {error}")
                self._skip_checkpoints(unit, "its session was not imported")
                return
            if outcome is Outcome.CREATED:
                self.report.sessions_created += 1
            elif outcome is Outcome.UNCHANGED:
                self.report.sessions_unchanged += 1
            elif outcome is Outcome.REPLACED:
                self.report.sessions_replaced += 1
            else:
                self.problem(
                    unit.line,
                    f"session {session.id} is stored at revision {stored}, the file has "
                    f"revision {session.revision}: left as stored (--replace overwrites it)",
                )
                self._skip_checkpoints(unit, "its session was left as stored")
                return
        await self._checkpoints(unit)

    async def _checkpoints(self, unit: _Unit) -> None:
        if not unit.checkpoints:
            return
        if not self.with_checkpoints:
            self._skip_checkpoints(unit, "this store keeps no checkpoints")
            return
        if unit.session is None:
            # Checkpoints not after their session: it must be stored already.
            session_id = unit.checkpoints[0][1].session_id
            try:
                stored = await self.target.get_revision(session_id)
            except ChatRuntimeError as error:
                self._skip_checkpoints(unit, f"not imported: {error}")
                return
            if stored is None:
                self._skip_checkpoints(
                    unit, f"its session {session_id} is neither in the store nor in the file"
                )
                return
        try:
            written = await put_checkpoints(self.target, [found for _, found in unit.checkpoints])
        except ChatRuntimeError as error:
            self._skip_checkpoints(unit, f"not imported: {error}")
            return
        self.report.checkpoints_written += written

    def _skip_checkpoints(self, unit: _Unit, reason: str) -> None:
        for line, checkpoint in unit.checkpoints:
            self.problem(line, f"checkpoint {checkpoint.id} not imported: {reason}")


async def import_store(
    target: SessionStore,
    lines: AsyncIterable[str | bytes],
    *,
    replace: bool = False,
    progress: ProgressCallback = no_progress,
    total: int = 0,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> ImportReport:
    """Store the records of an export file's lines in ``target``.

    Each line is checked on its own, as the public API checks what it stores; a bad line
    (not JSON, an invalid record, a session whose agent is neither stored nor earlier in the
    file, a write the store refuses) is reported with its number and the reason, and the
    import goes on. A session already stored at the same revision is skipped, so running the
    same import again changes nothing; one stored at another revision is left and reported,
    or replaced with ``replace``. Memory holds a few sessions at a time, however long the
    file is.

    Example:
        >>> async with await anyio.open_file("backup.jsonl", encoding="utf-8") as lines:
        ...     report = await import_store(store, lines)
        >>> for problem in report.problems:
        ...     print(problem)        # line 12: invalid session: name: ...

    Args:
        target: An initialized store.
        lines: The file's lines, as text or as UTF-8 bytes (decoded one by one, so a line
            that is not UTF-8 is reported like any bad line); a trailing newline is fine.
        replace: Overwrite sessions stored at another revision, and agents stored otherwise.
        progress: Called with the lines read and ``total``.
        total: How many lines there are, if known (for ``progress``).
        concurrency: Sessions written at once.

    Raises:
        ChatRuntimeError: The target failed before any line was read (listing its agents).
    """
    importer = _Importer(target, replace=replace, progress=progress, total=total)
    importer.known_agents = {spec.id for spec in await target.list_agents()}
    await run_pool(importer.units(lines), importer.write, concurrency=concurrency)
    return importer.finish()
