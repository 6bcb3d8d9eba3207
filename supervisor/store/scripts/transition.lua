-- TRANSITION: set fields if the status is allowed, append an event (and done), set the TTL.
-- Returns the last event's seq (0 when none), -1 refused by status (or gone), -2 by fence.
-- KEYS: job, events, queued, dead, queue, then the status indexes jobs:queued, jobs:running,
--       jobs:succeeded, jobs:failed, jobs:cancelled
--       [, the usage ledger's day hash when ARGV[10] is set]
-- ARGV: allowed_csv, event_type, event_data, ts, ttl, done_data, fence, dead, ack, usage,
--       pairs...
-- ttl: 0 keep, >0 expire after, -1 persist. fence: '' for no check. dead: '1' dead-letters.
-- ack: a dispatch entry id to acknowledge and drop once written (the finishing write of a
-- held job: its outcome and the end of its delivery in one step), '' for none.
-- usage: '' for none, else "ttl jobs attempts worker_us bytes_in bytes_out base": the ended
-- job's figures are added to KEYS[11] under base .. figure (the usage ledger,
-- supervisor/store/usage.py) in the same step.
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
for i = 11, #ARGV, 2 do
  redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'status' then new = ARGV[i + 1] end
end
local IDX = {queued = 6, running = 7, succeeded = 8, failed = 9, cancelled = 10}
if cur ~= new then
  local job_id = string.match(KEYS[1], '[^:]+$')
  local created = tonumber(redis.call('hget', KEYS[1], 'created_at')) or 0
  if IDX[cur] then redis.call('zrem', KEYS[IDX[cur]], job_id) end
  if IDX[new] then redis.call('zadd', KEYS[IDX[new]], created, job_id) end
  local cap = redis.call('hget', KEYS[1], 'capability')
  local qt = redis.call('hget', KEYS[1], 'qt')
  local step = 0
  if cur == 'queued' then step = -1 elseif new == 'queued' then step = 1 end
  if step ~= 0 then
    redis.call('hincrby', KEYS[3], cap, step)
    if qt then redis.call('hincrby', KEYS[3], cap .. '@' .. qt, step) end
  end
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
if ARGV[9] ~= '' then
  redis.call('xack', KEYS[5], 'dispatchers', ARGV[9])
  redis.call('xdel', KEYS[5], ARGV[9])
end
if ARGV[10] ~= '' then
  local u = {string.match(ARGV[10], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (.*)$')}
  local figures = {'jobs', 'attempts', 'worker_us', 'bytes_in', 'bytes_out'}
  for i, figure in ipairs(figures) do
    redis.call('hincrby', KEYS[11], u[7] .. figure, u[i + 1])
  end
  redis.call('expire', KEYS[11], u[1])
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
