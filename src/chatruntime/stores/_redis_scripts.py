"""The Lua scripts of ``RedisStore``'s sessions: every multi-key step runs as one atomic script.

Redis runs a script without interleaving other commands, so a session's header, its history
and the indexes that point at it can never be seen half-written, and a failed check leaves
everything untouched. The scripts build the names of keys they cannot know in advance (where
a session's data is, which depends on its user; the indexes it belonged to before this write)
from the key prefix, which is why ``RedisStore`` supports a single Redis server (with replicas
or Sentinel), not Redis Cluster. The names they build are those of ``_redis_keys``.

Scripts return small tables whose first element says what happened; ``RedisStore`` turns them
into exceptions. Every script is safe to run twice (a write whose answer was lost is sent
again), which is why the write recognises its own earlier success and taking a lease accepts a
lease its own token already holds.

Checkpoint scripts are in ``_redis_checkpoints``, upgrade scripts in ``_redis_upgrade``; both
start with :data:`COMMON`.
"""

from __future__ import annotations

COMMON = """
local prefix = ARGV[1]
local function key(kind, name)
  if name then return prefix .. 'chatruntime:' .. kind .. ':' .. name end
  return prefix .. 'chatruntime:' .. kind
end
local function user_key(user, rest)
  return prefix .. 'user_id:' .. user .. ':' .. rest
end
local function ms(n) return string.format('%.0f', n) end

-- A session's own keys {header hash, history list, checkpoints hash, checkpoint order}:
-- under its user, or under its id alone for a session without user ('').
local function data_keys(id, user)
  if user and user ~= '' then
    local base = user_key(user, 'session:' .. id .. ':')
    return {base .. 'header', base .. 'history', base .. 'checkpoints',
      base .. 'checkpoint_order'}
  end
  return {key('session', id), key('history', id), key('checkpoints', id),
    key('checkpoint_order', id)}
end

-- The user whose keys hold the session ('' for none), from its owner pointer.
local function owner_of(id)
  local found = redis.pcall('GET', key('owner', id))
  if type(found) == 'string' then return found end
  return ''
end

-- Byte order, as Redis orders equal scores (Lua's own < follows the server's locale).
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Removes a session id from the listing indexes and the expiry sets it is in.
local function unindex(id, agent, user, status)
  redis.call('ZREM', key('sessions'), id)
  if agent and agent ~= '' then redis.call('ZREM', key('agent_sessions', agent), id) end
  if user and user ~= '' then
    redis.call('ZREM', user_key(user, 'sessions'), id)
    redis.call('ZREM', user_key(user, 'expiring'), id)
    redis.call('ZREM', user_key(user, 'overdue'), id)
  end
  if status and status ~= '' then redis.call('ZREM', key('status_sessions', status), id) end
end

-- Drops every index entry of a session that is gone (Redis expired its keys), as
-- expiring_indexes recorded them. Returns whether it knew where they were.
local function forget_gone(id)
  local owners = redis.call('HGET', key('expiring_indexes'), id)
  redis.call('ZREM', key('expiring'), id)
  redis.call('ZREM', key('overdue'), id)
  redis.call('HDEL', key('expiring_indexes'), id)
  if owners then
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
-- their index entries are not, until this runs). Returns the time it used.
local function sweep_expired(budget)
  local now = now_ms()
  local due = redis.call('ZRANGEBYSCORE', key('expiring'), '-inf', '(' .. ms(now),
    'LIMIT', 0, budget)
  for _, id in ipairs(due) do
    local header = data_keys(id, owner_of(id))[1]
    if redis.call('EXISTS', header) == 0 then
      forget_gone(id)
    elseif redis.call('PTTL', header) == -1 then
      -- Its keys lost their expiry (persisted by hand): it stays, counted as overdue.
      local score = redis.call('ZSCORE', key('expiring'), id)
      local ok, owners = pcall(cjson.decode,
        redis.call('HGET', key('expiring_indexes'), id) or '[]')
      redis.call('ZREM', key('expiring'), id)
      redis.call('ZADD', key('overdue'), score, id)
      if ok and type(owners) == 'table' and type(owners[2]) == 'string'
          and owners[2] ~= '' then
        redis.call('ZREM', user_key(owners[2], 'expiring'), id)
        redis.call('ZADD', user_key(owners[2], 'overdue'), score, id)
      end
    end
  end
  return now
end

-- How many sessions are stored (all, or the user's): those Redis expired but no sweep reached
-- yet are still in the index, and are the entries of the expiry set due by `now`. With
-- `live_at` (not ''), only those not expired at that time: without expiry, expiring later
-- (and still stored), or overdue later. Sizes and ranges of sorted sets: O(log n).
local function count_sessions(user, live_at, now)
  local all, native, overdue = key('sessions'), key('expiring'), key('overdue')
  if user ~= '' then
    all, native, overdue = user_key(user, 'sessions'), user_key(user, 'expiring'),
      user_key(user, 'overdue')
  end
  local total = redis.call('ZCARD', all)
  if live_at == '' then
    return total - redis.call('ZCOUNT', native, '-inf', '(' .. ms(now))
  end
  local at = tonumber(live_at)
  local lasting = total - redis.call('ZCARD', native) - redis.call('ZCARD', overdue)
  return lasting + redis.call('ZCOUNT', native, ms(math.max(at + 1, now)), '+inf')
    + redis.call('ZCOUNT', overdue, '(' .. ms(at), '+inf')
end
"""

