-- SUBMIT: persist a new job and enqueue it, unless its idempotency key was used or its
-- capability's queue is full. Returns {'ok', ''}, {'exists', first_job_id} or {'full', depth}.
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
