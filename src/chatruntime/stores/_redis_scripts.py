"""The Lua scripts of ``RedisStore``: every multi-key step runs as one atomic script.

Redis runs a script without interleaving other commands, so a session's header, its history
and the indexes that point at it can never be seen half-written, and a failed check leaves
everything untouched. The scripts build the names of keys they cannot know in advance (the
indexes a session belonged to before this write, the session keys an index names) from the key
prefix, which is why ``RedisStore`` supports a single Redis server (with replicas or Sentinel),
not Redis Cluster. The names they build are those of ``_redis_keys``.

Scripts return small tables whose first element says what happened; ``RedisStore`` turns them
into exceptions. Every script is safe to run twice (redis-py repeats a command whose reply was
lost), which is why the write recognises its own earlier success and taking a lease accepts a
lease its own token already holds.
"""

from __future__ import annotations

_COMMON = """
local prefix = ARGV[1]
local function key(kind, name)
  if name then return prefix .. 'chatruntime:' .. kind .. ':' .. name end
  return prefix .. 'chatruntime:' .. kind
end

-- Removes a session id from the listing indexes it is in.
local function unindex(id, agent, user, status)
  redis.call('ZREM', key('sessions'), id)
  if agent and agent ~= '' then redis.call('ZREM', key('agent_sessions', agent), id) end
  if user and user ~= '' then redis.call('ZREM', key('user_sessions', user), id) end
  if status and status ~= '' then redis.call('ZREM', key('status_sessions', status), id) end
end

-- Stops tracking the expiry of a session id; when the session itself is gone (Redis expired
-- it), its index entries go too. Returns whether it removed them.
local function forget_expiry(id, session_gone)
  local owners = redis.call('HGET', key('expiring_indexes'), id)
  redis.call('ZREM', key('expiring'), id)
  redis.call('HDEL', key('expiring_indexes'), id)
  if session_gone and owners then
    local ok, found = pcall(cjson.decode, owners)
    if ok and type(found) == 'table' then
      unindex(id, found[1], found[2], found[3])
      return true
    end
  end
  return false
end

-- The server's clock in epoch milliseconds: the clock Redis expires keys by.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drops the index entries of up to `budget` sessions Redis has expired (their keys are gone;
-- their entries in the listing indexes are not, until this runs). Returns the time it used.
local function sweep_expired(budget)
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', key('expiring'), '-inf',
    '(' .. string.format('%.0f', now), 'LIMIT', 0, budget)
  for _, id in ipairs(due) do
    forget_expiry(id, redis.call('EXISTS', key('session', id)) == 0)
  end
  return now
end
"""

SWEEP_BUDGET = 100
"""Expired sessions a listing or count un-indexes per call, bounding its cost."""