SWEEP_BUDGET = 100
"""Expired sessions a listing or count un-indexes per call, bounding its cost."""

WRITE_SESSION = (
    COMMON
    + """
-- KEYS: 1 lease
-- ARGV: 1 key prefix, 2 session id, 3 expected revision ('' creates), 4 new revision,
--       5 header JSON, 6 agent id, 7 user id ('' for none), 8 status, 9 last activity (index
--       score), 10 expiry in epoch ms ('' for none), 11 lease token ('' for none),
--       12 items to keep ('' for all), 13 the limits' time ('' for no limits),
--       14 max sessions ('' for none), 15 max sessions per user ('' for none),
--       16... history items as JSON
local lease = KEYS[1]
local id, expected, revision, header = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local agent, user, status, score = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local expires_at, token, keep = ARGV[10], ARGV[11], ARGV[12]
local limits_at, max_all, max_user = ARGV[13], ARGV[14], ARGV[15]
local first_item = 16

local owner = owner_of(id)
local old = data_keys(id, owner)
local exists = redis.call('EXISTS', old[1]) == 1
local stored = redis.call('HMGET', old[1], 'revision', 'header', 'agentId', 'userId', 'status')

-- Gives the caller's lease back in this same step; whether it did.
local function release()
  if token ~= '' and redis.call('GET', lease) == token then
    redis.call('DEL', lease)
    return 1
  end
  return 0
end

local function history_ends_with_items(history)
  local count = #ARGV - first_item + 1
  if count == 0 then return true end
  local tail = redis.call('LRANGE', history, -count, -1)
  if #tail ~= count then return false end
  for i = 1, count do
    if tail[i] ~= ARGV[first_item + i - 1] then return false end
  end
  return true
end

-- A write sent again after its answer was lost would otherwise be told it conflicts with
-- itself: the same header at the new revision, after the same items, is this write.
if exists and stored[1] == revision and stored[2] == header
    and history_ends_with_items(old[2]) then
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

if keep ~= '' then
  local length = redis.call('LLEN', old[2])
  if tonumber(keep) > length then return {'keep', length} end
end

local now = now_ms()
if limits_at ~= '' then
  -- Counted in this script, so racing creations (from any process) hold the limit exactly.
  local total = count_sessions('', limits_at, now)
  local mine = 0
  if user ~= '' then mine = count_sessions(user, limits_at, now) end
  if (max_all ~= '' and total >= tonumber(max_all))
      or (max_user ~= '' and user ~= '' and mine >= tonumber(max_user)) then
    return {'limit', total, mine}
  end
end

local new = data_keys(id, user)
if not exists then
  -- Leftovers of an expired session with this id must not become this session's data nor
  -- keep it in the indexes its earlier life was in.
  forget_gone(id)
  for i = 1, 4 do
    redis.call('DEL', new[i])
    redis.call('DEL', old[i])
  end
else
  local old_user, old_status = stored[4] or '', stored[5]
  if old_user ~= '' and old_user ~= owner then
    -- Kept where layout 2 kept it: its user index was under chatruntime:.
    redis.call('ZREM', key('user_sessions', old_user), id)
  end
  if old_user ~= '' and old_user ~= user then
    redis.call('ZREM', user_key(old_user, 'sessions'), id)
    redis.call('ZREM', user_key(old_user, 'expiring'), id)
    redis.call('ZREM', user_key(old_user, 'overdue'), id)
  end
  if old_status and old_status ~= '' and old_status ~= status then
    redis.call('ZREM', key('status_sessions', old_status), id)
  end
  if owner ~= user then
    -- Its data moves to where the new user's sessions live (RENAME keeps each key's expiry).
    for i = 1, 4 do
      if redis.call('EXISTS', old[i]) == 1 then redis.call('RENAME', old[i], new[i]) end
    end
  end
end
if owner ~= user then
  if user ~= '' then
    redis.call('SET', key('owner', id), user)
  else
    redis.call('DEL', key('owner', id))
  end
end

redis.call('HSET', new[1], 'revision', revision, 'header', header, 'agentId', agent,
  'userId', user, 'status', status)
redis.call('ZADD', key('sessions'), score, id)
redis.call('ZADD', key('agent_sessions', agent), score, id)
redis.call('ZADD', key('status_sessions', status), score, id)
if user ~= '' then
  redis.call('ZADD', user_key(user, 'sessions'), score, id)
end

if keep == '0' then
  redis.call('DEL', new[2])
elseif keep ~= '' then
  redis.call('LTRIM', new[2], 0, tonumber(keep) - 1)
end
-- unpack() is bounded by the Lua stack, so long turns are pushed in slices.
for i = first_item, #ARGV, 1000 do
  redis.call('RPUSH', new[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end

-- Redis expires the session's keys itself at expires_at; one already past by Redis's clock
-- (the caller's clock is behind, or injected) is kept without key expiry, as 'overdue',
-- until deleted: a write never deletes what it writes.
local native = expires_at ~= '' and tonumber(expires_at) > now
redis.call('ZREM', key('expiring'), id)
redis.call('ZREM', key('overdue'), id)
if user ~= '' then
  redis.call('ZREM', user_key(user, 'expiring'), id)
  redis.call('ZREM', user_key(user, 'overdue'), id)
end
if expires_at ~= '' then
  local tracking = 'overdue'
  if native then tracking = 'expiring' end
  redis.call('ZADD', key(tracking), expires_at, id)
  if user ~= '' then redis.call('ZADD', user_key(user, tracking), expires_at, id) end
  redis.call('HSET', key('expiring_indexes'), id, cjson.encode({agent, user, status}))
else
  redis.call('HDEL', key('expiring_indexes'), id)
end
for _, name in ipairs({new[1], new[2], new[3], new[4], key('owner', id)}) do
  if native then
    redis.call('PEXPIREAT', name, expires_at)
  else
    redis.call('PERSIST', name)
  end
end
return {'ok', release()}
"""
)

