"""How far a long operation has got, shown while it runs (``/check`` reads every session)."""

from __future__ import annotations

from typing import TextIO

DEFAULT_EVERY = 1000
"""Off a terminal, a progress line is written after every this many items."""


class Progress:
    """Shows ``label: done of total (percent%)`` as an operation goes.

    On a terminal one line is rewritten in place, each time the percentage changes (a
    hundred writes at most, however many items there are), and erased by :meth:`end`.
    Anywhere else (a pipe, a log file) a line is written after every ``every`` items, so
    the output stays short and readable afterwards.

    Args:
        out: Where to write; flushed after every update.
        label: What is being done (``"checking sessions"``).
        every: Items between two lines when not on a terminal.
        in_place: Rewrite one line (``None``: when ``out`` is a terminal).

    Example:
        >>> progress = Progress(sys.stdout, "checking sessions")
        >>> report = await manager.check(progress=progress)
        >>> progress.end()
    """

    def __init__(
        self,
        out: TextIO,
        label: str,
        *,
        every: int = DEFAULT_EVERY,
        in_place: bool | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every!r}")
        self._out = out
        self._label = label
        self._every = every
        self._in_place = out.isatty() if in_place is None else in_place
        self._shown_percent: int | None = None
        self._width = 0

    def __call__(self, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` items are done (``total`` may grow as it goes)."""
        total = max(total, done, 1)
        percent = done * 100 // total
        text = f"{self._label}: {done} of {total} ({percent}%)"
        if self._in_place:
            if percent == self._shown_percent:
                return
            self._shown_percent = percent
            # Padded to the last width, so a shorter text leaves none of the longer one.
            self._write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        elif done % self._every == 0:
            self._write(text + "\n")

    def end(self) -> None:
        """Erase the line rewritten in place, if any, so what follows starts a clean line."""
        if self._in_place and self._width:
            self._write("\r" + " " * self._width + "\r")
        self._width = 0
        self._shown_percent = None

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