WRITE_SESSION = (
    _COMMON
    + """
-- KEYS: 1 session hash, 2 history list, 3 lease
-- ARGV: 1 key prefix, 2 session id, 3 expected revision ('' creates), 4 new revision,
--       5 header JSON, 6 agent id, 7 user id ('' for none), 8 status, 9 last activity (index
--       score), 10 expiry in epoch ms ('' for none), 11 lease token ('' for none),
--       12... history items as JSON
local session, history, lease = KEYS[1], KEYS[2], KEYS[3]
local id, expected, revision, header = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local agent, user, status, score = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local expires_at, token = ARGV[10], ARGV[11]
local first_item = 12

local exists = redis.call('EXISTS', session) == 1
local stored = redis.call('HMGET', session, 'revision', 'header', 'agentId', 'userId', 'status')

-- Gives the caller's lease back in this same step; whether it did.
local function release()
  if token ~= '' and redis.call('GET', lease) == token then
    redis.call('DEL', lease)
    return 1
  end
  return 0
end

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
if exists and stored[1] == revision and stored[2] == header and history_ends_with_items() then
  return {'ok', release()}
end

if token ~= '' then
  local holder = redis.call('GET', lease)
  -- An expired lease nobody took since is no danger: the revision check below still holds.
  if holder and holder ~= token then return {'lease_lost'} end
end

if expected == '' then
  if exists then return {'exists'} end
elseif not exists then
  return {'missing'}
elseif stored[1] == false then
  return {'corrupt', 'the session hash has no revision field'}
elseif stored[1] ~= expected then
  return {'stale', stored[1]}
elseif stored[3] and stored[3] ~= '' and stored[3] ~= agent then
  return {'agent', stored[3]}
end

if not exists then
  -- Leftovers of an expired session with this id must not become this session's history
  -- nor keep it in the indexes its earlier life was in.
  redis.call('DEL', history)
  forget_expiry(id, true)
end

local old_user, old_status = stored[4], stored[5]
if old_user and old_user ~= '' and old_user ~= user then
  redis.call('ZREM', key('user_sessions', old_user), id)
end
if old_status and old_status ~= '' and old_status ~= status then
  redis.call('ZREM', key('status_sessions', old_status), id)
end

redis.call('HSET', session, 'revision', revision, 'header', header, 'agentId', agent,
  'userId', user, 'status', status)
redis.call('ZADD', key('sessions'), score, id)
redis.call('ZADD', key('agent_sessions', agent), score, id)
redis.call('ZADD', key('status_sessions', status), score, id)
if user ~= '' then
  redis.call('ZADD', key('user_sessions', user), score, id)
end

-- unpack() is bounded by the Lua stack, so long turns are pushed in slices.
for i = first_item, #ARGV, 1000 do
  redis.call('RPUSH', history, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end

if expires_at ~= '' then
  redis.call('PEXPIREAT', session, expires_at)
  redis.call('PEXPIREAT', history, expires_at)
  redis.call('ZADD', key('expiring'), expires_at, id)
  redis.call('HSET', key('expiring_indexes'), id, cjson.encode({agent, user, status}))
else
  redis.call('PERSIST', session)
  redis.call('PERSIST', history)
  redis.call('ZREM', key('expiring'), id)
  redis.call('HDEL', key('expiring_indexes'), id)
end
return {'ok', release()}
"""
)

DELETE_SESSION = (
    _COMMON
    + """
-- KEYS: 1 session hash, 2 history list; ARGV: 1 key prefix, 2 session id
local session, history, id = KEYS[1], KEYS[2], ARGV[2]
local existed = redis.call('EXISTS', session)
if existed == 1 and redis.call('TYPE', session).ok == 'hash' then
  local owner = redis.call('HMGET', session, 'agentId', 'userId', 'status')
  unindex(id, owner[1], owner[2], owner[3])
else
  redis.call('ZREM', key('sessions'), id)
end
forget_expiry(id, true)
redis.call('DEL', session, history)
return existed
"""
)

LIST_SESSIONS = (
    _COMMON
    + """
-- A page of headers from the most selective index that applies, in (score, id) descending
-- order, below a cursor. Filters the index names not are checked on each session's hash.
-- ARGV: 1 key prefix, 2 headers wanted (the page's size + 1), 3 most index entries to examine,
--       4 cursor score ('' for the first page), 5 cursor id, 6 agent id ('' for any),
--       7 user id ('' for any), 8 status ('' for any), 9 expired sessions to sweep first
-- Returns: {resume score, resume id, id, score, header JSON, id, score, header JSON, ...};
-- the resume position is '' unless the examination budget ran out before the page filled.
local wanted, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local after_score, after_id = ARGV[4], ARGV[5]
local agent, user, status = ARGV[6], ARGV[7], ARGV[8]
sweep_expired(tonumber(ARGV[9]))

-- Byte order, as Redis orders equal scores (Lua's own < follows the server's locale).
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local index, size = key('sessions'), nil
local filters = {}
if agent ~= '' then filters[#filters + 1] = key('agent_sessions', agent) end
if user ~= '' then filters[#filters + 1] = key('user_sessions', user) end
if status ~= '' then filters[#filters + 1] = key('status_sessions', status) end
for _, candidate in ipairs(filters) do
  local count = redis.call('ZCARD', candidate)
  if size == nil or count < size then index, size = candidate, count end
end
if size == nil then size = redis.call('ZCARD', index) end

-- Ascending ranks below `top` sort before the cursor: those with a lower score, then those
-- of the cursor's score with a smaller id (found by bisection within that run of scores).
local top = size
if after_score ~= '' then
  local low = redis.call('ZCOUNT', index, '-inf', '(' .. after_score)
  local high = low + redis.call('ZCOUNT', index, after_score, after_score)
  while low < high do
    local middle = math.floor((low + high) / 2)
    if before(redis.call('ZRANGE', index, middle, middle)[1], after_id) then
      low = middle + 1
    else
      high = middle
    end
  end
  top = low
end

local reply = {'', ''}
local found, examined = 0, 0
local rank = top - 1
-- At least 16 entries per range call: fewer calls where filters refuse entries.
local batch = math.min(math.max(wanted, 16), 100)
while rank >= 0 and found < wanted and examined < budget do
  local low = math.max(0, rank - batch + 1)
  local entries = redis.call('ZRANGE', index, low, rank, 'WITHSCORES')
  for i = #entries - 1, 1, -2 do
    local id, score = entries[i], entries[i + 1]
    local session = key('session', id)
    local fields = redis.pcall('HMGET', session, 'header', 'agentId', 'userId', 'status')
    examined = examined + 1
    rank = rank - 1
    if fields.err then
      -- Not a hash: a corrupt record, which reading the session reports.
    elseif not fields[1] then
      if redis.call('EXISTS', session) == 0 then
        -- Expired before a sweep reached it; removing it leaves lower ranks as they are.
        redis.call('ZREM', index, id)
      end
    elseif (agent == '' or fields[2] == agent) and (user == '' or fields[3] == user)
        and (status == '' or fields[4] == status) then
      found = found + 1
      reply[#reply + 1] = id
      reply[#reply + 1] = score
      reply[#reply + 1] = fields[1]
    end
    if found >= wanted or examined >= budget then
      if found < wanted and rank >= 0 then
        reply[1], reply[2] = score, id
      end
      break
    end
  end
end
return reply
"""
)

