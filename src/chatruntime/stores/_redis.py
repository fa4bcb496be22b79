"""``RedisStore``: sessions and agents in Redis, shared by any number of worker processes.

The key layout is described in ``_redis_keys``; the Lua scripts that change several keys at
once in ``_redis_scripts``. A turn appends its items to the history list with ``RPUSH``;
nothing rewrites a history, so a turn costs the same however long the conversation is, and the
last items of a history are one ``LRANGE`` away. Listings read sorted-set indexes a page at a
time, so their cost does not grow with the number of sessions either.

Scripts name index keys they compute from the prefix, so the store needs one Redis server
(with replicas or Sentinel if wanted), not Redis Cluster.

Expiry: a session whose header has ``expires_at`` gets ``PEXPIREAT`` on all its keys (header,
history, checkpoints, owner pointer), so Redis itself removes it at that time. Its index entries
are removed when a listing meets it, or by the sweep that each listing, count and
``expired_sessions`` runs first over a bounded number of sessions Redis expired; listings and
counts never show such a session meanwhile. A session written with an ``expires_at`` that is
already past by Redis's clock (the manager's clock is behind Redis's, or injected in tests) is
kept without key expiry, tracked as overdue, and removed by ``cleanup_expired_sessions`` as on
every other store: a write never deletes what it writes.

Writes: ``write_session`` waits at most ``commit_timeout`` seconds for Redis to answer once the
write is sent (``_redis_commit``); without an answer by then it raises ``OutcomeUnknownError``,
as the write may have been stored or may be once Redis resumes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Final

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis

from ..models import (
    AgentSpec,
    BusyError,
    ChatSession,
    Checkpoint,
    CorruptDataError,
    HistoryItem,
    InvalidInputError,
    OutcomeUnknownError,
    SessionHeader,
    SessionStatus,
    StorageError,
    StoreVersionError,
)
from ..models._page import LIST_LIMIT_DEFAULT, SessionPage
from . import _redis_scripts as scripts
from ._errors import (
    check_keep,
    check_revision_step,
    check_same_agent,
    check_write_options,
    limit_exceeded,
    session_exists,
    session_missing,
    stale_revision,
)
from ._lease import Granted, TokenLeases
from ._paging import check_listing, encode_cursor
from ._protocol import (
    DEFAULT_LEASE_TIMEOUT,
    DEFAULT_LEASE_TTL,
    CorruptRecord,
    CreateLimits,
    Lease,
)
from ._records import parse_agent
from ._redis_checkpoints import RedisCheckpoints
from ._redis_codec import dump, dump_header, parse_header, parse_read, text
from ._redis_commit import WriteUnanswered, send_write
from ._redis_keys import LAYOUT_VERSION, RedisKeys
from ._redis_pool import PoolSettings, describe_server, pool_error, pool_from_url
from ._redis_upgrade import upgrade_layout

__all__ = ["DEFAULT_COMMIT_TIMEOUT", "RedisStore"]

logger = logging.getLogger("chatruntime.stores.redis")

_BATCH: Final = 200
"""Agents read per round trip when listing them all."""
_SCAN_BATCH: Final = 50
"""Sessions read per round trip by a full scan (each with its whole history)."""
DEFAULT_COMMIT_TIMEOUT: Final = 2.0
"""Seconds a write waits for Redis's answer once sent, before ``OutcomeUnknownError``."""
_LIST_EXAMINE_EXTRA: Final = 1000
"""Index entries a listing may pass over (not matching every filter) beyond the page it fills;
past that it answers a shorter page with a cursor, so its cost stays bounded by the page."""


