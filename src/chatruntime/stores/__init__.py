"""Stores: where sessions and agents persist. All implement :class:`SessionStore`.

Stores that need an optional extra (``chatruntime[redis]``, ``chatruntime[sql]``) are imported
on first use, so ``import chatruntime.stores`` works without them. :func:`open_store` picks a
store by URL.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._file import FileStore
from ._memory import MemoryStore
from ._protocol import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    CorruptRecord,
    CreateLimits,
    Lease,
    LoadReport,
    SessionStore,
    load_all,
)
from ._url import open_store

if TYPE_CHECKING:
    from ._redis import RedisStore
    from ._sql import SqlStore

__all__ = [
    "DEFAULT_LEASE_TIMEOUT",
    "DEFAULT_LEASE_TTL",
    "CorruptRecord",
    "CreateLimits",
    "FileStore",
    "Lease",
    "LoadReport",
    "MemoryStore",
    "RedisStore",
    "SessionStore",
    "SqlStore",
    "load_all",
    "open_store",
]

_OPTIONAL_STORES: dict[str, tuple[str, str]] = {
    # public name: (private module, extra that provides its dependencies)
    "RedisStore": ("._redis", "redis"),
    "SqlStore": ("._sql", "sql"),
}


def __getattr__(name: str) -> Any:
    if name not in _OPTIONAL_STORES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, extra = _OPTIONAL_STORES[name]
    try:
        module = import_module(module_name, __name__)
    except ImportError as error:
        raise ImportError(
            f"{name} needs optional dependencies that are not installed "
            f"({error.name or error}): install chatruntime[{extra}]"
        ) from error
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
