"""The read-eval-print loop: prompts in the main thread, chat work on an event loop thread.

Why two threads: reading a line (with ``readline`` editing when stdin is a terminal) blocks,
and only the main thread receives ``SIGINT``. So the main thread reads lines and hands each
one to an anyio event loop running in a blocking portal; the loop never waits for the
keyboard. Ctrl-C is routed by what the main thread is doing:

- reading a line: ``KeyboardInterrupt`` ends ``input()``, which clears the line;
- waiting for a job (a reply, a command): the job's cancel scope is cancelled on the loop,
  which closes the reply stream; the manager then drops the whole turn;
- anything else (starting, closing): ignored, so the store always closes cleanly.
"""

from __future__ import annotations

import concurrent.futures
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Generic, TextIO, TypeVar

from anyio import CancelScope
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._commands import Outcome, command_names, run_line
from ._options import Options, package_version
from ._render import corrupt_line
from ._startup import Startup, StartupError, open_chat, prepare

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
_PROMPT_NAME_LENGTH = 24
# How often the main thread wakes while waiting for a job, so a Ctrl-C is handled promptly
# even in the rare case the kernel hands the signal to another thread.
_POLL_SECONDS = 0.2


def run(options: Options, *, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run the REPL until ``/quit`` or end of input; return the exit status.

    Args:
        options: The parsed command line.
        stdin: Where lines come from (``sys.stdin``).
        stdout: Where everything goes (``sys.stdout``).
    """
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    interactive = stdin.isatty() and stdout.isatty()
    if interactive and stdin is sys.stdin:
        _enable_line_editing()
    try:
        prepared = prepare(options)
    except StartupError as error:
        return _fail(stdout, str(error))
    with start_blocking_portal("asyncio") as portal:
        portal.call(_keep_sigint_off_this_thread)
        jobs = _Jobs(portal)
        with jobs.handling_sigint():
            started = jobs.run(open_chat, prepared, stdout)
            if started.cancelled:
                return EXIT_INTERRUPTED
            if started.error is not None:
                reason = str(started.error)
                if not isinstance(started.error, StartupError):
                    reason = f"internal error: {type(started.error).__name__}: {reason}"
                return _fail(stdout, reason)
            assert started.value is not None
            startup = started.value
            try:
                _banner(startup, stdout, interactive=interactive)
                _loop(jobs, startup, stdin, stdout, interactive=interactive)
            finally:
                portal.call(startup.close)
    return EXIT_OK


def _loop(
    jobs: _Jobs, startup: Startup, stdin: TextIO, stdout: TextIO, *, interactive: bool
) -> None:
    chat = startup.chat
    while True:
        prompt = ""
        if interactive:
            name = jobs.run(_session_name, startup).value or ""
            if len(name) > _PROMPT_NAME_LENGTH:
                name = name[: _PROMPT_NAME_LENGTH - 3] + "..."
            prompt = f"{name}> "
        try:
            line = jobs.read_line(prompt, stdin, stdout)
        except KeyboardInterrupt:
            stdout.write("\n")
            stdout.flush()
            continue
        if line is None:
            if interactive:
                stdout.write("\n")
                stdout.flush()
            return
        done = jobs.run(run_line, chat, line)
        if done.error is not None:
            # A bug, not an expected failure (those come back as Results): one line, no
            # traceback, and the REPL goes on.
            chat.say(f"error: INTERNAL_ERROR: {type(done.error).__name__}: {done.error}")
        if done.value is Outcome.QUIT:
            return


def _fail(out: TextIO, reason: str) -> int:
    out.write(f"chatruntime: {reason}\n")
    out.flush()
    return EXIT_FAILED


async def _session_name(startup: Startup) -> str:
    current = await startup.chat.current()
    return current.data.name if current.data is not None else ""


def _banner(startup: Startup, out: TextIO, *, interactive: bool) -> None:
    lines = [
        f"chatruntime {package_version()}",
        f"model: {startup.model}",
        f"store: {startup.store}",
    ]
    lines += [corrupt_line(record) for record in startup.corrupt]
    if startup.corrupt:
        lines.append("(/check lists every session that cannot be read)")
    out.write("\n".join(lines) + "\n")
    out.flush()
    startup.chat.say(
        startup.session,
        "Type a message, or /help for the commands."
        + (" Ctrl-C cancels a reply, Ctrl-D quits." if interactive else ""),
    )


class _Outcome(Generic[T]):
    """How a job ended: its value, the exception it raised, or cancelled by Ctrl-C."""

    def __init__(
        self, value: T | None = None, error: Exception | None = None, cancelled: bool = False
    ) -> None:
        self.value = value
        self.error = error
        self.cancelled = cancelled


class _Job:
    """One call running on the loop, with a cancel scope Ctrl-C can reach.

    Both methods run on the loop thread, so the scope needs no lock; a cancel that arrives
    before the job started is remembered.
    """

    def __init__(self) -> None:
        self._scope: CancelScope | None = None
        self._cancel_requested = False
        self.cancelled = False

    async def run(self, func: Callable[..., Awaitable[T]], *args: object) -> T | None:
        with CancelScope() as scope:
            self._scope = scope
            if self._cancel_requested:
                scope.cancel()
            return await func(*args)
        self.cancelled = scope.cancelled_caught
        return None

    def cancel(self) -> None:
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()


class _Jobs:
    """Runs jobs on the portal's loop and routes Ctrl-C (see the module docstring)."""

    def __init__(self, portal: BlockingPortal) -> None:
        self._portal = portal
        self._job: _Job | None = None
        self._reading = False

    def run(self, func: Callable[..., Awaitable[T]], *args: object) -> _Outcome[T]:
        job = _Job()
        self._job = job
        try:
            future = self._portal.start_task_soon(job.run, func, *args)
            while True:
                try:
                    value = future.result(timeout=_POLL_SECONDS)
                except concurrent.futures.TimeoutError:
                    continue
                except Exception as error:
                    return _Outcome(error=error)
                return _Outcome(value=value, cancelled=job.cancelled)
        finally:
            self._job = None

    def read_line(self, prompt: str, stdin: TextIO, stdout: TextIO) -> str | None:
        """The next line without its newline, or ``None`` at end of input.

        Raises:
            KeyboardInterrupt: Ctrl-C was pressed while reading.
        """
        self._reading = True
        try:
            if stdin is sys.stdin and stdout is sys.stdout:
                try:
                    return input(prompt)
                except EOFError:
                    return None
            stdout.write(prompt)
            stdout.flush()
            line = stdin.readline()
            return line.rstrip("\n") if line else None
        finally:
            self._reading = False

    @contextmanager
    def handling_sigint(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._reading:
            raise KeyboardInterrupt
        job = self._job
        if job is not None:
            self._portal.start_task_soon(job.cancel)


def _keep_sigint_off_this_thread() -> None:
    # Runs on the loop thread: with SIGINT blocked there (and in the worker threads it
    # starts, which inherit the mask), the kernel delivers Ctrl-C to the main thread.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _enable_line_editing() -> None:
    try:
        import readline
    except ImportError:  # not every Python has it; plain input() still works
        return
    names = [f"/{name}" for name in command_names()]

    def complete(text: str, state: int) -> str | None:
        matches = [name for name in names if name.startswith(text)] if text[:1] == "/" else []
        return matches[state] if state < len(matches) else None

    readline.set_completer(complete)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
