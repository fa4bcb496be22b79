"""Store URLs: :func:`open_store` picks and builds a store from one, as in a config file or an
env variable; :func:`redact_url` and :func:`scrub` keep their passwords out of messages."""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

from ..models import InvalidInputError
from ._protocol import SessionStore

__all__ = ["SUPPORTED_STORE_SCHEMES", "open_store", "redact_url", "scrub", "url_password"]

SUPPORTED_STORE_SCHEMES: Final = (
    "memory://",
    "file://",
    "sqlite+aiosqlite://",
    "postgresql+asyncpg://",
    "redis://",
    "rediss://",
)
"""The URL schemes :func:`open_store` understands."""

_HINTS: Final = {
    "sqlite": "sqlite+aiosqlite://",
    "postgresql": "postgresql+asyncpg://",
    "postgres": "postgresql+asyncpg://",
}


def open_store(url: str, **options: Any) -> SessionStore:
    """Build the store a URL names; it still needs ``await store.initialize()``.

    ========================================  =====================================
    ``memory://``                             :class:`MemoryStore` (nothing persists)
    ``file://data`` or ``file:///srv/chat``   :class:`FileStore` at a relative or
                                              absolute folder
    ``sqlite+aiosqlite:///chat.db``           :class:`SqlStore` on a SQLite file
    ``sqlite+aiosqlite://``                   :class:`SqlStore` on in-memory SQLite
    ``postgresql+asyncpg://u:p@host/db``      :class:`SqlStore` on PostgreSQL
    ``redis://host:6379/0``, ``rediss://``    :class:`RedisStore`
    ========================================  =====================================

    Example:
        >>> store = open_store(os.environ.get("CHATRUNTIME_STORE", "file://chatruntime-data"))
        >>> await store.initialize()

    Args:
        url: Where the data lives.
        **options: Passed on to the store's constructor (``table_prefix=``, ``key_prefix=``...).

    Raises:
        InvalidInputError: The URL is malformed: not a string, no known scheme, a
            ``file://`` URL without a path, or a malformed host, port, database, driver or
            query. Raised here, never later at ``initialize()``; the message never shows the
            URL's password.
        ImportError: The store needs an optional extra that is not installed.
    """
    if not isinstance(url, str):
        raise InvalidInputError(f"url must be a string, got {type(url).__name__}", field="url")
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise InvalidInputError(
            f"a store URL starts with a scheme such as file:// or redis://; "
            f"supported: {', '.join(SUPPORTED_STORE_SCHEMES)}",
            field="url",
            supported=list(SUPPORTED_STORE_SCHEMES),
        )
    if scheme == "memory":
        from ._memory import MemoryStore

        if rest.strip("/"):
            raise InvalidInputError(
                f"a memory:// URL takes nothing after the scheme, got {url!r}", field="url"
            )
        return MemoryStore(**options)
    if scheme == "file":
        from ._file import FileStore

        path = unquote(rest)
        if not path:
            raise InvalidInputError(
                "a file:// URL needs a folder, such as file://chatruntime-data (relative) "
                "or file:///srv/chatruntime (absolute)",
                field="url",
            )
        return FileStore(path, **options)
    if scheme in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        from . import SqlStore  # the package names the extra to install when it is missing

        return SqlStore(url, **options)
    if scheme in ("redis", "rediss"):
        from . import RedisStore

        return RedisStore(url, **options)
    # Only the scheme is echoed: the rest of a URL may hold a password.
    hint = f"; did you mean {_HINTS[scheme]}?" if scheme in _HINTS else ""
    raise InvalidInputError(
        f"unsupported store URL scheme {scheme}://{hint}; "
        f"supported: {', '.join(SUPPORTED_STORE_SCHEMES)}",
        field="url",
        supported=list(SUPPORTED_STORE_SCHEMES),
    )


def redact_url(url: str) -> str:
    """``url`` with the password in its user info replaced by ``***``; never raises.

    Split by hand, as ``urlsplit`` splits (the user info ends at the netloc's last ``@``, the
    password starts after its first ``:``), but without parsing the host or the port, which
    ``urlsplit`` rejects with ``ValueError`` when they are malformed: a URL bad enough to fail
    to open must still be shown, and shown without its password.

    Example:
        >>> redact_url("redis://:s3cret@cache:6379/0")
        'redis://:***@cache:6379/0'
    """
    scheme, user, password, host, tail = _split(url)
    if password is None:
        return url
    return f"{scheme}://{user}:***@{host}{tail}"


def url_password(url: str) -> str:
    """The password in ``url``'s user info as written (still percent-encoded), or ``""``;
    never raises. Split as :func:`redact_url` splits."""
    return _split(url)[2] or ""


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's or parser's message about ``url``) with ``url``'s password
    replaced by ``***``, as written and percent-decoded (drivers see the decoded form).

    Only whole occurrences go: a password ``pass`` must not turn ``password`` into
    ``***word``.
    """
    password = url_password(url)
    for secret in sorted({password, unquote(password)} - {""}, key=len, reverse=True):
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, "***", text)
    return text


def _split(url: str) -> tuple[str, str, str | None, str, str]:
    """``(scheme, user, password, host, rest)``; ``password`` is ``None`` when the URL has no
    ``user:password@`` part (an empty password is still one)."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url, "", None, "", ""
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon:
        return url, "", None, "", ""
    return scheme, user, password, host, tail