DELETE_SESSION = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id
-- Removes the session, its history, its checkpoints and every index entry; whether it existed.
local id = ARGV[2]
local owner = owner_of(id)
local keys = data_keys(id, owner)
local existed = redis.call('EXISTS', keys[1])
if existed == 1 and redis.call('TYPE', keys[1]).ok == 'hash' then
  local fields = redis.call('HMGET', keys[1], 'agentId', 'userId', 'status')
  unindex(id, fields[1], fields[2], fields[3])
  if fields[2] and fields[2] ~= '' and fields[2] ~= owner then
    redis.call('ZREM', key('user_sessions', fields[2]), id)
  end
else
  redis.call('ZREM', key('sessions'), id)
end
forget_gone(id)
for _, name in ipairs(keys) do redis.call('DEL', name) end
redis.call('DEL', key('owner', id))
return existed
"""
)

LIST_SESSIONS = (
    COMMON
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

local index, size = key('sessions'), nil
local filters = {}
if agent ~= '' then filters[#filters + 1] = key('agent_sessions', agent) end
if user ~= '' then filters[#filters + 1] = user_key(user, 'sessions') end
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
    local session = data_keys(id, owner_of(id))[1]
    local fields = redis.pcall('HMGET', session, 'header', 'agentId', 'userId', 'status')
    examined = examined + 1
    rank = rank - 1
    if fields.err then
      -- Not a hash: a corrupt record, which reading the session reports.
    elseif not fields[1] then
      if redis.call('EXISTS', session) == 0 then
        -- Expired before a sweep reached it: out of every index (lower ranks stay as they
        -- are, as only this entry of the walked index goes).
        if not forget_gone(id) then redis.call('ZREM', index, id) end
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
    COMMON
    + """
