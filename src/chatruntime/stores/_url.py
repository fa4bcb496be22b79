"""``open_store``: pick and build a store from a URL, as in a config file or an env variable."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote

from ..models import InvalidInputError
from ._protocol import SessionStore

__all__ = ["SUPPORTED_STORE_SCHEMES", "open_store"]

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
        InvalidInputError: The URL is not a string, has no known scheme, or a ``file://`` URL
            has no path. Stores check the rest of their URL themselves.
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
