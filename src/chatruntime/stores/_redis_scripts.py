"""The Lua scripts of ``RedisStore``: every multi-key change runs as one atomic script.

Redis runs a script without interleaving other commands, so a session's header, its history
and the indexes that point at it can never be seen half-written, and a failed check leaves
everything untouched. The scripts build the names of index keys they cannot know in advance
(the agent and user a session belonged to before this write) from the key prefix, which is why
``RedisStore`` supports a single Redis server (with replicas or Sentinel), not Redis Cluster.

Scripts return small tables whose first element says what happened; ``RedisStore`` turns them
into exceptions.
"""

from __future__ import annotations

WRITE_SESSION = """
-- KEYS: 1 session hash, 2 history list, 3 index of all sessions, 4 index of the new agent,
--       5 index of the new user (only when the session has a user)
-- ARGV: 1 expected revision ('' creates), 2 new revision, 3 header JSON, 4 agent id,
--       5 user id ('' for none), 6 last activity (index score), 7 expiry in epoch ms ('' for
--       none), 8 key prefix, 9 session id, 10... history items as JSON
local session, history, all_sessions = KEYS[1], KEYS[2], KEYS[3]
local expected, revision, header = ARGV[1], ARGV[2], ARGV[3]
local agent, user, score, expires_at = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local prefix, id = ARGV[8], ARGV[9]

local first_item = 10
local exists = redis.call('EXISTS', session) == 1
local stored = redis.call('HMGET', session, 'revision', 'header', 'agentId', 'userId')

local function history_ends_with_items()
  local count = #ARGV - first_item + 1
  if count == 0 then return true end
  local tail = redis.call('LRANGE', history, -count, -1)
  if #tail ~= count then return false end
  for i = 1, count do
    if tail[i] ~= ARGV[first_item + i - 1] then return false end
  end
  return true
end

-- A client that retries after losing the reply would otherwise be told its own write
-- conflicts: the same header at the new revision, after the same items, is this write.
local already_applied = exists and stored[1] == revision and stored[2] == header
  and history_ends_with_items()

if expected == '' then
  if exists then
    if already_applied then return {'ok'} end
    return {'exists'}
  end
elseif not exists then
  return {'missing'}
elseif stored[1] == false then
  return {'corrupt', 'the session hash has no revision field'}
elseif stored[1] ~= expected then
  if already_applied then return {'ok'} end
  return {'stale', stored[1]}
end

if not exists then
  -- Leftovers of an expired session with this id must not become this session's history.
  redis.call('DEL', history)
end

local old_agent, old_user = stored[3], stored[4]
if old_agent and old_agent ~= '' and old_agent ~= agent then
  redis.call('ZREM', prefix .. 'chatruntime:agent_sessions:' .. old_agent, id)
end
if old_user and old_user ~= '' and old_user ~= user then
  redis.call('ZREM', prefix .. 'chatruntime:user_sessions:' .. old_user, id)
end

redis.call('HSET', session, 'revision', revision, 'header', header, 'agentId', agent,
  'userId', user)
redis.call('ZADD', all_sessions, score, id)
redis.call('ZADD', KEYS[4], score, id)
if user ~= '' then
  redis.call('ZADD', KEYS[5], score, id)
end

-- unpack() is bounded by the Lua stack, so long turns are pushed in slices.
for i = first_item, #ARGV, 1000 do
  redis.call('RPUSH', history, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end

if expires_at ~= '' then
  redis.call('PEXPIREAT', session, expires_at)
  redis.call('PEXPIREAT', history, expires_at)
else
  redis.call('PERSIST', session)
  redis.call('PERSIST', history)
end
return {'ok'}
"""

DELETE_SESSION = """
-- KEYS: 1 session hash, 2 history list, 3 index of all sessions
-- ARGV: 1 key prefix, 2 session id
local session, history, all_sessions = KEYS[1], KEYS[2], KEYS[3]
local prefix, id = ARGV[1], ARGV[2]
local existed = redis.call('EXISTS', session)
if existed == 1 and redis.call('TYPE', session).ok == 'hash' then
  local owner = redis.call('HMGET', session, 'agentId', 'userId')
  if owner[1] and owner[1] ~= '' then
    redis.call('ZREM', prefix .. 'chatruntime:agent_sessions:' .. owner[1], id)
  end
  if owner[2] and owner[2] ~= '' then
    redis.call('ZREM', prefix .. 'chatruntime:user_sessions:' .. owner[2], id)
  end
end
redis.call('DEL', session, history)
redis.call('ZREM', all_sessions, id)
return existed
"""

PRUNE_SESSION_INDEX = """
-- Drops ids whose session expired from the index of all sessions; a session created again
-- in the meantime keeps its entry, because the check and the removal are one step.
-- KEYS: 1 index of all sessions; ARGV: 1 key prefix, 2... session ids
local pruned = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 'chatruntime:session:' .. ARGV[i]) == 0 then
    pruned = pruned + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return pruned
"""

RENEW_LEASE = """
-- KEYS: 1 lease; ARGV: 1 holder's token, 2 time to live in ms
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_LEASE = """
-- KEYS: 1 lease; ARGV: 1 holder's token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