-- ARGV: 1 key prefix, 2 user id ('' for all), 3 live at (epoch ms, '' for every stored one),
--       4 expired sessions to sweep first
local now = sweep_expired(tonumber(ARGV[4]))
return count_sessions(ARGV[2], ARGV[3], now)
"""
)

EXPIRED_SESSIONS = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 now (epoch ms, the caller's clock), 3 most ids wanted,
--       4 expired sessions to sweep first
-- Returns the ids of stored sessions whose expiry is at or before `now`, earliest first (then
-- by id): those Redis would expire itself later than its own clock says now (the caller's
-- clock is ahead) and the overdue ones. Sessions Redis expired already are gone, not listed.
local at, wanted = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = sweep_expired(math.max(tonumber(ARGV[4]), wanted))
local native = {}
if at >= now then
  native = redis.call('ZRANGEBYSCORE', key('expiring'), ms(now), ms(at), 'WITHSCORES',
    'LIMIT', 0, wanted)
end
local overdue = redis.call('ZRANGEBYSCORE', key('overdue'), '-inf', ms(at), 'WITHSCORES',
  'LIMIT', 0, wanted)
local ids = {}
local i, j = 1, 1
while #ids < wanted and (i <= #native or j <= #overdue) do
  local take_native = j > #overdue
  if i <= #native and j <= #overdue then
    local a, b = tonumber(native[i + 1]), tonumber(overdue[j + 1])
    take_native = a < b or (a == b and before(native[i], overdue[j]))
  end
  if take_native then
    ids[#ids + 1] = native[i]
    i = i + 2
  else
    ids[#ids + 1] = overdue[j]
    j = j + 2
  end
end
return ids
"""
)

READ_SESSION = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id, 3 items to read from the end ('' for all)
-- Returns {user, what, ...}: user is whose keys hold the session ('' for none); what is 0 (no
-- session), 2 (the session key is not a hash), 3 (the history key is not a list) or 1, then
-- revision, header JSON, history length, {items...}: header and items of the same revision,
-- in one step.
local user = owner_of(ARGV[2])
local keys = data_keys(ARGV[2], user)
local kind = redis.call('TYPE', keys[1]).ok
if kind == 'none' then return {user, 0} end
if kind ~= 'hash' then return {user, 2} end
local history_kind = redis.call('TYPE', keys[2]).ok
if history_kind ~= 'none' and history_kind ~= 'list' then return {user, 3} end
local fields = redis.call('HMGET', keys[1], 'revision', 'header')
local items = {}
if ARGV[3] == '' then
  items = redis.call('LRANGE', keys[2], 0, -1)
elseif tonumber(ARGV[3]) > 0 then
  items = redis.call('LRANGE', keys[2], -tonumber(ARGV[3]), -1)
end
return {user, 1, fields[1], fields[2], redis.call('LLEN', keys[2]), items}
"""
)

READ_REVISION = (
    COMMON
    + """
-- ARGV: 1 key prefix, 2 session id
-- Returns {user, what, revision}: what is 'revision' (the field follows, or is missing),
-- 'none' (no such session) or 'wrongtype' (the session key is not a hash).
local user = owner_of(ARGV[2])
local revision = redis.pcall('HGET', data_keys(ARGV[2], user)[1], 'revision')
if type(revision) == 'table' and revision.err then return {user, 'wrongtype'} end
if revision == false then
  if redis.call('EXISTS', data_keys(ARGV[2], user)[1]) == 0 then return {user, 'none'} end
  return {user, 'revision'}
end
return {user, 'revision', revision}
"""
)

TAKE_LEASE = (
    COMMON
    + """
-- KEYS: 1 lease; ARGV: 1 key prefix, 2 session id, 3 token, 4 time to live in ms
-- Returns {0} when another holder has the lease, else {1, what, revision}: what is 'revision'
-- (then the stored revision follows), 'none' (no such session) or 'unknown' (unreadable).
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[4]) then
  if redis.call('GET', KEYS[1]) ~= ARGV[3] then return {0} end
  -- Our own token: this is a repeat of an attempt whose reply was lost.
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local session = data_keys(ARGV[2], owner_of(ARGV[2]))[1]
local revision = redis.pcall('HGET', session, 'revision')
if type(revision) == 'string' then return {1, 'revision', revision} end
if revision == false and redis.call('EXISTS', session) == 0 then return {1, 'none'} end
return {1, 'unknown'}
"""
)

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

FINISH_UPGRADE = """
-- KEYS: 1 layout version; ARGV: 1 the version the data now has
-- Never lowers it: a newer chatruntime may have upgraded the data further meanwhile.
if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""