COUNT_SESSIONS = (
    _COMMON
    + """
-- ARGV: 1 key prefix, 2 expired sessions to sweep first
-- Sessions Redis expired that no sweep reached yet are still in the index; their expiry
-- times have passed, so they are the entries of the expiry index due by now.
local now = sweep_expired(tonumber(ARGV[2]))
return redis.call('ZCARD', key('sessions'))
  - redis.call('ZCOUNT', key('expiring'), '-inf', '(' .. string.format('%.0f', now))
"""
)

READ_SESSION = """
-- KEYS: 1 session hash, 2 history list; ARGV: 1 items to read from the end ('' for all)
-- Returns {0} (no session), {2} (the session key is not a hash), {3} (the history key is not
-- a list) or {1, revision, header JSON, history length, {items...}}: header and items of the
-- same revision, in one step.
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return {0} end
if kind ~= 'hash' then return {2} end
local history_kind = redis.call('TYPE', KEYS[2]).ok
if history_kind ~= 'none' and history_kind ~= 'list' then return {3} end
local fields = redis.call('HMGET', KEYS[1], 'revision', 'header')
local items = {}
if ARGV[1] == '' then
  items = redis.call('LRANGE', KEYS[2], 0, -1)
elseif tonumber(ARGV[1]) > 0 then
  items = redis.call('LRANGE', KEYS[2], -tonumber(ARGV[1]), -1)
end
return {1, fields[1], fields[2], redis.call('LLEN', KEYS[2]), items}
"""

TAKE_LEASE = """
-- KEYS: 1 lease, 2 session hash; ARGV: 1 token, 2 time to live in ms
-- Returns {0} when another holder has the lease, else {1, what, revision}: what is 'revision'
-- (then the stored revision follows), 'none' (no such session) or 'unknown' (unreadable).
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
  -- Our own token: this is a repeat of an attempt whose reply was lost.
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local revision = redis.pcall('HGET', KEYS[2], 'revision')
if type(revision) == 'string' then return {1, 'revision', revision} end
if revision == false and redis.call('EXISTS', KEYS[2]) == 0 then return {1, 'none'} end
return {1, 'unknown'}
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

UPGRADE_FROM_LAYOUT_1 = (
    _COMMON
    + """
-- Brings sessions written by layout 1 into layout 2: a status field and index, and their
-- expiry tracked. Safe to run again on the same ids, and alongside writes of layout 2.
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

FINISH_UPGRADE = """
-- KEYS: 1 layout version; ARGV: 1 the version the data now has
-- Never lowers it: a newer chatruntime may have upgraded the data further meanwhile.
if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""
