"""Fresh processes, cheaply: fork the suite's process (chatruntime and the SDK already
imported) instead of starting a new interpreter each time.

A forked child opens its own store and event loop, exactly as a new process would, and ends
with ``os._exit`` so none of the parent's cleanup runs twice. Forking is only safe from a
process with one thread, which the suite checks before every fork.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path


class ForkError(RuntimeError):
    """The suite's process cannot fork safely (another thread runs)."""


def fork(target: Callable[[], int], *, log: Path | None = None) -> int:
    """Run ``target`` in a forked child and return its pid; the child's exit code is what
    ``target`` returns (1 if it raised; the traceback goes to ``log`` or stderr)."""
    if threading.active_count() > 1:
        names = ", ".join(thread.name for thread in threading.enumerate())
        raise ForkError(f"cannot fork with other threads running: {names}")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if log is not None:
            descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(descriptor, 1)
            os.dup2(descriptor, 2)
            os.close(descriptor)
        code = target()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    raise AssertionError("unreachable")  # pragma: no cover


def wait(pid: int, timeout: float) -> int | None:
    """Wait for child ``pid``; its exit code, ``-signal`` if a signal ended it, or ``None``
    if it still ran after ``timeout`` seconds (it is then killed and reaped)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(0.01)


def kill(pid: int) -> int:
    """SIGKILL child ``pid`` (if it still runs) and reap it; its exit code or ``-signal``."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
