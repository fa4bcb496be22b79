"""Checkpoints in ``RedisStore``: a hash of checkpoint JSON per session and a sorted set for
their order, both kept next to the session's own keys (see ``_redis_keys``).

Each call is one script that finds where the session's keys are (its owner pointer) and works
there, so a checkpoint never lands apart from its session. A session that Redis expires
itself takes its checkpoints along: they carry the session's expiry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from ..models import Checkpoint, CorruptDataError
from ._errors import session_missing
from ._records import describe_invalid
from ._redis_codec import text
from ._redis_keys import RedisKeys
from ._redis_scripts import COMMON

__all__ = ["RedisCheckpoints"]

SAVE_CHECKPOINT = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id, 3 checkpoint id, 4 created at (epoch ms), 5 JSON
local keys = data_keys(ARGV[2], owner_of(ARGV[2]))
-- Checkpoints live with their session: none for a session that is not stored.
if redis.call('EXISTS', keys[1]) == 0 then return 0 end
redis.call('HSET', keys[3], ARGV[3], ARGV[5])
redis.call('ZADD', keys[4], ARGV[4], ARGV[3])
-- The session's expiry, if Redis expires it: its checkpoints go with it.
local at = redis.call('PTTL', keys[1])
if at > 0 then
  redis.call('PEXPIRE', keys[3], at)
  redis.call('PEXPIRE', keys[4], at)
end
return 1
"""
)

GET_CHECKPOINT = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id, 3 checkpoint id; returns {user, JSON or false}
local user = owner_of(ARGV[2])
return {user, redis.call('HGET', data_keys(ARGV[2], user)[3], ARGV[3])}
"""
)

LIST_CHECKPOINTS = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id
-- Returns {user, id, JSON, id, JSON, ...}, newest first: by created_at, then id, descending
-- (ZREVRANGE orders equal scores by member, descending).
local user = owner_of(ARGV[2])
local keys = data_keys(ARGV[2], user)
local reply = {user}
local ids = redis.call('ZREVRANGE', keys[4], 0, -1)
if #ids == 0 then return reply end
local found = redis.call('HMGET', keys[3], unpack(ids))
for i, id in ipairs(ids) do
  if found[i] then
    reply[#reply + 1] = id
    reply[#reply + 1] = found[i]
  end
end
return reply
"""
)

DELETE_CHECKPOINT = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id, 3 checkpoint id; returns whether there was one
local keys = data_keys(ARGV[2], owner_of(ARGV[2]))
redis.call('ZREM', keys[4], ARGV[3])
return redis.call('HDEL', keys[3], ARGV[3])
"""
)

CLEAR_CHECKPOINTS = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id; returns how many there were
local keys = data_keys(ARGV[2], owner_of(ARGV[2]))
local count = redis.call('HLEN', keys[3])
redis.call('DEL', keys[3], keys[4])
return count
"""
)

MappedErrors = Callable[[str], AbstractContextManager[None]]
"""The store's translation of Redis failures into ``StorageError``, for what it is doing."""


class RedisCheckpoints:
    """The checkpoint operations of one ``RedisStore`` (see ``SessionStore``)."""

    def __init__(self, client: Redis, keys: RedisKeys, mapped_errors: MappedErrors) -> None:
        self._keys = keys
        self._mapped_errors = mapped_errors
        register = client.register_script
        self._save = register(SAVE_CHECKPOINT)
        self._get = register(GET_CHECKPOINT)
        self._list = register(LIST_CHECKPOINTS)
        self._delete = register(DELETE_CHECKPOINT)
        self._clear = register(CLEAR_CHECKPOINTS)

    async def save(self, checkpoint: Checkpoint) -> None:
        dumped = checkpoint.model_dump_json(by_alias=True, exclude_none=True)
        args: list[str | int] = [
            self._keys.prefix,
            checkpoint.session_id,
            checkpoint.id,
            checkpoint.created_at,
            dumped,
        ]
        with self._mapped_errors("saving a checkpoint"):
            saved = await self._save(args=args)
        if not saved:
            raise session_missing(checkpoint.session_id)

    async def get(self, session_id: str, checkpoint_id: str) -> Checkpoint | None:
        with self._mapped_errors("reading a checkpoint"):
            user, raw = await self._get(args=[self._keys.prefix, session_id, checkpoint_id])
        if raw is None:
            return None
        return self._parse(session_id, checkpoint_id, raw, text(user))

    async def list(self, session_id: str) -> list[Checkpoint]:
        with self._mapped_errors("listing checkpoints"):
            user, *found = await self._list(args=[self._keys.prefix, session_id])
        return [
            self._parse(session_id, text(checkpoint_id) or "", raw, text(user))
            for checkpoint_id, raw in _pairs(found)
        ]

    async def delete(self, session_id: str, checkpoint_id: str) -> bool:
        with self._mapped_errors("deleting a checkpoint"):
            deleted = await self._delete(args=[self._keys.prefix, session_id, checkpoint_id])
        return bool(deleted)

    async def clear(self, session_id: str) -> int:
        with self._mapped_errors("clearing checkpoints"):
            return int(await self._clear(args=[self._keys.prefix, session_id]))

    def _parse(self, session_id: str, checkpoint_id: str, raw: Any, user: str | None) -> Checkpoint:
        location = self._keys.checkpoints(session_id, user)
        try:
            found = Checkpoint.model_validate_json(raw if isinstance(raw, bytes) else str(raw))
        except ValidationError as error:
            reason = f"checkpoint {checkpoint_id} is invalid: {describe_invalid(error)}"
        else:
            if found.id == checkpoint_id and found.session_id == session_id:
                return found
            reason = f"checkpoint {checkpoint_id} holds checkpoint {found.id} of {found.session_id}"
        raise CorruptDataError(
            f"session {session_id} cannot be read ({location}): {reason}",
            session_id=session_id,
            location=location,
            reason=reason,
        )


def _pairs(flat: list[Any]) -> Iterator[tuple[Any, Any]]:
    return zip(flat[::2], flat[1::2], strict=True)
