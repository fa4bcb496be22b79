"""Logging of the ``chatruntime`` commands: where records go and which ones are shown.

The library itself only logs (its ``chatruntime`` logger has a ``NullHandler``); a command
decides what a person sees. Two kinds of record reach the commands:

- chatruntime's own (``chatruntime.*``): shown from ``--log-level`` up (default: warnings,
  on stderr, for the REPL and the admin commands; ``chatruntime serve`` logs from ``info``).
- the SDK's and its HTTP client's (:data:`DEPENDENCY_LOGGERS`): their errors repeat what the
  commands already report with a code (a turn that fails prints ``MODEL_ERROR``, which the SDK
  has just logged as "Error streaming response"), so they are held back unless
  ``--log-level`` is given, and then shown from that level like the rest.

``--log-level off`` shows nothing at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, TextIO

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "off")
"""What ``--log-level`` accepts on the REPL and the admin commands."""

SERVE_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
"""What ``chatruntime serve --log-level`` accepts (a service always logs its errors)."""

DEFAULT_LOG_LEVEL: Final = "warning"
"""The level of chatruntime's own records when ``--log-level`` is not given."""

DEPENDENCY_LOGGERS: Final = ("openai.agents", "openai", "httpx", "httpcore")
"""The loggers of the SDK and its HTTP stack, held back unless ``--log-level`` is given."""

_SILENT: Final = logging.CRITICAL + 1
_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"


def level_number(level: str) -> int:
    """The ``logging`` level of a ``--log-level`` value (``off``: above every level).

    Raises:
        ValueError: ``level`` is not one of :data:`LOG_LEVELS`.
    """
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return _SILENT if level == "off" else logging.getLevelNamesMapping()[level.upper()]


def route_dependency_logs(level: str | None) -> None:
    """Hold the SDK's and HTTP client's records back (``level`` ``None``), or let them
    through from ``level`` to whatever handlers the root logger has.

    Args:
        level: The ``--log-level`` given, or ``None`` when it was not.
    """
    threshold = _SILENT if level is None else level_number(level)
    for name in DEPENDENCY_LOGGERS:
        dependency = logging.getLogger(name)
        dependency.setLevel(threshold)
        # The SDK's verbose mode adds a stdout handler of its own; records go one way only.
        dependency.propagate = True


def configure_cli_logging(level: str | None, *, stream: TextIO | None = None) -> logging.Handler:
    """Send log records to ``stream`` (stderr) as the REPL and the admin commands want them.

    Replaces the root logger's handlers with one, so nothing else (and not Python's
    last-resort handler) prints records behind the command's back.

    Args:
        level: The ``--log-level`` given (one of :data:`LOG_LEVELS`), or ``None``: warnings
            and errors of chatruntime only.
        stream: Where records go (``sys.stderr`` at the time of the call).

    Returns:
        The handler installed (a ``NullHandler`` for ``off``).
    """
    threshold = level_number(level or DEFAULT_LOG_LEVEL)
    handler: logging.Handler
    if threshold == _SILENT:
        handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    route_dependency_logs(level)
    return handler


@contextmanager
def command_logging(level: str | None, *, stream: TextIO | None = None) -> Iterator[None]:
    """:func:`configure_cli_logging` for the body of a ``with``, then the logging
    configuration found before (root handlers and level, the dependencies' levels), so a
    command run in-process (a test, an embedding script) leaves logging as it was."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved = {name: logging.getLogger(name).level for name in DEPENDENCY_LOGGERS}
    configure_cli_logging(level, stream=stream)
    try:
        yield
    finally:
        root.handlers[:], level_before = saved_root
        root.setLevel(level_before)
        for name, dependency_level in saved.items():
            logging.getLogger(name).setLevel(dependency_level)
