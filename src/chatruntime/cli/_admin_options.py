"""The command line of ``chatruntime admin``: one subcommand per operation."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..models import SESSION_STATUSES
from ._logging import LOG_LEVELS

ADMIN_COMMAND = "admin"
"""The first argument that runs the admin commands instead of the REPL."""

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2

_DESCRIPTION = """\
Operate on a store's data: list and show sessions, export and import them as JSON Lines,
copy them between stores, check every record, remove expired sessions, upgrade the schema.
Every command opens its store as an application does (which upgrades an older schema).
"""

_EPILOG = """\
store URLs (as open_store takes them):
  file://DIR  sqlite+aiosqlite:///FILE  postgresql+asyncpg://USER:PASSWORD@HOST/DB
  redis://HOST:6379/0  memory://

exit status: 0 all went well, 1 failures were found (each is printed), 2 bad usage.
Progress goes to stderr; run `chatruntime admin COMMAND --help` for a command's options.
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text!r}")
    return value


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_admin_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of ``chatruntime admin``."""
    # Accepted before and after the command; after it, only when given (SUPPRESS).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="log to stderr from this level (default: chatruntime's warnings and errors)",
    )
    common.add_argument(
        "--no-progress", action="store_true", default=argparse.SUPPRESS, help="show no progress"
    )
    parser = argparse.ArgumentParser(
        prog=f"chatruntime {ADMIN_COMMAND}",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[common])

    def store_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--store", metavar="URL", required=True, type=_non_empty, help="the store's URL"
        )

    ls = command("ls", "list sessions, most recent activity first, a page at a time")
    store_option(ls)
    ls.add_argument("--agent", metavar="ID", help="only this agent's sessions")
    ls.add_argument("--user", metavar="ID", help="only this user's sessions")
    ls.add_argument("--status", choices=SESSION_STATUSES, help="only sessions with this status")
    ls.add_argument(
        "--limit", metavar="N", type=_positive, default=50, help="show at most N (default: 50)"
    )

    show = command("show", "show one session: its header, statistics and history")
    store_option(show)
    show.add_argument("session", metavar="SESSION", help="the session's id")
    show.add_argument(
        "--last", metavar="N", type=_not_negative, help="only the last N history items"
    )

    export = command("export", "write every agent, session and checkpoint as JSON Lines")
    store_option(export)
    export.add_argument(
        "--out", metavar="FILE", type=_non_empty, help="write to FILE (default: stdout)"
    )

    import_ = command("import", "read an export file into the store; safe to run again")
    store_option(import_)
    import_.add_argument("file", metavar="FILE", help="the export file (- for stdin)")
    import_.add_argument(
        "--replace",
        action="store_true",
        help="overwrite sessions the store holds at another revision (default: report them)",
    )

    copy = command("copy", "copy every agent, session and checkpoint to another store")
    copy.add_argument(
        "--from", dest="source", metavar="URL", required=True, type=_non_empty, help="source"
    )
    copy.add_argument(
        "--to", dest="target", metavar="URL", required=True, type=_non_empty, help="target"
    )
    copy.add_argument(
        "--replace",
        action="store_true",
        help="overwrite sessions the target holds at another revision (default: report them)",
    )

    check = command("check", "read every record; report those that cannot be read")
    store_option(check)

    gc = command("gc", "delete expired sessions; fold journals and drop stale leases")
    store_option(gc)

    migrate = command("migrate", "upgrade the store's schema (or print the SQL with --sql)")
    store_option(migrate)
    migrate.add_argument(
        "--sql",
        action="store_true",
        help="print the SQL that upgrades the database instead of running it (SQL stores)",
    )
    migrate.add_argument(
        "--from-version",
        metavar="N",
        type=_not_negative,
        help="with --sql: the schema version the database holds (default: read from it; "
        "0 for an empty database)",
    )
    migrate.add_argument(
        "--table-prefix", metavar="PREFIX", help="the SQL store's table prefix (if not default)"
    )
    return parser


def parse_admin_options(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the arguments after ``chatruntime admin``.

    Raises:
        SystemExit: For ``--help`` and bad usage (status 2, with a message).
    """
    return build_admin_parser().parse_args(argv)
