"""The command line of ``chatruntime``: options parsed into :class:`Options`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

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

Type /help in the chat for its commands.
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
    """

    data: str = DEFAULT_DATA_DIR
    store: str | None = None
    model: str | None = None
    base_url: str | None = None
    offline: bool = False
    offline_delay: float = 0.0
    user: str | None = None


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return parser


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
    )
