"""The command line of ``chatruntime``: options parsed into :class:`Options`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from ._logging import LOG_LEVELS, SERVE_LOG_LEVELS

DEFAULT_DATA_DIR = "./chatruntime-data"

_DESCRIPTION = """\
Chat with LLM agents in the terminal. Sessions are kept in a store (by default files under
./chatruntime-data) and found again on the next start. With no OPENAI_API_KEY and no base URL
the offline model answers: it needs no network and labels every reply [offline].
"""

_EPILOG = """\
environment:
  OPENAI_API_KEY       use OpenAI's models
  OPENAI_BASE_URL      an OpenAI-compatible server (same as --base-url)
  CHATRUNTIME_MODEL    the model to use (same as --model)
  CHATRUNTIME_API      responses (default) or chat_completions, for servers without the
                       Responses API
  CHATRUNTIME_OFFLINE  1 forces the offline model (same as --offline)

Type /help in the chat for its commands. Run `chatruntime serve --help` for the HTTP service.
"""


@dataclass(frozen=True, kw_only=True)
class Options:
    """What the command line asked for.

    Attributes:
        data: The folder of the file store.
        store: A store URL; when set it wins over :attr:`data`.
        model: The model for agents that name none (``None``: the configuration's default).
        base_url: The ``/v1`` URL of an OpenAI-compatible server.
        offline: Force the offline model.
        offline_delay: Seconds the offline model waits before a reply and between words.
        user: The user the sessions belong to (``None``: every session, owned by nobody).
        log_level: The ``--log-level`` given (``None``: only chatruntime's warnings and
            errors, on stderr; the SDK's own records held back).
    """

    data: str = DEFAULT_DATA_DIR
    store: str | None = None
    model: str | None = None
    base_url: str | None = None
    offline: bool = False
    offline_delay: float = 0.0
    user: str | None = None
    log_level: str | None = None


def package_version() -> str:
    """The installed version of chatruntime (``"unknown"`` when run from a bare source tree)."""
    try:
        return version("chatruntime")
    except PackageNotFoundError:
        return "unknown"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds, not {text!r}")
    return value


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of the ``chatruntime`` command."""
    parser = argparse.ArgumentParser(
        prog="chatruntime",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=_non_empty,
        default=DEFAULT_DATA_DIR,
        help=f"folder of the file store (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        type=_non_empty,
        help="any store by URL, overriding --data: file://DIR, sqlite+aiosqlite:///FILE, "
        "postgresql+asyncpg://..., redis://...",
    )
    parser.add_argument(
        "--model", metavar="NAME", type=_non_empty, help="model for agents that name none"
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        type=_non_empty,
        help="an OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 for Ollama",
    )
    parser.add_argument(
        "--offline", action="store_true", help="use the offline model even if a key is set"
    )
    parser.add_argument(
        "--offline-delay",
        metavar="SECONDS",
        type=_seconds,
        default=0.0,
        help="make the offline model wait before replying and between words, like a real one",
    )
    parser.add_argument(
        "--user", metavar="USER", type=_non_empty, help="keep and list only this user's sessions"
    )
    add_log_level(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return parser


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """The ``--log-level`` option of the REPL and the admin commands."""
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="log to stderr from this level, the SDK's and HTTP client's records included "
        "(default: only chatruntime's warnings and errors; off: nothing)",
    )


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line (``sys.argv[1:]`` when ``argv`` is ``None``).

    Raises:
        SystemExit: For ``--help``, ``--version`` and bad options (status 2, with a message).
    """
    namespace = build_parser().parse_args(argv)
    return Options(
        data=namespace.data,
        store=namespace.store,
        model=namespace.model,
        base_url=namespace.base_url,
        offline=namespace.offline,
        offline_delay=namespace.offline_delay,
        user=namespace.user,
        log_level=namespace.log_level,
    )


SERVE_COMMAND = "serve"
"""The first argument that runs the HTTP service instead of the REPL."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOG_FORMATS = ("text", "json")

_SERVE_DESCRIPTION = """\
Serve the sessions over HTTP: a JSON API with server-sent event streaming, per-user API
keys, Prometheus metrics at /metrics, the OpenAPI schema at /docs, and a chat page at /.
Sessions are kept in a store (by default files under ./chatruntime-data); with no
OPENAI_API_KEY and no base URL the offline model answers.
"""

_SERVE_EPILOG = """\
API keys:
  --keys FILE holds one key per line, USER_ID:SHA256HEX, or USER_ID:SHA256HEX:admin for a
  key that may manage agents (or a JSON list of {"user_id", "sha256", "admin"}). The same
  lines, separated by newlines or commas, may be given in CHATRUNTIME_API_KEYS. Without
  either, a one-time admin key for the user "local" is made and printed at start.
  --new-key USER prints a fresh key and the line to add for it.

environment:
  CHATRUNTIME_API_KEYS  API keys, as in a key file
  OPENAI_API_KEY, OPENAI_BASE_URL, CHATRUNTIME_MODEL, CHATRUNTIME_API, CHATRUNTIME_OFFLINE
                        as for the REPL (see chatruntime --help)
"""


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """What ``chatruntime serve`` was asked for.

    Attributes:
        data: The folder of the file store.
        store: A store URL; when set it wins over :attr:`data`.
        host: The address to listen on.
        port: The TCP port to listen on (0: any free port).
        keys: The key file (``None``: ``CHATRUNTIME_API_KEYS``, or a one-time key).
        new_key: Print a fresh key for this user id and exit.
        model: The model for agents that name none.
        base_url: The ``/v1`` URL of an OpenAI-compatible server.
        offline: Force the offline model.
        offline_delay: Seconds the offline model waits before a reply and between words.
        turn_timeout: Seconds a turn may take when its request names none (``None``: no
            limit).
        grace: Seconds shutting down waits for turns in flight before cancelling them.
        cors_origins: Origins browsers may call the service from (none: CORS off).
        log_level: The lowest level logged.
        log_format: ``text`` or ``json`` (one JSON object per line).
        dependency_logs: Log the SDK's and HTTP client's records too (from ``log_level``);
            set when ``--log-level`` is given.
    """

    data: str = DEFAULT_DATA_DIR
    store: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    keys: str | None = None
    new_key: str | None = None
    model: str | None = None
    base_url: str | None = None
    offline: bool = False
    offline_delay: float = 0.0
    turn_timeout: float | None = None
    grace: float = 30.0
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "text"
    dependency_logs: bool = False


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, not {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than zero seconds, not {text!r}")
    return value


def build_serve_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of ``chatruntime serve``."""
    parser = argparse.ArgumentParser(
        prog=f"chatruntime {SERVE_COMMAND}",
        description=_SERVE_DESCRIPTION,
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        type=_non_empty,
        default=DEFAULT_DATA_DIR,
        help=f"folder of the file store (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--store", metavar="URL", type=_non_empty, help="any store by URL, overriding --data"
    )
    parser.add_argument(
        "--host",
        metavar="ADDRESS",
        type=_non_empty,
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        metavar="PORT",
        type=_port,
        default=DEFAULT_PORT,
        help=f"port to listen on, 0 for any free one (default: {DEFAULT_PORT})",
    )
    parser.add_argument("--keys", metavar="FILE", type=_non_empty, help="the API key file")
    parser.add_argument(
        "--new-key",
        metavar="USER",
        type=_non_empty,
        help="print a fresh API key for USER and its key file line, then exit",
    )
    parser.add_argument(
        "--model", metavar="NAME", type=_non_empty, help="model for agents that name none"
    )
    parser.add_argument(
        "--base-url", metavar="URL", type=_non_empty, help="an OpenAI-compatible server"
    )
    parser.add_argument(
        "--offline", action="store_true", help="use the offline model even if a key is set"
    )
    parser.add_argument(
        "--offline-delay",
        metavar="SECONDS",
        type=_seconds,
        default=0.0,
        help="make the offline model wait before replying and between words",
    )
    parser.add_argument(
        "--turn-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        help="longest a turn may take when its request names no timeout (default: no limit)",
    )
    parser.add_argument(
        "--grace",
        metavar="SECONDS",
        type=_seconds,
        default=30.0,
        help="on shutdown, wait this long for turns in flight, then cancel them (default: 30)",
    )
    parser.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        type=_non_empty,
        help="let pages from ORIGIN call the service (repeatable; default: CORS off)",
    )
    parser.add_argument(
        "--log-level",
        choices=SERVE_LOG_LEVELS,
        default=None,
        help="lowest level logged, the SDK's and HTTP client's records included (default: "
        "info, chatruntime's records only)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text, or json: one JSON object per line (default: text)",
    )
    return parser


def parse_serve_options(argv: Sequence[str]) -> ServeOptions:
    """Parse the arguments after ``chatruntime serve``.

    Raises:
        SystemExit: For ``--help`` and bad options (status 2, with a message).
    """
    namespace = build_serve_parser().parse_args(argv)
    return ServeOptions(
        data=namespace.data,
        store=namespace.store,
        host=namespace.host,
        port=namespace.port,
        keys=namespace.keys,
        new_key=namespace.new_key,
        model=namespace.model,
        base_url=namespace.base_url,
        offline=namespace.offline,
        offline_delay=namespace.offline_delay,
        turn_timeout=namespace.turn_timeout,
        grace=namespace.grace,
        cors_origins=tuple(namespace.cors_origin),
        log_level=namespace.log_level or "info",
        log_format=namespace.log_format,
        dependency_logs=namespace.log_level is not None,
    )