class RedisStore:
    """Keeps sessions and agents in Redis, for many worker processes sharing one server.

    Give it exactly one of a URL, a client or a connection pool. The store closes only what it
    created itself: a client or pool passed in stays open for its owner.

    A store built from a URL uses a blocking connection pool: when all ``max_connections``
    connections are in use, a call waits up to ``pool_timeout`` seconds for one to come back,
    then fails with ``StorageError`` naming both settings. Both can be set as arguments or in
    the URL's query (``redis://host:6379/0?max_connections=128&pool_timeout=30``). The defaults
    (64 connections, 20 s) serve 1,000 concurrent sessions in one process: a call holds a
    connection for one round trip, and a turn makes two (taking the lease reads the revision;
    the write checks the lease is still the caller's and gives it back).

    A write (``write_session``: every turn, create and update) waits at most ``commit_timeout``
    seconds (default 2) for Redis's answer once it is sent, and is never sent twice over by
    redis-py's retries. If Redis stops answering meanwhile (stalled, paused, overloaded), the
    call raises ``OutcomeUnknownError`` (``OUTCOME_UNKNOWN``): the write may be stored, now or
    when Redis resumes, so a turn should be retried with the same ``idempotency_key``. An error
    raised before the write was sent (no connection) is a plain ``StorageError``: nothing was
    written. Taking a connection is bounded by ``pool_timeout`` and ``connect_timeout``.

    Leases are Redis keys set with ``SET NX PX`` to a random token, renewed in the background
    while held and deleted only by the holder whose token they still carry. One that Redis
    could not take back when it ended (Redis was away) is given back as soon as Redis
    answers again, not left to its ttl.

    A client or pool passed in keeps its own settings (timeouts, retries, pool size; a plain
    ``ConnectionPool`` fails at once when full, a ``BlockingConnectionPool`` waits). Give it a
    ``driver_info`` naming the redis-py version, as the store does for its own pool: without
    one, recent redis-py versions read package metadata from disk for each new connection.

    Example:
        >>> store = RedisStore("redis://localhost:6379/0?max_connections=128", key_prefix="app:")
        >>> await store.initialize()

    Args:
        url: ``redis://[[user]:password@]host[:port][/db][?query]``, ``rediss://...`` (TLS) or
            ``unix:///path/to/socket``. The query may hold ``max_connections``,
            ``pool_timeout`` and redis-py's own connection settings.
        client: An existing ``redis.asyncio.Redis`` to use instead of a URL.
        connection_pool: An existing ``redis.asyncio.ConnectionPool`` to use instead of a URL.
        key_prefix: Prepended to every key, to keep several applications, environments or
            tenants apart on one server (for example ``"prod:"``).
        socket_timeout: Seconds to wait for any one answer from Redis (URL only).
        connect_timeout: Seconds to wait for a connection to Redis (URL only).
        max_connections: Connections the pool opens at most (URL only; default 64).
        pool_timeout: Seconds a call waits for a free connection (URL only; default 20).
        commit_timeout: Seconds a write waits for Redis's answer once sent (default 2); past
            that its outcome is unknown (``OutcomeUnknownError``).

    Raises:
        ValueError: Not exactly one of ``url``, ``client`` and ``connection_pool`` was given,
            or an argument is out of range, does not apply, or repeats a setting of the URL.
        InvalidInputError: The URL is not a string or is malformed (its query included).
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
        max_connections: int | None = None,
        pool_timeout: float | None = None,
        commit_timeout: float = DEFAULT_COMMIT_TIMEOUT,
    ) -> None:
        sources = {"url": url, "client": client, "connection_pool": connection_pool}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                "RedisStore needs exactly one of url, client or connection_pool, "
                f"got {', '.join(given) or 'none'}"
            )
        if not isinstance(key_prefix, str):
            raise ValueError(f"key_prefix must be a string, got {type(key_prefix).__name__}")
        timeouts = {
            "socket_timeout": socket_timeout,
            "connect_timeout": connect_timeout,
            "commit_timeout": commit_timeout,
        }
        for name, seconds in timeouts.items():
            if not seconds > 0:
                raise ValueError(f"{name} must be positive, got {seconds!r}")
        if url is None and (max_connections is not None or pool_timeout is not None):
            raise ValueError(
                "max_connections and pool_timeout apply to a store built from a URL; "
                "set them on the client or connection pool passed in"
            )

        self._keys = RedisKeys(key_prefix)
        self._prefix = key_prefix
        self._socket_timeout = float(socket_timeout)
        self._connect_timeout = float(connect_timeout)
        self._commit_timeout = float(commit_timeout)
        # Lease tokens whose write went unanswered: giving them back fails at once (the
        # server just did not answer) and is left to the background retry of TokenLeases.
        self._unanswered_tokens: set[str] = set()
        self._own_pool: ConnectionPool | None = None
        if url is not None:
            pool = pool_from_url(
                url,
                PoolSettings(
                    socket_timeout=self._socket_timeout,
                    connect_timeout=self._connect_timeout,
                    max_connections=max_connections,
                    pool_timeout=pool_timeout,
                ),
            )
            self._own_pool = pool
            self._client = Redis(connection_pool=pool)
        elif connection_pool is not None:
            self._client = Redis(connection_pool=connection_pool)
        else:
            assert client is not None
            self._client = client
        self._server = describe_server(self._client)

        register = self._client.register_script
        self._write_session = register(scripts.WRITE_SESSION)
        self._delete_session = register(scripts.DELETE_SESSION)
        self._read_session = register(scripts.READ_SESSION)
        self._list_sessions = register(scripts.LIST_SESSIONS)
        self._count_sessions = register(scripts.COUNT_SESSIONS)
        self._expired_sessions = register(scripts.EXPIRED_SESSIONS)
        self._read_revision = register(scripts.READ_REVISION)
        self._take_lease = register(scripts.TAKE_LEASE)
        self._renew_lease = register(scripts.RENEW_LEASE)
        self._release_lease = register(scripts.RELEASE_LEASE)
        self._leases = TokenLeases(
            take=self._take,
            renew=self._renew,
            give_back=self._give_back,
            failures=(StorageError,),
            give_back_timeout=self._socket_timeout,
            logger=logger,
            name=lambda session_id: f"lease {self._keys.lease(session_id)}",
        )
        self._checkpoints = RedisCheckpoints(self._client, self._keys, self._mapped_errors)

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

    @property
    def commit_timeout(self) -> float:
        """Seconds a write waits for Redis's answer once sent."""
        return self._commit_timeout

    # -- lifecycle ------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Check that Redis answers and holds data this version can read; idempotent.

        Data of an earlier key layout is upgraded in place, once (see ``_redis_upgrade``).

        Raises:
            StorageError: Redis cannot be reached in time or refused the credentials.
            StoreVersionError: The data under this prefix was written by a newer chatruntime.
        """
        schema_key = self._keys.schema
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
            await self._client.set(schema_key, LAYOUT_VERSION, nx=True)
            raw = await self._client.get(schema_key)
        found = text(raw)
        if found is None or not found.isdigit():
            raise CorruptDataError(
                f"{schema_key} holds {found!r}, not a layout version number",
                location=schema_key,
            )
        if int(found) > LAYOUT_VERSION:
            raise StoreVersionError(
                f"the data under key prefix {self._prefix!r} on Redis at {self._server} uses "
                f"layout version {found}, written by a newer chatruntime; this one reads up to "
                f"version {LAYOUT_VERSION}: upgrade chatruntime or use another key_prefix",
                location=schema_key,
                found=int(found),
                supported=LAYOUT_VERSION,
            )
        if int(found) < LAYOUT_VERSION:
            with self._mapped_errors("upgrading the key layout"):
                await upgrade_layout(self._client, self._keys, int(found), logger)

    async def close(self) -> None:
        """Close the connections the store opened itself (not a client or pool passed in).

        Leases that Redis could not take back when they ended (it was away) get a last
        attempt first; what is left ends by its ttl.
        """
        await self._leases.close()
        if self._own_pool is not None:
            with self._mapped_errors("closing"):
                await self._own_pool.disconnect()

    # -- agents ---------------------------------------------------------------------------

    async def save_agent(self, spec: AgentSpec) -> None:
        with self._mapped_errors("saving an agent"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self._keys.agent(spec.id), dump(spec))
                pipe.zadd(self._keys.agents, {spec.id: spec.created_at})
                await pipe.execute()

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        key = self._keys.agent(agent_id)
        with self._mapped_errors("reading an agent"):
            raw = await self._client.get(key)
        return None if raw is None else parse_agent(agent_id, raw, key)

    async def list_agents(self) -> list[AgentSpec]:
        with self._mapped_errors("listing agents"):
            ids = [text(raw) or "" for raw in await self._client.zrange(self._keys.agents, 0, -1)]
            specs: list[AgentSpec] = []
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                keys = [self._keys.agent(agent_id) for agent_id in batch]
                for agent_id, key, raw in zip(
                    batch, keys, await self._client.mget(keys), strict=True
                ):
                    if raw is not None:
                        specs.append(parse_agent(agent_id, raw, key))
        return specs

    async def delete_agent(self, agent_id: str) -> bool:
        with self._mapped_errors("deleting an agent"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.agent(agent_id))
                pipe.zrem(self._keys.agents, agent_id)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    # -- sessions -------------------------------------------------------------------------

    async def scan_sessions(self) -> AsyncIterator[ChatSession | CorruptRecord]:
        """Every stored session, and a record of each one not readable, a batch at a time.

        Walks the index of all sessions with ``ZSCAN``: a session stored for the whole scan is
        yielded at least once (twice, rarely, if Redis resizes the index meanwhile); one
        created or deleted during the scan may or may not be. Each session is read whole in
        one script, so Redis is never held for more than one session at a time.
        """
        cursor: int = 0
        while True:
            with self._mapped_errors("scanning sessions"):
                cursor, found = await self._client.zscan(
                    self._keys.sessions, cursor, count=_SCAN_BATCH
                )
                ids = [text(member) or "" for member, _score in found]
                replies: list[Any] = []
                if ids:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for session_id in ids:
                            await self._read_session(
                                args=[self._prefix, session_id, ""], client=pipe
                            )
                        replies = await pipe.execute()
            for session_id, reply in zip(ids, replies, strict=True):
                outcome = self._parse(session_id, reply)
                if outcome is not None:  # else gone since the index named it
                    yield outcome
            if not cursor:
                return

    async def count_sessions(
        self, *, user_id: str | None = None, live_at: int | None = None
    ) -> int:
        """How many sessions are stored; see ``SessionStore.count_sessions``.

        One script of a few sorted-set sizes and ranges (O(log n)): the index of all sessions
        or the user's, less those Redis expired, and with ``live_at`` less those expired then.
        """
        args: list[str | int] = [
            self._prefix,
            user_id or "",
            "" if live_at is None else live_at,
            scripts.SWEEP_BUDGET,
        ]
        with self._mapped_errors("counting sessions"):
            return int(await self._count_sessions(args=args))

    async def expired_sessions(self, now: int, *, limit: int = 1000) -> list[str]:
        """Ids of stored sessions whose ``expires_at`` is at or before ``now``, earliest first.

        Read from the expiry indexes (``ZRANGEBYSCORE``), after un-indexing sessions Redis
        has expired itself: those are gone already and are not listed.
        """
        if limit < 1:
            return []
        args: list[str | int] = [self._prefix, now, limit, scripts.SWEEP_BUDGET]
        with self._mapped_errors("finding expired sessions"):
            found = await self._expired_sessions(args=args)
        return [text(session_id) or "" for session_id in found]

    async def list_sessions(
        self,
        *,
        agent_id: str | None = None,
        user_id: str | None = None,
        status: SessionStatus | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of headers, most recent activity first; see ``SessionStore.list_sessions``.

        Served by one script from the smallest sorted-set index that applies (all sessions,
        the agent's, the user's or the status's), which checks the other filters on each
        session's hash. A page may hold fewer than ``limit`` headers and still have a
        ``next_cursor`` when the index held over a thousand entries the other filters refused.
        """
        after = check_listing(
            agent_id=agent_id, user_id=user_id, status=status, limit=limit, cursor=cursor
        )
        args: list[str | int] = [
            self._prefix,
            limit + 1,
            limit + 1 + _LIST_EXAMINE_EXTRA,
            "" if after is None else after[0],
            "" if after is None else after[1],
            agent_id or "",
            user_id or "",
            status or "",
            scripts.SWEEP_BUDGET,
        ]
        with self._mapped_errors("listing sessions"):
            reply = await self._list_sessions(args=args)
        resume_score, resume_id, *entries = reply
        found = [
            (text(entries[i]) or "", _score(entries[i + 1]), entries[i + 2])
            for i in range(0, len(entries), 3)
        ]
        headers: list[SessionHeader] = []
        for session_id, _at, raw in found[:limit]:
            header = parse_header(session_id, raw, self._keys.session(session_id))
            if isinstance(header, CorruptRecord):
                # Listing stays usable; reading the session reports it as CORRUPT_DATA.
                logger.warning("listing skips session %s: %s", session_id, header.reason)
                continue
            headers.append(header)
        next_cursor: str | None = None
        if len(found) > limit:
            last_id, last_at, _raw = found[limit - 1]
            next_cursor = encode_cursor((last_at, last_id))
        elif text(resume_id):
            next_cursor = encode_cursor((_score(resume_score), text(resume_id) or ""))
        return SessionPage(sessions=headers, next_cursor=next_cursor)

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        """One session, or only the last ``last`` items of its history with the whole header.

        One script either way (``LRANGE key -last -1`` for a tail), so the header and the
        items are of the same revision and a tail read never reads the rest.
        """
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
            raise InvalidInputError(f"last must be a whole number >= 0, got {last!r}", field="last")
        with self._mapped_errors("reading a session"):
            reply = await self._read_session(
                args=[self._prefix, session_id, "" if last is None else last]
            )
        outcome = self._parse(session_id, reply)
        if isinstance(outcome, CorruptRecord):
            raise outcome.error()
        return outcome

    async def get_revision(self, session_id: str) -> int | None:
        with self._mapped_errors("reading a revision"):
            user, what, *found = await self._read_revision(args=[self._prefix, session_id])
        key = self._keys.session(session_id, text(user))
        if text(what) == "none":
            return None
        if text(what) == "wrongtype":
            raise CorruptDataError(
                f"session {session_id} cannot be read: {key} is not a hash",
                session_id=session_id,
                location=key,
            )
        revision = text(found[0]) if found else None
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
        lease: Lease | None = None,
        keep: int | None = None,
        limits: CreateLimits | None = None,
    ) -> None:
        """Replace the header and append the items in one Lua script; see ``SessionStore``.

        Given the caller's ``lease``, the same script refuses the write if another holder has
        taken the lease meanwhile (``BusyError``) and gives the lease back after writing
        (``lease.released`` is then true), so a turn costs two round trips: the lease, the
        write. ``keep`` trims the history (``LTRIM``) and ``limits`` are counted in that same
        script, so racing creations from any number of processes hold the limits exactly.

        Repeating a write that is already stored (the same header at the same new revision,
        after the same items) succeeds without writing again, so a write sent again after a
        lost answer is not reported as a conflict with itself.

        Raises:
            OutcomeUnknownError: The write was sent but Redis did not answer within
                ``commit_timeout``: it may be stored (now, or once Redis resumes).
        """
        check_write_options(header, expected_revision, keep, limits)
        check_revision_step(header, expected_revision)
        session_id = header.id
        token = ""
        if lease is not None and lease.session_id == session_id and not lease.released:
            token = lease.token
        args: list[str | int] = [
            self._prefix,
            session_id,
            "" if expected_revision is None else expected_revision,
            header.revision,
            dump_header(header),
            header.agent_id,
            header.user_id or "",
            header.status,
            header.context.last_activity,
            "" if header.expires_at is None else header.expires_at,
            token,
            "" if keep is None else keep,
            *_limit_args(limits),
            *(dump(item) for item in new_items),
        ]
        try:
            with self._mapped_errors("writing a session"):
                reply = await send_write(
                    self._client,
                    self._write_session,
                    [self._keys.lease(session_id)],
                    args,
                    answer_timeout=self._commit_timeout,
                )
        except WriteUnanswered as unanswered:
            if token:
                self._unanswered_tokens.add(token)
            raise OutcomeUnknownError(
                f"Redis at {self._server} did not answer within {unanswered.waited:g}s after "
                f"the write of session {session_id} was sent: it may or may not be stored "
                "(it may also be stored once Redis resumes); retry with the same "
                "idempotency_key to get the stored turn or run it once",
                session_id=session_id,
                server=self._server,
                commit_timeout=unanswered.waited,
            ) from unanswered.cause
        self._check_written(header, reply, lease, expected_revision, keep, limits)

    def _check_written(
        self,
        header: SessionHeader,
        reply: Any,
        lease: Lease | None,
        expected_revision: int | None,
        keep: int | None,
        limits: CreateLimits | None,
    ) -> None:
        """Raise what the write script's reply says went wrong, if anything."""
        session_id = header.id
        outcome, *rest = [text(part) or "" for part in reply]
        if outcome == "ok":
            if lease is not None and rest and rest[0] == "1":
                lease.released = True
            return
        if outcome == "exists":
            raise session_exists(session_id)
        if outcome == "missing":
            raise session_missing(session_id)
        if outcome == "stale" and rest and rest[0].isdigit():
            assert expected_revision is not None
            raise stale_revision(session_id, int(rest[0]), expected_revision)
        if outcome == "agent" and rest:
            check_same_agent(header, rest[0])
        if outcome == "keep" and rest and rest[0].isdigit():
            check_keep(session_id, keep, int(rest[0]))
        if outcome == "limit" and limits is not None and len(rest) == 2:
            limit_exceeded(limits, header, int(rest[0]), int(rest[1]))
        if outcome == "lease_lost":
            raise BusyError(
                f"session {session_id} was taken over by another holder: this caller's lease "
                "ended (not renewed in time) and another was granted; the write was refused",
                session_id=session_id,
            )
        reason = rest[0] if rest else outcome
        if outcome == "stale":
            reason = f"its revision field holds {reason!r}"
        raise CorruptDataError(
            f"session {session_id} cannot be updated: {reason}",
            session_id=session_id,
            location=self._keys.session(session_id, header.user_id),
        )

    async def delete_session(self, session_id: str) -> bool:
        """Remove the session, its history, its checkpoints and its index entries."""
        with self._mapped_errors("deleting a session"):
            existed = await self._delete_session(args=[self._prefix, session_id])
        return bool(existed)

    # -- checkpoints ----------------------------------------------------------------------

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._checkpoints.save(checkpoint)

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        return await self._checkpoints.get(session_id, checkpoint_id)

    async def list_checkpoints(self, session_id: str) -> list[Checkpoint]:
        return await self._checkpoints.list(session_id)

    async def delete_checkpoint(self, session_id: str, checkpoint_id: str) -> bool:
        return await self._checkpoints.delete(session_id, checkpoint_id)

    async def clear_checkpoints(self, session_id: str) -> int:
        return await self._checkpoints.clear(session_id)

    # -- leases ---------------------------------------------------------------------------

    def lease(
        self,
        session_id: str,
        *,
        ttl: float = DEFAULT_LEASE_TTL,
        timeout: float = DEFAULT_LEASE_TIMEOUT,
    ) -> AbstractAsyncContextManager[Lease]:
        """Hold the session exclusively across processes; see ``SessionStore.lease``.

        Taking the lease reads the session's revision in the same script
        (``Lease.revision_known``). The lease is renewed every ``ttl / 3`` seconds while the
        body runs. If it is lost anyway (Redis restarted, the process stalled past ``ttl``),
        a warning is logged and the body goes on: a write under it is refused if another
        holder took the lease, and revisions refuse a write built on stale data.
        """
        return self._leases.hold(session_id, ttl=ttl, timeout=timeout)

    async def _take(self, session_id: str, token: str, ttl_ms: int) -> Granted:
        with self._mapped_errors("taking a lease"):
            reply = await self._take_lease(
                keys=[self._keys.lease(session_id)],
                args=[self._prefix, session_id, token, ttl_ms],
            )
        granted, *found = [text(part) or "" for part in reply]
        if granted != "1":
            return Granted(False)
        if found[0] == "revision" and found[1].isdigit():
            return Granted(True, revision_known=True, revision=int(found[1]))
        if found[0] == "none":
            return Granted(True, revision_known=True, revision=None)
        # Unreadable: the caller's own revision read reports it as corrupt.
        return Granted(True)

    async def _renew(self, session_id: str, token: str, ttl_ms: int) -> bool:
        with self._mapped_errors("renewing a lease"):
            renewed = await self._renew_lease(
                keys=[self._keys.lease(session_id)], args=[token, ttl_ms]
            )
        return bool(renewed)

    async def _give_back(self, session_id: str, token: str) -> None:
        if token in self._unanswered_tokens:
            # Redis did not answer this lease's write just now: waiting for it again would
            # only stretch the caller's call. TokenLeases gives it back once Redis answers.
            self._unanswered_tokens.discard(token)
            raise StorageError(
                f"Redis at {self._server} did not answer the write under lease "
                f"{self._keys.lease(session_id)}",
                server=self._server,
            )
        with self._mapped_errors("releasing a lease"):
            await self._release_lease(keys=[self._keys.lease(session_id)], args=[token])

    # -- helpers --------------------------------------------------------------------------

    def _parse(self, session_id: str, reply: Any) -> ChatSession | CorruptRecord | None:
        """A ``READ_SESSION`` reply: its first element names whose keys hold the session."""
        user = text(reply[0]) or None
        return parse_read(
            session_id,
            reply[1:],
            session_key=self._keys.session(session_id, user),
            history_key=self._keys.history(session_id, user),
        )

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
        except redis_errors.RedisError as error:
            exhausted = pool_error(self._client, error, self._server)
            if exhausted is not None:
                raise exhausted from error
            if isinstance(error, redis_errors.ConnectionError | redis_errors.TimeoutError):
                raise StorageError(
                    f"cannot reach Redis at {self._server} while {doing}: {error}",
                    server=self._server,
                ) from error
            raise StorageError(
                f"Redis at {self._server} failed while {doing}: {error}",
                server=self._server,
            ) from error
        except OSError as error:
            raise StorageError(
                f"cannot reach Redis at {self._server} while {doing}: {error}",
                server=self._server,
            ) from error


def _limit_args(limits: CreateLimits | None) -> list[str | int]:
    """The script's arguments for ``limits``: its time and both caps ('' for none)."""
    if limits is None:
        return ["", "", ""]
    return [
        limits.now,
        "" if limits.max_sessions is None else limits.max_sessions,
        "" if limits.max_sessions_per_user is None else limits.max_sessions_per_user,
    ]


def _score(raw: object) -> int:
    """An index score (epoch milliseconds) as Redis formats it."""
    value = text(raw) or "0"
    try:
        return int(value)
    except ValueError:
        return int(float(value))
