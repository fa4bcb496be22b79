"""``RedisStore``: sessions and agents in Redis, shared by any number of worker processes.

Key layout (every key starts with the store's ``key_prefix``, written ``{p}`` here)::

    {p}chatruntime:schema                    string  layout version of the data under {p}
    {p}chatruntime:agent:{id}                string  AgentSpec JSON
    {p}chatruntime:agents                    zset    agent ids scored by created_at
    {p}chatruntime:session:{id}              hash    revision, header (JSON), agentId, userId
    {p}chatruntime:history:{id}              list    one history item JSON per element
    {p}chatruntime:sessions                  zset    session ids scored by last activity
    {p}chatruntime:agent_sessions:{agentId}  zset    the agent's session ids, by last activity
    {p}chatruntime:user_sessions:{userId}    zset    the user's session ids, by last activity
    {p}chatruntime:lease:{id}                string  token of the session's lease holder

A turn appends its items to the history list with ``RPUSH``; nothing rewrites a history, so a
turn costs the same however long the conversation is. Changes that touch several keys run as
Lua scripts (``_redis_scripts``), so readers never see them half done.

Scripts name index keys they compute from the prefix, so the store needs one Redis server
(with replicas or Sentinel if wanted), not Redis Cluster.

Expiry: a session whose header has ``expires_at`` gets ``PEXPIREAT`` on its hash and history,
so Redis itself removes it at that time. Index entries it leaves behind are ignored by readers;
:meth:`RedisStore.load_sessions` drops them from the index of all sessions as it meets them,
while per-agent and per-user entries stay until a listing by agent or user prunes them the
same way (their scores are last-activity times, so a sweep can also find them by range).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from functools import partial
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import anyio
import redis
from pydantic import TypeAdapter, ValidationError
from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from ..models import (
    AgentSpec,
    ChatSession,
    ConflictError,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    SessionHeader,
    StorageError,
    StoreVersionError,
)
from . import _redis_scripts as scripts
from ._lease import TokenLease
from ._protocol import DEFAULT_LEASE_TIMEOUT, DEFAULT_LEASE_TTL, CorruptRecord, LoadReport
from ._records import describe_invalid, parse_agent

__all__ = ["REDIS_LAYOUT_VERSION", "RedisStore"]

logger = logging.getLogger("chatruntime.stores.redis")

REDIS_LAYOUT_VERSION: Final = 1
"""Version of the key layout this chatruntime writes; kept in ``{prefix}chatruntime:schema``."""

_URL_SCHEMES: Final = ("redis", "rediss", "unix")
_HEADER_FIELDS: Final[set[str]] = set(SessionHeader.model_fields)
_ITEM_ADAPTER: TypeAdapter[HistoryItem] = TypeAdapter(HistoryItem)
_BATCH: Final = 200
"""Sessions or agents read per round trip when loading everything."""


class RedisStore:
    """Keeps sessions and agents in Redis, for many worker processes sharing one server.

    Give it exactly one of a URL, a client or a connection pool. The store closes only what it
    created itself: a client or pool passed in stays open for its owner.

    Leases are Redis keys set with ``SET NX PX`` to a random token, renewed in the background
    while held and deleted only by the holder whose token they still carry.

    A client or pool passed in keeps its own settings (timeouts, retries). Give it a
    ``driver_info`` naming the redis-py version, as the store does for its own pool: without
    one, recent redis-py versions read package metadata from disk for each new connection.

    Example:
        >>> store = RedisStore("redis://localhost:6379/0", key_prefix="myapp:")
        >>> await store.initialize()

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/to/socket``.
        client: An existing ``redis.asyncio.Redis`` to use instead of a URL.
        connection_pool: An existing ``redis.asyncio.ConnectionPool`` to use instead of a URL.
        key_prefix: Prepended to every key, to keep several applications, environments or
            tenants apart on one server (for example ``"prod:"``).
        socket_timeout: Seconds to wait for any one answer from Redis (URL only).
        connect_timeout: Seconds to wait for a connection to Redis (URL only).

    Raises:
        InvalidInputError: The URL is malformed, or not exactly one of ``url``, ``client``
            and ``connection_pool`` was given.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        connection_pool: ConnectionPool | None = None,
        key_prefix: str = "",
        socket_timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        sources = {"url": url, "client": client, "connection_pool": connection_pool}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise InvalidInputError(
                "RedisStore needs exactly one of url, client or connection_pool, "
                f"got {', '.join(given) or 'none'}",
                given=given,
            )
        if not isinstance(key_prefix, str):
            raise InvalidInputError("key_prefix must be a string", field="key_prefix")
        timeouts = {"socket_timeout": socket_timeout, "connect_timeout": connect_timeout}
        for name, seconds in timeouts.items():
            if not seconds > 0:
                raise InvalidInputError(f"{name} must be positive, got {seconds!r}", field=name)

        self._prefix = key_prefix
        self._socket_timeout = float(socket_timeout)
        self._connect_timeout = float(connect_timeout)
        self._own_pool: ConnectionPool | None = None
        if url is not None:
            pool = _pool_from_url(url, self._socket_timeout, self._connect_timeout)
            self._own_pool = pool
            self._client = Redis(connection_pool=pool)
        elif connection_pool is not None:
            self._client = Redis(connection_pool=connection_pool)
        else:
            assert client is not None
            self._client = client
        self._server = _describe_server(self._client)

        self._write_session = self._client.register_script(scripts.WRITE_SESSION)
        self._delete_session = self._client.register_script(scripts.DELETE_SESSION)
        self._prune_index = self._client.register_script(scripts.PRUNE_SESSION_INDEX)
        self._expire_if_held = self._client.register_script(scripts.RENEW_LEASE)
        self._delete_if_held = self._client.register_script(scripts.RELEASE_LEASE)

    def __repr__(self) -> str:
        return f"RedisStore(server={self._server!r}, key_prefix={self._prefix!r})"

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` client the store talks through."""
        return self._client

    @property
    def key_prefix(self) -> str:
        """The prefix of every key this store reads and writes."""
        return self._prefix

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Check that Redis answers and holds data this version can read; idempotent.

        Raises:
            StorageError: Redis cannot be reached in time or refused the credentials.
            StoreVersionError: The data under this prefix was written by a newer chatruntime.
        """
        with self._mapped_errors("connecting"):
            try:
                with anyio.fail_after(self._connect_timeout + self._socket_timeout):
                    await self._client.ping()
            except TimeoutError as error:
                raise StorageError(
                    f"Redis at {self._server} did not answer PING within "
                    f"{self._connect_timeout + self._socket_timeout:g}s",
                    server=self._server,
                ) from error
            schema_key = self._key("schema")
            await self._client.set(schema_key, REDIS_LAYOUT_VERSION, nx=True)
            raw = await self._client.get(schema_key)
        found = _text(raw)
        if found is None or not found.isdigit():
            raise CorruptDataError(
                f"{schema_key} holds {found!r}, not a layout version number",
                location=schema_key,
            )
        if int(found) > REDIS_LAYOUT_VERSION:
            raise StoreVersionError(
                f"the data under key prefix {self._prefix!r} on Redis at {self._server} uses "
                f"layout version {found}, written by a newer chatruntime; this one reads up to "
                f"version {REDIS_LAYOUT_VERSION}: upgrade chatruntime or use another key_prefix",
                location=schema_key,
                found=int(found),
                supported=REDIS_LAYOUT_VERSION,
            )

    async def close(self) -> None:
        """Close the connections the store opened itself (not a client or pool passed in)."""
        if self._own_pool is not None:
            with self._mapped_errors("closing"):
                await self._own_pool.disconnect()

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        with self._mapped_errors("saving an agent"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._key("agent", spec.id), _dump(spec))
                pipe.zadd(self._key("agents"), {spec.id: spec.created_at})
                await pipe.execute()

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        key = self._key("agent", agent_id)
        with self._mapped_errors("reading an agent"):
            raw = await self._client.get(key)
        return None if raw is None else parse_agent(agent_id, raw, key)

    async def list_agents(self) -> list[AgentSpec]:
        with self._mapped_errors("listing agents"):
            ids = [
                _text(raw) or "" for raw in await self._client.zrange(self._key("agents"), 0, -1)
            ]
            specs: list[AgentSpec] = []
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                keys = [self._key("agent", agent_id) for agent_id in batch]
                for agent_id, key, raw in zip(
                    batch, keys, await self._client.mget(keys), strict=True
                ):
                    if raw is not None:
                        specs.append(parse_agent(agent_id, raw, key))
        return specs

    async def delete_agent(self, agent_id: str) -> bool:
        with self._mapped_errors("deleting an agent"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key("agent", agent_id))
                pipe.zrem(self._key("agents"), agent_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    # -- sessions -------------------------------------------------------------------------

    async def load_sessions(self) -> LoadReport:
        """Every stored session, most recently active first, plus the ones not readable."""
        report = LoadReport()
        index = self._key("sessions")
        with self._mapped_errors("loading sessions"):
            ids = [_text(raw) or "" for raw in await self._client.zrange(index, 0, -1, desc=True)]
            gone: list[str] = []
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                async with self._client.pipeline(transaction=True) as pipe:
                    for session_id in batch:
                        self._queue_session_read(pipe, session_id)
                    replies = await pipe.execute(raise_on_error=False)
                for offset, session_id in enumerate(batch):
                    exists, stored, items = replies[3 * offset : 3 * offset + 3]
                    if not exists:
                        gone.append(session_id)
                        continue
                    outcome = self._parse_session(session_id, stored, items)
                    if isinstance(outcome, CorruptRecord):
                        report.corrupt.append(outcome)
                    else:
                        report.sessions.append(outcome)
            if gone:
                await self._prune_index(keys=[index], args=[self._prefix, *gone])
        return report

    async def get_session(self, session_id: str) -> ChatSession | None:
        with self._mapped_errors("reading a session"):
            async with self._client.pipeline(transaction=True) as pipe:
                self._queue_session_read(pipe, session_id)
                exists, stored, items = await pipe.execute(raise_on_error=False)
        if not exists:
            return None
        outcome = self._parse_session(session_id, stored, items)
        if isinstance(outcome, CorruptRecord):
            raise outcome.error()
        return outcome

    async def get_revision(self, session_id: str) -> int | None:
        key = self._key("session", session_id)
        with self._mapped_errors("reading a revision"):
            try:
                raw = await self._client.hget(key, "revision")
            except redis_errors.ResponseError as error:
                if not _is_wrong_type(error):
                    raise
                raise CorruptDataError(
                    f"session {session_id} cannot be read: {key} is not a hash",
                    session_id=session_id,
                    location=key,
                ) from error
        if raw is None:
            return None
        revision = _text(raw)
        if revision is None or not revision.isdigit():
            raise CorruptDataError(
                f"session {session_id} cannot be read: its revision is {revision!r}",
                session_id=session_id,
                location=key,
            )
        return int(revision)

    async def write_session(
        self,
        header: SessionHeader,
        new_items: Sequence[HistoryItem],
        *,
        expected_revision: int | None,
    ) -> None:
        """Replace the header and append the items in one Lua script; see ``SessionStore``.

        Repeating a write that is already stored (the same header at the same new revision,
        after the same items) succeeds without writing again, so a command redis-py retries
        after a lost reply is not reported as a conflict with itself.
        """
        session_id = header.id
        keys = [
            self._key("session", session_id),
            self._key("history", session_id),
            self._key("sessions"),
            self._key("agent_sessions", header.agent_id),
        ]
        if header.user_id is not None:
            keys.append(self._key("user_sessions", header.user_id))
        args: list[str | int] = [
            "" if expected_revision is None else expected_revision,
            header.revision,
            header.model_dump_json(by_alias=True, exclude_none=True, include=_HEADER_FIELDS),
            header.agent_id,
            header.user_id or "",
            header.context.last_activity,
            "" if header.expires_at is None else header.expires_at,
            self._prefix,
            session_id,
            *(_dump(item) for item in new_items),
        ]
        with self._mapped_errors("writing a session"):
            reply = await self._write_session(keys=keys, args=args)
        outcome, *rest = [_text(part) or "" for part in reply]
        if outcome == "ok":
            return
        if outcome == "exists":
            raise ConflictError(f"session {session_id} already exists", session_id=session_id)
        if outcome == "missing":
            raise ConflictError(f"session {session_id} no longer exists", session_id=session_id)
        if outcome == "stale":
            stored_revision = int(rest[0]) if rest and rest[0].isdigit() else rest[0]
            raise ConflictError(
                f"session {session_id} is at revision {stored_revision}, "
                f"not {expected_revision}: reload it and try again",
                session_id=session_id,
                stored_revision=stored_revision,
                expected_revision=expected_revision,
            )
        raise CorruptDataError(
            f"session {session_id} cannot be updated: {rest[0] if rest else outcome}",
            session_id=session_id,
            location=keys[0],
        )

    async def delete_session(self, session_id: str) -> bool:
        keys = [
            self._key("session", session_id),
            self._key("history", session_id),
            self._key("sessions"),
        ]
        with self._mapped_errors("deleting a session"):
            existed = await self._delete_session(keys=keys, args=[self._prefix, session_id])
        return bool(existed)

    # -- leases ---------------------------------------------------------------------------

    def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AbstractAsyncContextManager[None]:
        """Hold the session exclusively across processes; see ``SessionStore.lease``.

        The lease is renewed every ``ttl / 3`` seconds while the body runs. If it is lost
        anyway (Redis restarted, the process stalled past ``ttl``), a warning is logged and
        the body goes on: revisions still refuse a write built on stale data.
        """
        key = self._key("lease", session_id)
        return TokenLease(
            session_id=session_id,
            name=f"lease {key}",
            take=partial(self._take_lease, key),
            renew=partial(self._renew_lease, key),
            give_back=partial(self._give_back_lease, key),
            logger=logger,
            renew_errors=(redis_errors.RedisError, OSError),
            give_back_errors=(redis_errors.RedisError, OSError),
            give_back_timeout=self._socket_timeout,
        ).hold(ttl=ttl, timeout=timeout)

    async def _take_lease(self, key: str, token: str, ttl_ms: int) -> bool:
        with self._mapped_errors("taking a lease"):
            return bool(await self._client.set(key, token, nx=True, px=ttl_ms))

    async def _renew_lease(self, key: str, token: str, ttl_ms: int) -> bool:
        return bool(await self._expire_if_held(keys=[key], args=[token, ttl_ms]))

    async def _give_back_lease(self, key: str, token: str) -> None:
        await self._delete_if_held(keys=[key], args=[token])

    # -- helpers --------------------------------------------------------------------------

    def _key(self, kind: str, name: str | None = None) -> str:
        base = f"{self._prefix}chatruntime:{kind}"
        return base if name is None else f"{base}:{name}"

    def _queue_session_read(self, pipe: Any, session_id: str) -> None:
        pipe.exists(self._key("session", session_id))
        pipe.hmget(self._key("session", session_id), ["revision", "header"])
        pipe.lrange(self._key("history", session_id), 0, -1)

    def _parse_session(
        self, session_id: str, stored: Any, items: Any
    ) -> ChatSession | CorruptRecord:
        session_key = self._key("session", session_id)
        history_key = self._key("history", session_id)

        def corrupt(location: str, reason: str) -> CorruptRecord:
            return CorruptRecord(session_id=session_id, location=location, reason=reason)

        if isinstance(stored, Exception):
            return corrupt(session_key, _reply_error(stored, session_key, "a hash"))
        raw_revision, raw_header = stored
        if raw_header is None:
            return corrupt(session_key, "the hash has no header field")
        try:
            header = SessionHeader.model_validate_json(raw_header)
        except ValidationError as error:
            return corrupt(session_key, f"invalid header: {describe_invalid(error)}")
        if header.id != session_id:
            return corrupt(session_key, f"the header's id is {header.id}")
        if _text(raw_revision) != str(header.revision):
            return corrupt(
                session_key,
                f"the revision field says {_text(raw_revision)!r} "
                f"but the header says {header.revision}",
            )
        if isinstance(items, Exception):
            return corrupt(history_key, _reply_error(items, history_key, "a list"))
        history: list[HistoryItem] = []
        for position, raw_item in enumerate(items):
            try:
                history.append(_ITEM_ADAPTER.validate_json(raw_item))
            except ValidationError as error:
                return corrupt(
                    history_key, f"invalid item at index {position}: {describe_invalid(error)}"
                )
        return ChatSession.from_parts(header, history)

    @contextmanager
    def _mapped_errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except redis_errors.AuthenticationError as error:
            raise StorageError(
                f"Redis at {self._server} refused the connection while {doing}: "
                f"authentication failed ({error}); check the user name and password",
                server=self._server,
            ) from error
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as error:
            raise StorageError(
                f"cannot reach Redis at {self._server} while {doing}: {error}",
                server=self._server,
            ) from error
        except redis_errors.RedisError as error:
            raise StorageError(
                f"Redis at {self._server} failed while {doing}: {error}",
                server=self._server,
            ) from error


def _pool_from_url(url: str, socket_timeout: float, connect_timeout: float) -> ConnectionPool:
    if not isinstance(url, str):
        raise InvalidInputError(f"url must be a string, got {type(url).__name__}", field="url")
    # Messages show the URL with its password replaced by "***", as SqlStore's do.
    shown, password = _redacted(url)

    def malformed(reason: object) -> InvalidInputError:
        return InvalidInputError(
            f"malformed Redis URL {shown!r}: {_scrub(str(reason), password)}", field="url"
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
    try:
        return ConnectionPool.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            # A few quick retries ride over a dropped pooled connection without stretching
            # the wait for a server that is down; scripts are safe to retry (see WRITE_SESSION).
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
            **_driver_identity(),
        )
    except (ValueError, TypeError) as error:
        raise malformed(error) from error


def _redacted(url: str) -> tuple[str, str]:
    """``url`` with the password in its user info replaced by ``***``, and that password.

    Parsed by hand, as ``urlsplit`` does it (user info ends at the netloc's last ``@``, the
    password starts after its first ``:``), so that even a URL ``urlsplit`` rejects is shown
    without its password.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url, ""
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return url, ""
    return f"{scheme}://{user}:***@{host}{tail}", password


def _scrub(text: str, password: str) -> str:
    # Whole occurrences only, as SqlStore does: a password "pass" must not turn "password"
    # into "***word". The driver sees the password percent-decoded, so both forms go.
    for secret in {password, unquote(password)} - {""}:
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, "***", text)
    return text


def _driver_identity() -> dict[str, Any]:
    # Left unset, redis-py looks its own version up in the installed package metadata (file
    # system reads on the event loop) for every new connection.
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before 7.1 names the version directly
        return {"lib_name": "redis-py", "lib_version": redis.__version__}
    return {"driver_info": DriverInfo(name="redis-py", lib_version=redis.__version__)}


def _describe_server(client: Redis) -> str:
    kwargs = getattr(client.connection_pool, "connection_kwargs", {})
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _text(raw: object) -> str | None:
    """A reply as text, whether the client decodes responses or not."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    return str(raw)


def _dump(model: AgentSpec | HistoryItem) -> str:
    return model.model_dump_json(by_alias=True, exclude_none=True)


def _is_wrong_type(error: Exception) -> bool:
    return str(error).startswith("WRONGTYPE")


def _reply_error(error: Exception, key: str, expected: str) -> str:
    if _is_wrong_type(error):
        return f"{key} is not {expected}"
    return f"Redis refused to read {key}: {error}"
