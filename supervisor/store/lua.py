"""The Lua scripts that make each multi-key store change atomic (on Redis and on burner-redis).

Status, capability, correlation_id and fence are stored raw in the job hash so these scripts
can read them; every other field is JSON. Event-log entry ids are ``{seq}-1``.

Fencing: ``fence`` grows by one each time a supervisor takes or reclaims the job (ACQUIRE).
Every write that advances or ends a job passes the holder's token; a token that is not the
current one is refused (-2), so a holder that was paused past its lease can no longer write.
Returns: the last event's seq (>= 0), -1 refused by status (or gone), -2 refused by fence.
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

ACQUIRE = """
-- KEYS: job   ARGV: (none). Takes a new fence token and returns the whole record after it
-- (HGETALL, the token in its ``fence`` field): the lease and the read in one round trip.
-- An empty reply: the job is gone.
if redis.call('exists', KEYS[1]) == 0 then return {} end
redis.call('hincrby', KEYS[1], 'fence', 1)
return redis.call('hgetall', KEYS[1])
"""

TRANSITION = """
-- KEYS: job, events, queued, dead
-- ARGV: allowed_csv, event_type, event_data, ts, ttl, done_data, fence, dead, pairs...
-- ttl: 0 keep, >0 expire after, -1 persist. fence: '' for no check. dead: '1' dead-letters.
local cur = redis.call('hget', KEYS[1], 'status')
if not cur then return -1 end
if ARGV[7] ~= '' and redis.call('hget', KEYS[1], 'fence') ~= ARGV[7] then return -2 end
if ARGV[1] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[1], '[^,]+') do
    if s == cur then ok = true end
  end
  if not ok then return -1 end
end
local new = cur
for i = 9, #ARGV, 2 do
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
if ARGV[8] == '1' then
  redis.call('zadd', KEYS[4], tonumber(ARGV[4]), string.match(KEYS[1], '[^:]+$'))
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
-- KEYS: job, events   ARGV: event_type, event_data, ts, fence, pairs...
-- Only a job that has not ended takes events: nothing is ever appended after its done.
local cur = redis.call('hget', KEYS[1], 'status')
if cur ~= 'queued' and cur ~= 'running' then return -1 end
if ARGV[4] ~= '' and redis.call('hget', KEYS[1], 'fence') ~= ARGV[4] then return -2 end
for i = 5, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end
local seq = redis.call('hincrby', KEYS[1], 'seq', 1)
local corr = redis.call('hget', KEYS[1], 'correlation_id') or ''
redis.call('xadd', KEYS[2], seq .. '-1', 't', ARGV[1], 'd', ARGV[2], 'ts', ARGV[3], 'c', corr)
return seq
"""

REQUEUE = """
-- KEYS: job, events, queued, queue, dead
-- ARGV: allowed_csv, fence, old_entry, ts, event_data, pairs...
-- Back to the queue in one step: status queued + its event, a new dispatch entry, the old
-- entry acknowledged, out of the dead letters (a redrive, or a retry after a crash).
local cur = redis.call('hget', KEYS[1], 'status')
if not cur then return -1 end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == cur then ok = true end
end
if not ok then return -1 end
if ARGV[2] ~= '' and redis.call('hget', KEYS[1], 'fence') ~= ARGV[2] then return -2 end
for i = 6, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('hset', KEYS[1], 'status', 'queued')
if cur ~= 'queued' then
  redis.call('hincrby', KEYS[3], redis.call('hget', KEYS[1], 'capability'), 1)
end
if not pcall(redis.call, 'persist', KEYS[1]) then redis.call('expire', KEYS[1], 315360000) end
if not pcall(redis.call, 'persist', KEYS[2]) then redis.call('expire', KEYS[2], 315360000) end
local corr = redis.call('hget', KEYS[1], 'correlation_id') or ''
local seq = redis.call('hincrby', KEYS[1], 'seq', 1)
redis.call('hset', KEYS[1], 'run_start', seq)
redis.call('xadd', KEYS[2], seq .. '-1', 't', 'status', 'd', ARGV[5], 'ts', ARGV[4], 'c', corr)
local job_id = string.match(KEYS[1], '[^:]+$')
redis.call('xadd', KEYS[4], '*', 'job', job_id)
if ARGV[3] ~= '' then
  redis.call('xack', KEYS[4], 'dispatchers', ARGV[3])
  redis.call('xdel', KEYS[4], ARGV[3])
end
redis.call('zrem', KEYS[5], job_id)
return seq
"""
