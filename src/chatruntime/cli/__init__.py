"""The ``chatruntime`` command: a terminal chat (REPL) on the session manager,
``chatruntime serve``, the HTTP service, and ``chatruntime admin``, the operator's commands.

Run ``chatruntime --help`` for its options, and ``/help`` inside it for its commands;
``chatruntime serve --help`` and ``chatruntime admin --help`` for the others'.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence

from ._admin_options import ADMIN_COMMAND
from ._logging import command_logging, route_dependency_logs
from ._options import SERVE_COMMAND, Options, ServeOptions, parse_options, parse_serve_options
from ._repl import EXIT_FAILED, EXIT_INTERRUPTED, run

__all__ = ["Options", "ServeOptions", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the REPL and return its exit status.

    Args:
        argv: The arguments after the program name (``sys.argv[1:]`` when ``None``).

    Returns:
        0 after ``/quit`` or end of input, 1 when it cannot start (the reason is printed),
        2 for bad options, 130 when interrupted while starting. ``chatruntime serve``
        returns 0 once shut down, 1 when it cannot start, 2 for bad options.
        ``chatruntime admin`` returns 0 when all went well, 1 when it found or met failures,
        2 for bad usage.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == [SERVE_COMMAND]:
        return _serve(arguments[1:])
    if arguments[:1] == [ADMIN_COMMAND]:
        from ._admin import main as admin_main

        return admin_main(arguments[1:])
    try:
        options = parse_options(arguments)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A reply the terminal's encoding cannot show must not fail the turn it ends.
        sys.stdout.reconfigure(errors="replace")
    with command_logging(options.log_level):
        try:
            return run(options)
        except KeyboardInterrupt:
            # Ctrl-C before the REPL routes it itself (while the SDK and the store load).
            return EXIT_INTERRUPTED


def _serve(argv: Sequence[str]) -> int:
    try:
        options = parse_serve_options(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 0
    try:
        from ..service._serve import serve
    except ImportError as error:
        print(
            "chatruntime serve needs the service extra: pip install 'chatruntime[service]' "
            f"({error})",
            file=sys.stderr,
        )
        return EXIT_FAILED
    # The service installs its own handler (text or JSON lines) on the root logger; the
    # SDK's records reach it only when asked for.
    route_dependency_logs(options.log_level if options.dependency_logs else None)
    return serve(options)
