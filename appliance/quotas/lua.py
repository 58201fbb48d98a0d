"""The limiter's Lua scripts. Redis runs each one atomically, so check-and-reserve is one step
for every web process: two requests can never both see the last free unit of a budget.

All scripts take the scopes' keys in the order of ``windows.scope_keys``; a limit of -1 is unlimited.
"""

# A helper shared by the scripts: drop reservations whose expiry has passed and return what
# they held, so a request that was never settled stops counting at its expiry and no counter leaks.
_PURGE = """
local function purge(res, amt, held, now)
  local gone = redis.call('ZRANGEBYSCORE', res, '-inf', now)
  if #gone == 0 then return end
  local freed = 0
  for _, id in ipairs(gone) do
    freed = freed + tonumber(redis.call('HGET', amt, id) or '0')
    redis.call('HDEL', amt, id)
  end
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now)
  if redis.call('ZCARD', res) == 0 then
    redis.call('DEL', held)
  else
    redis.call('DECRBY', held, freed)
  end
end
local function num(key)
  return tonumber(redis.call('GET', key) or '0')
end
"""

# KEYS: 6 per scope (res, amt, held, day, month, rpm).
# ARGV: now_ms, expiry_ms, request_id, worst_tokens, then 4 limits per scope (month, day, rpm, concurrent).
# Returns {'ok'}, {'duplicate'}, or {limit name, scope index, limit, current, settled}.
RESERVE = (
    _PURGE
    + """
local now, expiry, rid, worst = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local scopes = #KEYS / 6
for i = 0, scopes - 1 do
  local k, a = i * 6, 4 + i * 4
  local res, amt, held, day, month, rpm = KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5], KEYS[k+6]
  purge(res, amt, held, now)
  if redis.call('ZSCORE', res, rid) then return {'duplicate'} end
  local in_flight = num(held)
  local lim = tonumber(ARGV[a+1])
  if lim >= 0 and num(month) + in_flight + worst > lim then
    return {'tokens_per_month', i, lim, num(month) + in_flight, num(month)}
  end
  lim = tonumber(ARGV[a+2])
  if lim >= 0 and num(day) + in_flight + worst > lim then
    return {'tokens_per_day', i, lim, num(day) + in_flight, num(day)}
  end
  lim = tonumber(ARGV[a+3])
  if lim >= 0 and num(rpm) + 1 > lim then
    return {'requests_per_minute', i, lim, num(rpm), num(rpm)}
  end
  lim = tonumber(ARGV[a+4])
  if lim >= 0 and redis.call('ZCARD', res) + 1 > lim then
    return {'concurrent_requests', i, lim, redis.call('ZCARD', res), 0}
  end
end
for i = 0, scopes - 1 do
  local k = i * 6
  redis.call('ZADD', KEYS[k+1], expiry, rid)
  redis.call('HSET', KEYS[k+2], rid, worst)
  redis.call('INCRBY', KEYS[k+3], worst)
  redis.call('INCR', KEYS[k+6])
  redis.call('EXPIRE', KEYS[k+6], 120)
end
return {'ok'}
"""
)

# KEYS: settled marker, pending usage list, then 5 per scope (res, amt, held, day, month).
# ARGV: request_id, tokens, marker ttl, day ttl, month ttl, usage record JSON ('' for none).
# Returns 1 when this call settled the request, 0 when it had already been settled.
SETTLE = """
local rid, tokens = ARGV[1], tonumber(ARGV[2])
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then return 0 end
local scopes = (#KEYS - 2) / 5
for i = 0, scopes - 1 do
  local k = 2 + i * 5
  local res, amt, held, day, month = KEYS[k+1], KEYS[k+2], KEYS[k+3], KEYS[k+4], KEYS[k+5]
  if redis.call('ZREM', res, rid) == 1 then
    local reserved = tonumber(redis.call('HGET', amt, rid) or '0')
    redis.call('HDEL', amt, rid)
    if redis.call('ZCARD', res) == 0 then
      redis.call('DEL', held)
    else
      redis.call('DECRBY', held, reserved)
    end
  end
  if tokens > 0 then
    redis.call('INCRBY', day, tokens)
    redis.call('EXPIRE', day, ARGV[4])
    redis.call('INCRBY', month, tokens)
    redis.call('EXPIRE', month, ARGV[5])
  end
end
if ARGV[6] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[6]) end
return 1
"""

# KEYS: res of each scope. ARGV: request_id, new expiry_ms, now_ms. Returns how many scopes still
# held the reservation (an expired one is not revived: its slot may already be someone else's).
EXTEND = """
local n = 0
for i = 1, #KEYS do
  local score = redis.call('ZSCORE', KEYS[i], ARGV[1])
  if score and tonumber(score) > tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
    n = n + 1
  end
end
return n
"""

# KEYS: 6 per scope as for RESERVE. ARGV: now_ms. Read-only: purges nothing, skips expired entries.
# Returns per scope {settled today, settled this month, tokens in flight, requests in flight,
# requests this minute}.
PEEK = """
local function num(key) return tonumber(redis.call('GET', key) or '0') end
local out = {}
for i = 0, #KEYS / 6 - 1 do
  local k = i * 6
  local live = redis.call('ZRANGEBYSCORE', KEYS[k+1], '(' .. ARGV[1], '+inf')
  local in_flight = 0
  for _, id in ipairs(live) do
    in_flight = in_flight + tonumber(redis.call('HGET', KEYS[k+2], id) or '0')
  end
  table.insert(out, {num(KEYS[k+4]), num(KEYS[k+5]), in_flight, #live, num(KEYS[k+6])})
end
return out
"""

# KEYS: source list, destination list. ARGV: how many. Moves the oldest records (right end of
# the source) onto the left of the destination, one by one, atomically; returns them.
MOVE_BATCH = """
local out = {}
for i = 1, tonumber(ARGV[1]) do
  local v = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not v then break end
  out[i] = v
end
return out
"""

# KEYS: processing list, pending list. Puts every record a failed drain took back at the old end
# of the pending list, in their original order, so the next drain takes them first.
RETURN_BATCH = """
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do n = n + 1 end
return n
"""
