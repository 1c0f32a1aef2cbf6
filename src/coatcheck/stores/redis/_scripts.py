"""The Lua scripts, one per atomic operation, and the record layout they share."""

from __future__ import annotations

_FIELDS = ("d", "e", "v", "u", "c")

# -- Lua: one prelude, one script per atomic operation ------------------------------------------
# Times travel as decimal strings of unix seconds (the store's clock), expiries of keys and index
# scores as integer milliseconds. ``max`` is the lifetime cap in seconds (0: no cap).
#
# maxmemory: a script that can grow memory writes first with HSET or ZADD (at maxmemory Redis
# refuses those, but only in a script that has not written yet); one that frees memory writes
# first with a delete, which Redis allows there.
#
# Idempotency: a client retries a command whose reply was lost, so each script may run twice.
# * index, delete_owned, revoke, revoke_epoch: naturally (ZADD of the same score, DEL of a gone
#   key, an epoch never lowered); a retried delete counts only what it deleted itself.
# * save, rotate: a live record that already is the one they write (same version, expiry, owner
#   and data) counts as written. For a create and a rotate the key is new, known only to this
#   call; for a compare-and-set, a concurrent writer that wrote exactly this record left what
#   this write would have (the session's later commit wins anyway).
# * touch: an expiry already where it is asked to go is not moved again, but the owner is
#   returned all the same, so the caller extends the index as after the first run.
# * delete_if: leaves a marker naming the successor, which a retry recognises.

_PRELUDE = """
local function deadline_ms(e, c, max)
  local at = tonumber(e)
  if max > 0 and tonumber(c) + max < at then at = tonumber(c) + max end
  return math.floor(at * 1000)
end
local function live(e, c, now, max)
  if not e or not c then return false end
  local at = tonumber(e)
  if max > 0 and tonumber(c) + max < at then at = tonumber(c) + max end
  return at > now
end
local function index_add(idx, member, at, now)
  redis.call('ZADD', idx, at, member)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', math.floor(now * 1000))
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', idx, top[2]) end
end
-- ARGV: now, expected version, max, member, created, data, expires_at, version[, user]
-- Whether the record under key (its v, e and u given) is the one ARGV writes; reads d only then.
local function written(key, v, e, u)
  return v == ARGV[8] and tonumber(e) >= tonumber(ARGV[7]) and u == (ARGV[9] or false)
    and redis.call('HGET', key, 'd') == ARGV[6]
end
-- Write the record over whatever key holds (its owner so far: u); HSET first, for maxmemory.
local function write(key, idx, u, created, now, max)
  if ARGV[9] then
    redis.call('HSET', key, 'd', ARGV[6], 'e', ARGV[7], 'v', ARGV[8], 'c', created, 'u', ARGV[9])
  else
    redis.call('HSET', key, 'd', ARGV[6], 'e', ARGV[7], 'v', ARGV[8], 'c', created)
    if u then redis.call('HDEL', key, 'u') end
  end
  local at = deadline_ms(ARGV[7], created, max)
  redis.call('PEXPIREAT', key, at)
  if idx then index_add(idx, ARGV[4], at, now) end
  return at
end
-- Delete key if user owns it; 1 if it was live, else 0.
local function delete_owned(key, user, now, max)
  local cur = redis.call('HMGET', key, 'u', 'e', 'c')
  if cur[1] ~= user then return 0 end
  redis.call('DEL', key)
  if live(cur[2], cur[3], now, max) then return 1 end
  return 0
end
"""

# KEYS: session[, user index]. Create when ARGV[2] is '', else compare-and-set. ``c`` is the time
# the record was bound to its current owner: kept by a write for the same owner, reset otherwise
# (a revocation epoch then judges the binding, not the record). A write that keeps the owner and
# does not move the expiry forward (most writes: the expiry moves once per touch interval) sets
# just the data and the version: the key's TTL and index entry already match, and an expiry is
# never moved back (an out-of-order refresh, or servers whose clocks differ). Returns the key's expiry in ms, or 0 when
# the condition fails.
_SAVE = (
    _PRELUDE
    + """
local now, max = tonumber(ARGV[1]), tonumber(ARGV[3])
local cur = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'u')
local created
if not live(cur[2], cur[3], now, max) then
  if ARGV[2] ~= '' then return 0 end
  created = ARGV[5] ~= '' and ARGV[5] or ARGV[1]
elseif cur[1] ~= ARGV[2] then
  if written(KEYS[1], cur[1], cur[2], cur[4]) then return deadline_ms(cur[2], cur[3], max) end
  return 0
elseif cur[4] ~= (ARGV[9] or false) then
  created = ARGV[1]
elseif tonumber(cur[2]) >= tonumber(ARGV[7]) then
  redis.call('HSET', KEYS[1], 'd', ARGV[6], 'v', ARGV[8])
  return deadline_ms(cur[2], cur[3], max)
else
  created = cur[3]
end
return write(KEYS[1], KEYS[2], cur[4], created, now, max)
"""
)

