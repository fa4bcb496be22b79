"""Connections of ``RedisStore``: the URL it is given, the pool it builds, the errors it names.

A store built from a URL uses a ``BlockingConnectionPool``: a call that finds every connection
in use waits for one to be returned (up to ``pool_timeout`` seconds) instead of failing at once
with redis-py's ``Too many connections``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ..models import InvalidInputError, StorageError
from ._url import redact_url, scrub

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
    "PoolSettings",
    "describe_server",
    "pool_error",
    "pool_from_url",
]

DEFAULT_MAX_CONNECTIONS: Final = 64
"""Connections a store built from a URL opens at most. One process serves 1,000 concurrent
sessions with it: a call holds a connection only for its round trip, never while a model runs."""

DEFAULT_POOL_TIMEOUT: Final = 20.0
"""Seconds a call waits for a free connection before failing with ``StorageError``."""

_URL_SCHEMES: Final = ("redis", "rediss", "unix")
_NO_FREE_CONNECTION: Final = "No connection available."
# Query parameters the store reads itself rather than passing on to redis-py.
_OWN_QUERY: Final = ("max_connections", "pool_timeout")


@dataclass(frozen=True)
class PoolSettings:
    """How a store built from a URL connects (see ``RedisStore`` for each setting)."""

    socket_timeout: float
    connect_timeout: float
    max_connections: int | None = None
    pool_timeout: float | None = None


def pool_from_url(url: str, settings: PoolSettings) -> BlockingConnectionPool:
    """The blocking pool a URL names, its own query settings applied.

    Raises:
        InvalidInputError: The URL is malformed (a setting in its query included). Messages
            never show the URL's password.
        ValueError: A setting given as an argument is out of range, or is in the URL too.
    """
    if not isinstance(url, str):
        raise InvalidInputError(f"url must be a string, got {type(url).__name__}", field="url")

    def malformed(reason: object) -> InvalidInputError:
        return InvalidInputError(
            f"malformed Redis URL {redact_url(url)!r}: {scrub(str(reason), url)}", field="url"
        )

    try:
        parts = urlsplit(url)
        port = parts.port  # urlsplit checks the port only when asked for it
    except ValueError as error:
        raise malformed(error) from error
    if port == 0:
        raise malformed("port 0")
    if parts.scheme not in _URL_SCHEMES:
        raise malformed(f"the scheme must be one of {', '.join(s + '://' for s in _URL_SCHEMES)}")
    if parts.scheme == "unix" and not parts.path:
        raise malformed("a unix:// URL needs a socket path")
    if parts.scheme != "unix" and not parts.hostname:
        raise malformed("no host")

    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "timeout" for name, _ in query):
        raise malformed("use pool_timeout=, not timeout=, for the seconds to wait for a connection")
    own = {name: value for name, value in query if name in _OWN_QUERY}
    rest = [(name, value) for name, value in query if name not in _OWN_QUERY]
    max_connections = _setting(
        "max_connections", settings.max_connections, own, DEFAULT_MAX_CONNECTIONS, int
    )
    pool_timeout = _setting("pool_timeout", settings.pool_timeout, own, DEFAULT_POOL_TIMEOUT, float)
    try:
        return BlockingConnectionPool.from_url(
            urlunsplit(parts._replace(query=urlencode(rest))),
            max_connections=max_connections,
            timeout=pool_timeout,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.connect_timeout,
            # A few quick retries ride over a dropped pooled connection without stretching
            # the wait for a server that is down; every script is safe to repeat.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            **_driver_identity(),
        )
    except (ValueError, TypeError) as error:
        raise malformed(error) from error


def _setting(
    name: str,
    argument: float | None,
    in_url: dict[str, str],
    default: float,
    kind: type[int] | type[float],
) -> Any:
    """The setting's value from the URL's query or the argument (not both), or ``default``:
    a count of at least 1 (``int``) or a positive number of seconds (``float``).

    A bad value in the URL is the URL's fault (``InvalidInputError``, as for the rest of a
    malformed URL); a bad argument is the calling code's (``ValueError``).
    """
    counts = kind is int
    wanted = "an integer of at least 1" if counts else "a positive number"

    def fits(value: float) -> bool:
        return value >= 1 if counts else value > 0

    if name in in_url:
        if argument is not None:
            raise ValueError(f"{name} is given both in the URL and as an argument; give it once")
        try:
            value = kind(in_url[name])
        except ValueError:
            value = None
        if value is None or not fits(value):
            raise InvalidInputError(
                f"{name} in the URL must be {wanted}, got {in_url[name]!r}", field=name
            )
        return value
    if argument is None:
        return default
    if not fits(argument):
        raise ValueError(f"{name} must be {wanted}, got {argument!r}")
    return argument


def pool_error(client: Redis, error: redis_errors.RedisError, server: str) -> StorageError | None:
    """The clear error for a call that found no free connection, or ``None`` if ``error`` is
    not that."""
    if not isinstance(error, redis_errors.ConnectionError):
        return None
    pool: ConnectionPool = client.connection_pool
    limit = getattr(pool, "max_connections", None)
    if isinstance(pool, BlockingConnectionPool) and str(error) == _NO_FREE_CONNECTION:
        timeout = pool.timeout
        return StorageError(
            f"no free connection to Redis at {server}: all {limit} were in use for "
            f"{timeout:g}s; raise max_connections or pool_timeout (in the store URL's query "
            "or as RedisStore arguments), or lower the load",
            server=server,
            max_connections=limit,
            pool_timeout=timeout,
        )
    if "Too many connections" in str(error):
        return StorageError(
            f"no free connection to Redis at {server}: all {limit} of the connection pool "
            "passed in were in use, and it does not wait; pass a "
            "redis.asyncio.BlockingConnectionPool or build the store from a URL",
            server=server,
            max_connections=limit,
        )
    return None


def _driver_identity() -> dict[str, Any]:
    # Left unset, redis-py looks its own version up in the installed package metadata (file
    # system reads on the event loop) for every new connection.
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before 7.1 names the version directly
        return {"lib_name": "redis-py", "lib_version": redis.__version__}
    return {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}


def describe_server(client: Redis) -> str:
    """``host:port`` or ``unix:path`` of the server ``client`` talks to, for messages."""
    kwargs = getattr(client.connection_pool, "connection_kwargs", {})
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
