-- SUBMIT: persist a new job and enqueue it, unless its idempotency key was used, its
-- capability's queue is full, or its tenant holds its share of that queue already.
-- Returns {'ok', ''}, {'exists', first_job_id}, {'full', depth} or {'share', tenant's count}.
-- A child (parent_id given) is refused with {'children', count} once its parent has
-- max_children; its id joins the parent's children list (TTL renewed) in the same step.
-- KEYS: idem, job, jobs, queue, queued, events, jobs:queued, ids, parent's children
-- ARGV: job_id, has_idem, idem_ttl, queue_limit, capability, created_at, event_data, corr,
--       tenant ('' for none), tenant_limit, parent_id ('' for none), max_children,
--       children_ttl, pairs...
-- `queued` counts per capability and per capability@tenant; the job keeps its tenant in `qt`
-- so the scripts that move it in and out of the queue count both.
if ARGV[2] == '1' then
  local existing = redis.call('get', KEYS[1])
  if existing then return {'exists', existing} end
end
if ARGV[11] ~= '' then
  local kids = redis.call('llen', KEYS[9])
  if kids >= tonumber(ARGV[12]) then return {'children', tostring(kids)} end
end
local depth = tonumber(redis.call('hget', KEYS[5], ARGV[5]) or '0')
if depth >= tonumber(ARGV[4]) then return {'full', tostring(depth)} end
local share = nil
if ARGV[9] ~= '' then
  share = ARGV[5] .. '@' .. ARGV[9]
  local mine = tonumber(redis.call('hget', KEYS[5], share) or '0')
  if mine >= tonumber(ARGV[10]) then return {'share', tostring(mine)} end
end
if ARGV[11] ~= '' then
  redis.call('rpush', KEYS[9], ARGV[1])
  redis.call('expire', KEYS[9], tonumber(ARGV[13]))
end
if ARGV[2] == '1' then redis.call('set', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3])) end
for i = 14, #ARGV, 2 do redis.call('hset', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('zadd', KEYS[3], tonumber(ARGV[6]), ARGV[1])
redis.call('zadd', KEYS[7], tonumber(ARGV[6]), ARGV[1])
redis.call('zadd', KEYS[8], 0, ARGV[1])  -- by id, for a short id's lookup (ZRANGEBYLEX)
redis.call('hincrby', KEYS[5], ARGV[5], 1)
if share then
  redis.call('hincrby', KEYS[5], share, 1)
  redis.call('hset', KEYS[2], 'qt', ARGV[9])
end
local seq = redis.call('hincrby', KEYS[2], 'seq', 1)
redis.call('xadd', KEYS[6], seq .. '-1', 't', 'status', 'd', ARGV[7], 'ts', ARGV[6], 'c', ARGV[8])
redis.call('xadd', KEYS[4], '*', 'job', ARGV[1])
return {'ok', ''}
