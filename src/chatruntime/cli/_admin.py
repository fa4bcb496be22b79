"""``chatruntime admin``: the operator's commands, a thin front over :mod:`chatruntime.admin`.

Results go to stdout (an export without ``--out`` is its data), progress and the summaries
of an export to stderr. Exit status: 0 all went well, 1 failures found, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO

import anyio
import anyio.to_thread

from ..admin import (
    Problem,
    ProgressCallback,
    check_store,
    collect_garbage,
    copy_store,
    export_store,
    import_store,
    latest_schema_version,
    migrate_store,
    migration_sql,
    no_progress,
    sql_schema_version,
    sql_script,
    walk_sessions,
)
from ..admin._common import keeps_checkpoints
from ..models import ChatRuntimeError, InvalidInputError, SessionHeader
from ..stores import SessionStore, open_store
from ..stores._url import redact_url, scrub
from ._admin_options import EXIT_FAILURES, EXIT_OK, EXIT_USAGE, parse_admin_options
from ._logging import command_logging
from ._progress import Progress
from ._render import history_lines, plural

EXIT_INTERRUPTED = 130
_WRITE_CHUNK = 1 << 18
_READ_CHUNK = 1 << 20


class _Refused(Exception):
    """The command cannot run; the message says why, and the exit status is given."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def main(argv: list[str], *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one admin command; return its exit status.

    Args:
        argv: The arguments after ``chatruntime admin``.
        out: Where results go (``sys.stdout``).
        err: Where progress, problems of an export and refusals go (``sys.stderr``).
    """
    try:
        args = parse_admin_options(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK
    command = _Command(args, out or sys.stdout, err or sys.stderr)
    with command_logging(args.log_level, stream=command.err):
        try:
            return anyio.run(command.run)
        except _Refused as refused:
            print(f"chatruntime admin {args.command}: {refused}", file=command.err)
            return refused.status
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED


class _Command:
    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.args = args
        self.out = out
        self.err = err

    async def run(self) -> int:
        handlers: dict[str, Callable[[], Awaitable[int]]] = {
            "ls": self.ls,
            "show": self.show,
            "export": self.export,
            "import": self.import_,
            "copy": self.copy,
            "check": self.check,
            "gc": self.gc,
            "migrate": self.migrate,
        }
        return await handlers[self.args.command]()

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    @asynccontextmanager
    async def progress(self, label: str) -> AsyncIterator[ProgressCallback]:
        if self.args.no_progress:
            yield no_progress
            return
        shown = Progress(self.err, label)
        try:
            yield shown
        finally:
            shown.end()

    # -- ls, show -------------------------------------------------------------------------

    async def ls(self) -> int:
        args = self.args
        async with _opened(args.store) as store:
            names = {spec.id: spec.name for spec in await store.list_agents()}
            shown = 0
            more = False
            self.say(
                f"{'ID':36}  {'STATUS':9}  {'MESSAGES':>8}  {'LAST ACTIVITY (UTC)':19}  "
                f"{'AGENT':16}  {'USER':16}  NAME"
            )
            async for header in walk_sessions(
                store,
                agent_id=args.agent,
                user_id=args.user,
                status=args.status,
                limit=args.limit + 1,
            ):
                if shown == args.limit:
                    more = True
                    break
                self.say(_session_row(header, names))
                shown += 1
        if more:
            self.say(f"(more than {shown}: --limit N shows more)")
        elif not shown:
            self.say("(no sessions)")
        return EXIT_OK

    async def show(self) -> int:
        args = self.args
        async with _opened(args.store) as store:
            try:
                session = await store.get_session(args.session, last=args.last)
            except ChatRuntimeError as error:
                raise _Refused(f"session {args.session}: {error}", EXIT_FAILURES) from None
            if session is None:
                raise _Refused(f"no session {args.session} in the store", EXIT_FAILURES)
            names = {spec.id: spec.name for spec in await store.list_agents()}
            checkpoints = (
                await store.list_checkpoints(session.id) if keeps_checkpoints(store) else []
            )
        context = session.context
        agent = names.get(session.agent_id, "(agent not stored)")
        lines = [
            f"session:       {session.id}",
            f"name:          {session.name}",
            f"agent:         {agent} ({session.agent_id})",
            f"user:          {session.user_id or '-'}",
            f"status:        {session.status}",
            f"created:       {_when(session.created_at)}",
            f"updated:       {_when(session.updated_at)}",
            f"last activity: {_when(context.last_activity)}",
            f"expires:       {_when(session.expires_at) if session.expires_at else 'never'}",
            f"revision:      {session.revision}",
            f"messages: {context.total_messages}, turns: {context.total_turns}, "
            f"tool calls: {context.total_function_calls}, handoffs: {context.total_handoffs}, "
            f"tokens: {context.total_tokens} ({context.input_tokens} input, "
            f"{context.output_tokens} output)",
        ]
        if session.metadata:
            lines.append(f"metadata:      {session.metadata}")
        if session.state:
            lines.append(f"state:         {', '.join(sorted(session.state))}")
        for checkpoint in checkpoints:
            label = checkpoint.label or "(no label)"
            lines.append(
                f"checkpoint:    {checkpoint.id}  {_when(checkpoint.created_at)}  "
                f"{checkpoint.kind}  {plural(checkpoint.item_count, 'item')}  {label}"
            )
        shown = "last " if args.last is not None else ""
        lines.append(f"history ({shown}{plural(len(session.history), 'item')}):")
        lines += [f"  {line}" for line in history_lines(session.history, names)]
        for line in lines:
            self.say(line)
        return EXIT_OK

    # -- export, import, copy -------------------------------------------------------------

    async def export(self) -> int:
        args = self.args
        async with _opened(args.store) as store, self.progress("exporting sessions") as step:
            if args.out is None:
                report = await export_store(store, _StdoutLines(self.out).write, progress=step)
                self.out.flush()
            else:
                report = await _export_to_file(store, Path(args.out), step)
        where = args.out or "stdout"
        print(
            f"exported {plural(report.agents, 'agent')}, {plural(report.sessions, 'session')}, "
            f"{plural(report.checkpoints, 'checkpoint')} to {where}",
            file=self.err,
        )
        for problem in report.problems:
            print(f"problem: {problem}", file=self.err)
        return EXIT_OK if report.ok else EXIT_FAILURES

    async def import_(self) -> int:
        args = self.args
        if args.file != "-" and not await anyio.Path(args.file).is_file():
            raise _Refused(f"no file {args.file}", EXIT_USAGE)
        async with _opened(args.store) as store, self.progress("importing lines") as step:
            if args.file == "-":
                lines = _read_lines(sys.stdin.buffer)
                report = await import_store(store, lines, replace=args.replace, progress=step)
            else:
                total = await anyio.to_thread.run_sync(_count_lines, args.file)
                report = await import_store(
                    store,
                    _read_file_lines(args.file),
                    replace=args.replace,
                    progress=step,
                    total=total,
                )
        self.say(
            f"read {plural(report.lines, 'line')}: "
            f"{plural(report.sessions_created, 'session')} imported, "
            f"{report.sessions_unchanged} already there, {report.sessions_replaced} replaced; "
            f"{plural(report.agents_created, 'agent')} imported, "
            f"{report.agents_unchanged} already there; "
            f"{plural(report.checkpoints_written, 'checkpoint')} imported; "
            f"{plural(len(report.problems), 'line')} skipped"
        )
        self._problems(report.problems)
        return EXIT_OK if report.ok else EXIT_FAILURES

    async def copy(self) -> int:
        args = self.args
        async with _opened(args.source) as source, _opened(args.target) as target:
            async with (
                self.progress("copying sessions") as step,
                self.progress("verifying") as verify_step,
            ):
                report = await copy_store(
                    source,
                    target,
                    replace=args.replace,
                    progress=step,
                    verify_progress=verify_step,
                )
        verified = report.verification
        self.say(
            f"copied {plural(report.agents_copied, 'agent')}, "
            f"{plural(report.sessions_copied, 'session')} "
            f"({report.sessions_skipped} already there at the same revision), "
            f"{plural(report.checkpoints_copied, 'checkpoint')}"
        )
        self.say(
            f"verified {verified.checked} of {verified.source_count} sessions of the source: "
            f"{len(verified.mismatches)} missing or at another revision in the target; "
            f"the target counts {verified.target_count}"
        )
        self._problems(report.problems)
        for mismatch in verified.mismatches:
            self.say(f"mismatch: {mismatch}")
        return EXIT_OK if report.ok else EXIT_FAILURES

    # -- check, gc, migrate ---------------------------------------------------------------

    async def check(self) -> int:
        async with _opened(self.args.store) as store, self.progress("checking sessions") as step:
            report = await check_store(store, progress=step)
        for record in report.corrupt:
            self.say(f"corrupt: {record.location}: {record.reason}")
        self._problems(report.problems)
        self.say(
            f"checked {plural(report.sessions + len(report.corrupt), 'session')} and "
            f"{plural(report.checkpoints, 'checkpoint')}: {len(report.corrupt)} corrupt, "
            f"{plural(len(report.problems), 'other problem')}"
        )
        return EXIT_OK if report.ok else EXIT_FAILURES

    async def gc(self) -> int:
        async with _opened(self.args.store) as store, self.progress("deleting expired") as step:
            report = await collect_garbage(store, progress=step)
        self.say(f"deleted {plural(report.expired_deleted, 'expired session')}")
        if report.journals_folded is not None:
            self.say(f"folded {plural(report.journals_folded, 'journal')}")
        if report.leases_dropped is not None:
            self.say(f"dropped {plural(report.leases_dropped, 'stale lease')}")
        for note in report.notes:
            self.say(f"note: {note}")
        self._problems(report.problems)
        return EXIT_OK if report.ok else EXIT_FAILURES

    async def migrate(self) -> int:
        args = self.args
        dialect = _sql_dialect(args.store)
        if args.sql:
            if dialect is None:
                raise _Refused(
                    "--sql prints the SQL of SQL stores (sqlite+aiosqlite://, "
                    "postgresql+asyncpg://); other stores upgrade by `migrate` alone",
                    EXIT_USAGE,
                )
            return await self._print_sql(dialect)
        if args.from_version is not None:
            raise _Refused("--from-version goes with --sql", EXIT_USAGE)
        before = await self._schema_version() if dialect is not None else None
        options = {"table_prefix": args.table_prefix} if args.table_prefix else {}
        async with _opened(args.store, **options) as store:
            await migrate_store(store)
        if before is None:
            self.say(f"{redact_url(args.store)}: up to date")
        elif before == latest_schema_version():
            self.say(f"schema up to date (version {before})")
        else:
            self.say(f"schema upgraded from version {before} to {latest_schema_version()}")
        return EXIT_OK

    async def _print_sql(self, dialect: str) -> int:
        args = self.args
        start = args.from_version
        if start is None:
            start = await self._schema_version()
        try:
            statements = migration_sql(dialect, table_prefix=args.table_prefix, from_version=start)
        except ValueError as error:
            raise _Refused(str(error), EXIT_USAGE) from None
        self.out.write(
            sql_script(statements, from_version=start, to_version=latest_schema_version())
        )
        return EXIT_OK

    async def _schema_version(self) -> int:
        url = self.args.store
        try:
            return await sql_schema_version(url, table_prefix=self.args.table_prefix)
        except ChatRuntimeError as error:
            message = error.message
        except Exception as error:  # the driver's own: connection refused, bad password...
            message = f"{type(error).__name__}: {error}"
        raise _Refused(
            f"cannot read the schema version of {redact_url(url)}: {scrub(message, url)} "
            "(with --sql, --from-version N prints the SQL without connecting)",
            EXIT_FAILURES,
        )

    def _problems(self, problems: list[Problem]) -> None:
        for problem in problems:
            self.say(f"problem: {problem}")


@asynccontextmanager
async def _opened(url: str, **options: Any) -> AsyncIterator[SessionStore]:
    """The store of ``url``, initialized, closed after."""
    shown = redact_url(url)
    try:
        store = open_store(url, **options)
    except InvalidInputError as error:
        raise _Refused(f"bad store URL {shown}: {error.message}", EXIT_USAGE) from None
    except ImportError as error:
        raise _Refused(f"cannot open {shown}: {error}", EXIT_FAILURES) from None
    try:
        await store.initialize()
    except ChatRuntimeError as error:
        await _close(store)
        raise _Refused(f"cannot open {shown}: {error.message}", EXIT_FAILURES) from None
    try:
        yield store
    except ChatRuntimeError as error:
        raise _Refused(f"{shown}: {error.code}: {error.message}", EXIT_FAILURES) from None
    finally:
        await _close(store)


async def _close(store: SessionStore) -> None:
    with anyio.CancelScope(shield=True):
        await store.close()


async def _export_to_file(store: SessionStore, path: Path, step: ProgressCallback) -> Any:
    """Export into ``path`` by way of ``path.partial``, renamed once complete: a file named
    as asked is always a whole export."""
    partial = anyio.Path(f"{path}.partial")
    try:
        async with await anyio.open_file(partial, "w", encoding="utf-8") as file:
            lines = _FileLines(file)
            report = await export_store(store, lines.write, progress=step)
            await lines.flush()
        await partial.rename(path)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await partial.unlink(missing_ok=True)
        raise
    return report


class _FileLines:
    """Lines written to an async file a chunk at a time (one thread hop per chunk)."""

    def __init__(self, file: anyio.AsyncFile[str]) -> None:
        self._file = file
        self._pending: list[str] = []
        self._size = 0

    async def write(self, line: str) -> None:
        self._pending.append(line + "\n")
        self._size += len(line) + 1
        if self._size >= _WRITE_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            text, self._pending, self._size = "".join(self._pending), [], 0
            await self._file.write(text)


class _StdoutLines:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    async def write(self, line: str) -> None:
        self._out.write(line + "\n")


async def _read_file_lines(path: str) -> AsyncIterator[bytes]:
    """The lines of the file at ``path`` (see :func:`_read_lines`)."""
    handle = await anyio.to_thread.run_sync(open, path, "rb")
    try:
        async for line in _read_lines(handle):
            yield line
    finally:
        await anyio.to_thread.run_sync(handle.close)


async def _read_lines(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """The lines of a binary file, read a megabyte at a time in a worker thread."""
    while True:
        batch = await anyio.to_thread.run_sync(handle.readlines, _READ_CHUNK)
        if not batch:
            return
        for line in batch:
            yield line


def _count_lines(path: str) -> int:
    count = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _sql_dialect(url: str) -> str | None:
    scheme = url.partition("://")[0].lower()
    if scheme.startswith("postgresql"):
        return "postgresql"
    if scheme.startswith("sqlite"):
        return "sqlite"
    return None


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _session_row(header: SessionHeader, agent_names: dict[str, str]) -> str:
    agent = agent_names.get(header.agent_id, header.agent_id[:8])
    return (
        f"{header.id:36}  {header.status:9}  {header.context.total_messages:>8}  "
        f"{_when(header.context.last_activity):19}  {_cut(agent, 16):16}  "
        f"{_cut(header.user_id or '-', 16):16}  {header.name}"
    )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


__all__ = ["main"]
