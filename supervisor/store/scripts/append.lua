-- APPEND: one event (and fields) to a job, fenced.
-- Returns its seq, -1 when the job has ended (or is gone), -2 refused by fence.
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
