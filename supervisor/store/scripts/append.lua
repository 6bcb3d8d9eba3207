-- APPEND: events (and fields) to a job, fenced, in one step.
-- Returns the last event's seq, -1 when the job has ended (or is gone), -2 refused by fence.
-- KEYS: job, events   ARGV: fence, count, count x (event_type, event_data, ts), pairs...
-- Only a job that has not ended takes events: nothing is ever appended after its done.
local cur = redis.call('hget', KEYS[1], 'status')
if cur ~= 'queued' and cur ~= 'running' then return -1 end
if ARGV[1] ~= '' and redis.call('hget', KEYS[1], 'fence') ~= ARGV[1] then return -2 end
local n = tonumber(ARGV[2])
for i = 3 + 3 * n, #ARGV, 2 do redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1]) end
local corr = redis.call('hget', KEYS[1], 'correlation_id') or ''
local seq = 0
for i = 3, 2 + 3 * n, 3 do
  seq = redis.call('hincrby', KEYS[1], 'seq', 1)
  redis.call('xadd', KEYS[2], seq .. '-1', 't', ARGV[i], 'd', ARGV[i + 1], 'ts', ARGV[i + 2], 'c', corr)
end
return seq