# KEYS: old, new[, user index]. Create new only if absent and delete old at version ARGV[2], in
# that order (the first write is the new record's HSET). The new record keeps the old creation
# time when its owner is unchanged (a revocation still holds). Returns as _SAVE.
_ROTATE = (
    _PRELUDE
    + """
local now, max = tonumber(ARGV[1]), tonumber(ARGV[3])
local new = redis.call('HMGET', KEYS[2], 'v', 'e', 'c', 'u')
if live(new[2], new[3], now, max) then
  if written(KEYS[2], new[1], new[2], new[4]) then return deadline_ms(new[2], new[3], max) end
  return 0
end
local old = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'u')
if not live(old[2], old[3], now, max) or old[1] ~= ARGV[2] then return 0 end
local created = ARGV[1]
if old[4] == (ARGV[9] or false) then created = old[3] end
local at = write(KEYS[2], KEYS[3], new[4], created, now, max)
redis.call('DEL', KEYS[1])
return at
"""
)

# KEYS: session. ARGV: now, expires_at, max, user index prefix ('' on a cluster), member. Forward
# only, never creates. Returns {owner, expiry ms} when the record's expiry is then at ARGV[2]
# (moved by this run or an earlier one), false otherwise. On one server an owned record's index
# entry is extended in the same call (by a key built from the prefix, as the revoke does), so
# every live session stays in its user's index; on a cluster the owner comes back ('' if none)
# and the caller extends the index, in its own slot, with a second call.
_TOUCH = (
    _PRELUDE
    + """
local now, max, e = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[2])
local cur = redis.call('HMGET', KEYS[1], 'e', 'c', 'u')
if not live(cur[1], cur[2], now, max) or e < tonumber(cur[1]) then return false end
local at = deadline_ms(ARGV[2], cur[2], max)
if e > tonumber(cur[1]) then
  redis.call('HSET', KEYS[1], 'e', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], at)
end
if cur[3] and ARGV[4] ~= '' then
  index_add(ARGV[4] .. cur[3], ARGV[5], at, now)
  return {'', at}
end
return {cur[3] or '', at}
"""
)

# KEYS: user index. ARGV: member, expiry ms, now.
_INDEX = (
    _PRELUDE
    + """
index_add(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
"""
)

# KEYS: session. ARGV: now, max, version, created, successor (the new store key). Replace only
# that exact live record with a marker naming its successor, for a minute: a load reads it as
# missing, a retry of this call finds it and reports the delete done.
_DELETE_IF = (
    _PRELUDE
    + """
local cur = redis.call('HMGET', KEYS[1], 'v', 'e', 'c', 'r')
if cur[4] == ARGV[5] then return 1 end
if not live(cur[2], cur[3], tonumber(ARGV[1]), tonumber(ARGV[2])) or cur[1] ~= ARGV[3]
   or tonumber(cur[3]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[5])
redis.call('PEXPIRE', KEYS[1], 60000)
return 1
"""
)

# KEYS: sessions. ARGV: user, now, max. Delete those the user owns; count the live ones.
_DELETE_OWNED = (
    _PRELUDE
    + """
local n = 0
for _, key in ipairs(KEYS) do n = n + delete_owned(key, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])) end
return n
"""
)

# One server. KEYS: user index. ARGV: user, now, max, session key prefix, batch. Delete up to
# ``batch`` indexed sessions the user owns and drop their entries (the index goes with its last
# one). It reaches the sessions through the index, by keys not in KEYS: a cluster would refuse
# that. Returns {live sessions deleted, entries left}.
_REVOKE = (
    _PRELUDE
    + """
local now, max, n = tonumber(ARGV[2]), tonumber(ARGV[3]), 0
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[5]) - 1)
if #members == 0 then return {0, 0} end
for _, member in ipairs(members) do n = n + delete_owned(ARGV[4] .. member, ARGV[1], now, max) end
redis.call('ZREM', KEYS[1], unpack(members))
return {n, redis.call('ZCARD', KEYS[1])}
"""
)

# Cluster. KEYS: user index, revocation epoch. ARGV: now, epoch expiry ms. Prune the index's
# expired entries, raise the epoch to now (never lower it) and return the indexed store keys.
# The prune is the first write, so the SET runs at maxmemory too: a revoke frees memory.
_REVOKE_EPOCH = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', math.floor(now * 1000))
if now > tonumber(redis.call('GET', KEYS[2]) or '-1') then
  redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[2])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

_SCRIPTS = {
    "save": _SAVE,
    "rotate": _ROTATE,
    "touch": _TOUCH,
    "index": _INDEX,
    "delete_if": _DELETE_IF,
    "delete_owned": _DELETE_OWNED,
    "revoke": _REVOKE,
    "revoke_epoch": _REVOKE_EPOCH,
}
