"""Lua scripts that make each multi-key store change atomic (on Redis and on burner-redis).

Status, capability and correlation_id are stored raw in the job hash so these scripts can
read them; every other field is JSON. Event-log entry ids are ``{seq}-1``.
"""

SUBMIT = """
-- KEYS: idem, job, jobs, queue, queued, events
-- ARGV: job_id, has_idem, idem_ttl, queue_limit, capability, created_at, event_data, corr, pairs...
if ARGV[2] == '1' then
  local existing = redis.call('get', KEYS[1])
  if existing then return {'exists', existing} end
end
local depth = tonumber(redis.call('hget', KEYS[5], ARGV[5]) or '0')
if depth >= tonumber(ARGV[4]) then return {'full', tostring(depth)} end
if ARGV[2] == '1' then redis.call('set', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3])) end
for i = 9, #ARGV, 2 do redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('zadd', KEYS[3], tonumber(ARGV[6]), ARGV[1])
redis.call('hincrby', KEYS[5], ARGV[5], 1)
local seq = redis.call('hincrby', KEYS[2], 'seq', 1)
redis.call('xadd', KEYS[6], seq .. '-1', 't', 'status', 'd', ARGV[7], 'ts', ARGV[6], 'c', ARGV[8])
redis.call('xadd', KEYS[4], '*', 'job', ARGV[1])
return {'ok', ''}
"""

TRANSITION = """
-- KEYS: job, events, queued
-- ARGV: allowed_csv, event_type, event_data, ts, ttl, done_data, pairs...
-- ttl: 0 keep, >0 expire after, -1 persist. Returns the last event's seq, 0, or -1 refused.
local cur = redis.call('hget', KEYS[1], 'status')
if not cur then return -1 end
if ARGV[1] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[1], '[^,]+') do
    if s == cur then ok = true end
  end
  if not ok then return -1 end
end
local new = cur
for i = 7, #ARGV, 2 do
  redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'status' then new = ARGV[i + 1] end
end
if cur ~= new then
  local cap = redis.call('hget', KEYS[1], 'capability')
  if cur == 'queued' then redis.call('hincrby', KEYS[3], cap, -1) end
  if new == 'queued' then redis.call('hincrby', KEYS[3], cap, 1) end
end
local corr = redis.call('hget', KEYS[1], 'correlation_id') or ''
local seq = 0
if ARGV[2] ~= '' then
  seq = redis.call('hincrby', KEYS[1], 'seq', 1)
  redis.call('xadd', KEYS[2], seq .. '-1', 't', ARGV[2], 'd', ARGV[3], 'ts', ARGV[4], 'c', corr)
end
if ARGV[6] ~= '' then
  seq = redis.call('hincrby', KEYS[1], 'seq', 1)
  redis.call('xadd', KEYS[2], seq .. '-1', 't', 'done', 'd', ARGV[6], 'ts', ARGV[4], 'c', corr)
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('expire', KEYS[1], ttl)
  redis.call('expire', KEYS[2], ttl)
elseif ttl < 0 then
  -- burner-redis has no PERSIST; a ten-year TTL is the same for an in-process store
  for _, key in ipairs({KEYS[1], KEYS[2]}) do
    if not pcall(redis.call, 'persist', key) then redis.call('expire', key, 315360000) end
  end
end
return seq
"""

APPEND = """
-- KEYS: job, events   ARGV: event_type, event_data, ts, pairs...
if redis.call('exists', KEYS[1]) == 0 then return -1 end
for i = 4, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end
local seq = redis.call('hincrby', KEYS[1], 'seq', 1)
local corr = redis.call('hget', KEYS[1], 'correlation_id') or ''
redis.call('xadd', KEYS[2], seq .. '-1', 't', ARGV[1], 'd', ARGV[2], 'ts', ARGV[3], 'c', corr)
return seq
"""
