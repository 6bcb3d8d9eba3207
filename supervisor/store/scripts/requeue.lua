-- REQUEUE: back to the queue (a redrive, or a retry after an unexpected error).
-- Returns the new status event's seq, -1 refused by status (or gone), -2 refused by fence.
-- KEYS: job, events, queued, queue, dead, then the status indexes jobs:queued, jobs:running,
--       jobs:succeeded, jobs:failed, jobs:cancelled
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
local IDX = {queued = 6, running = 7, succeeded = 8, failed = 9, cancelled = 10}
if cur ~= 'queued' then
  local job_id = string.match(KEYS[1], '[^:]+$')
  if IDX[cur] then redis.call('zrem', KEYS[IDX[cur]], job_id) end
  local created = tonumber(redis.call('hget', KEYS[1], 'created_at')) or 0
  redis.call('zadd', KEYS[6], created, job_id)
  local cap = redis.call('hget', KEYS[1], 'capability')
  redis.call('hincrby', KEYS[3], cap, 1)
  local qt = redis.call('hget', KEYS[1], 'qt')
  if qt then redis.call('hincrby', KEYS[3], cap .. '@' .. qt, 1) end
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
