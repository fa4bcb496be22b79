"""Upgrading data an earlier chatruntime wrote to the key layout of ``_redis_keys``.

- Layout 1 (before paged listing) kept no status index and did not track expiring sessions.
- Layout 2 kept every session under its id (``chatruntime:session:{id}``) and each user's
  index at ``chatruntime:user_sessions:{user}``; layout 3 keeps a user's sessions under
  ``user_id:{user}:session:{id}:...``, with an owner pointer from the id, and per-user expiry
  sets for counting live sessions.

The upgrade walks the index of all sessions once, in batches, a step per layout: it is the one
step whose cost grows with the number of sessions, paid once by the first process that opens
the data, never again at start-up. It is safe to run in several processes at once and
alongside writes of layout 3 (a layout-3 write of a session not yet moved moves it itself).
Processes of an earlier chatruntime must be stopped first: they would write a user's sessions
where layout 3 no longer looks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Final

from redis.asyncio import Redis

from . import _redis_scripts as scripts
from ._redis_codec import text
from ._redis_keys import LAYOUT_VERSION, RedisKeys

_BATCH: Final = 500
"""Sessions upgraded per script call: each call blocks Redis only briefly."""

UPGRADE_FROM_LAYOUT_1 = (
    scripts.COMMON
    + """
-- Brings sessions written by layout 1 into layout 2: a status field and index, and their
-- expiry tracked. Safe to run again on the same ids.
-- ARGV: 1 key prefix, 2... session ids from the index of all sessions
-- Returns how many ids it dropped from that index because their session is gone.
local dropped = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local session = key('session', id)
  local score = redis.call('ZSCORE', key('sessions'), id)
  local kind = redis.call('TYPE', session).ok
  if kind == 'none' then
    dropped = dropped + redis.call('ZREM', key('sessions'), id)
  elseif kind == 'hash' and score then
    local fields = redis.call('HMGET', session, 'header', 'agentId', 'userId', 'status')
    local ok, header = pcall(cjson.decode, fields[1] or '')
    if ok and type(header) == 'table' then
      local status = fields[4] or header.status or 'active'
      if type(status) ~= 'string' then status = 'active' end
      redis.call('HSET', session, 'status', status)
      redis.call('ZADD', key('status_sessions', status), score, id)
      if type(header.expiresAt) == 'number' then
        redis.call('ZADD', key('expiring'), header.expiresAt, id)
        redis.call('HSET', key('expiring_indexes'), id,
          cjson.encode({fields[2] or '', fields[3] or '', status}))
      end
    end
  end
end
return dropped
"""
)

UPGRADE_FROM_LAYOUT_2 = (
    scripts.COMMON
    + """
-- Brings sessions written by layout 2 into layout 3: a user's session moves under
-- user_id:{user}:session:{id}: with an owner pointer, into the user's new index and expiry
-- set. Safe to run again on the same ids, and alongside writes of layout 3.
-- ARGV: 1 key prefix, 2... session ids from the index of all sessions
-- Returns {sessions moved, index entries dropped because their session is gone}.
local moved, dropped = 0, 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local old = data_keys(id, '')
  local kind = redis.call('TYPE', old[1]).ok
  if kind == 'none' and owner_of(id) == '' then
    -- Gone: Redis expired it, and layout 2 had not swept it yet.
    if not forget_gone(id) then dropped = dropped + redis.call('ZREM', key('sessions'), id) end
  elseif kind == 'hash' then
    local user = redis.call('HGET', old[1], 'userId')
    if user and user ~= '' then
      local new = data_keys(id, user)
      for j = 1, 4 do
        if redis.call('EXISTS', old[j]) == 1 then redis.call('RENAME', old[j], new[j]) end
      end
      redis.call('SET', key('owner', id), user)
      local ttl = redis.call('PTTL', new[1])
      if ttl > 0 then redis.call('PEXPIRE', key('owner', id), ttl) end
      local score = redis.call('ZSCORE', key('sessions'), id)
        or redis.call('ZSCORE', key('user_sessions', user), id)
      if score then redis.call('ZADD', user_key(user, 'sessions'), score, id) end
      redis.call('ZREM', key('user_sessions', user), id)
      local expiry = redis.call('ZSCORE', key('expiring'), id)
      if expiry then redis.call('ZADD', user_key(user, 'expiring'), expiry, id) end
      moved = moved + 1
    end
  end
end
return {moved, dropped}
"""
)


async def upgrade_layout(
    client: Redis, keys: RedisKeys, found: int, logger: logging.Logger
) -> None:
    """Bring the data under ``keys.prefix`` from layout ``found`` to :data:`LAYOUT_VERSION`."""
    if found >= LAYOUT_VERSION:
        return
    logger.info(
        "upgrading the Redis data under key prefix %r from layout %d to %d",
        keys.prefix,
        found,
        LAYOUT_VERSION,
    )
    finish = client.register_script(scripts.FINISH_UPGRADE)
    if found < 2:
        upgrade_from_1 = client.register_script(UPGRADE_FROM_LAYOUT_1)
        seen = dropped = 0
        async for batch in _batches(client, keys):
            dropped += int(await upgrade_from_1(args=[keys.prefix, *batch]))
            seen += len(batch)
        await finish(keys=[keys.schema], args=[2])
        logger.info(
            "upgraded %d sessions under key prefix %r to layout 2 (%d index entries of "
            "sessions already gone dropped)",
            seen - dropped,
            keys.prefix,
            dropped,
        )
    upgrade_from_2 = client.register_script(UPGRADE_FROM_LAYOUT_2)
    moved = dropped = 0
    async for batch in _batches(client, keys):
        batch_moved, batch_dropped = await upgrade_from_2(args=[keys.prefix, *batch])
        moved, dropped = moved + int(batch_moved), dropped + int(batch_dropped)
    await _drop_layout_2_user_indexes(client, keys)
    await finish(keys=[keys.schema], args=[LAYOUT_VERSION])
    logger.info(
        "upgraded the data under key prefix %r to layout %d: %d sessions of users moved under "
        "user_id:{user}: (%d index entries of sessions already gone dropped)",
        keys.prefix,
        LAYOUT_VERSION,
        moved,
        dropped,
    )


async def _batches(client: Redis, keys: RedisKeys) -> AsyncIterator[list[str]]:
    """The ids of the index of all sessions, ``_BATCH`` at a time."""
    batch: list[str] = []
    async for member, _score in client.zscan_iter(keys.sessions, count=_BATCH):
        batch.append(text(member) or "")
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _drop_layout_2_user_indexes(client: Redis, keys: RedisKeys) -> None:
    """Delete what is left of layout 2's user indexes: entries of sessions already gone."""
    pattern = _glob_escape(keys.layout_2_user_sessions("")) + "*"
    async for name in client.scan_iter(match=pattern, count=_BATCH, _type="zset"):
        await client.delete(name)


def _glob_escape(literal: str) -> str:
    """``literal`` as a SCAN pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in literal)
