"""The ``chatruntime`` command: a terminal chat (REPL) on the session manager.

Run ``chatruntime --help`` for its options, and ``/help`` inside it for its commands.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence

from ._options import Options, parse_options
from ._repl import EXIT_INTERRUPTED, run

__all__ = ["Options", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the REPL and return its exit status.

    Args:
        argv: The arguments after the program name (``sys.argv[1:]`` when ``None``).

    Returns:
        0 after ``/quit`` or end of input, 1 when it cannot start (the reason is printed),
        2 for bad options, 130 when interrupted while starting.
    """
    try:
        options = parse_options(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A reply the terminal's encoding cannot show must not fail the turn it ends.
        sys.stdout.reconfigure(errors="replace")
    try:
        return run(options)
    except KeyboardInterrupt:
        # Ctrl-C before the REPL routes it itself (while the SDK and the store load).
        return EXIT_INTERRUPTED
