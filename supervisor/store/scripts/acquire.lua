-- ACQUIRE: take the job's lease and read it; with START, start it in the same step.
-- KEYS: job [, events, queued, then the status indexes jobs:queued ... jobs:cancelled as
--       TRANSITION takes them]   (all but the first: START)
-- ARGV: entry_id, reclaimed ('1' or '') [, worker (JSON), ts (JSON)]   (the last two: START)
-- Takes a new fence token and returns the whole record after it (HGETALL, the token in its
-- ``fence`` field): the lease and the read in one round trip. An empty reply: the job is gone.
-- A dispatch entry is handed out fresh once and then only reclaimed, after its holder's lease
-- lapsed; so once a reclaim of the entry has taken the lease (``claimed`` = the entry), its
-- fresh holder is stale however late it arrives (a supervisor paused between taking the entry
-- and this script): it is refused with -2, as a stale fence is, and must write nothing.
-- START (the caller chose a worker before reading: it knew the job's route): a fresh delivery
-- of a job still ``queued`` with no cancel asked is marked ``running`` on ``worker`` as
-- TRANSITION marks it (attempts + 1, started_at kept or set to ts, out of the queued index
-- and count, into the running index, the status event): the lease, the read and the start
-- in one round trip. Replies {1, seq, HGETALL...} when started, {0, 0, HGETALL...} when not
-- (the caller goes on as after a plain ACQUIRE).
if redis.call('exists', KEYS[1]) == 0 then return {} end
if ARGV[1] ~= '' then
  if ARGV[2] == '1' then
    redis.call('hset', KEYS[1], 'claimed', ARGV[1])
  elseif redis.call('hget', KEYS[1], 'claimed') == ARGV[1] then
    return -2
  end
end
redis.call('hincrby', KEYS[1], 'fence', 1)
if #KEYS == 1 then return redis.call('hgetall', KEYS[1]) end
local started, seq = 0, 0
local cancel = redis.call('hget', KEYS[1], 'cancel')
if ARGV[2] ~= '1' and redis.call('hget', KEYS[1], 'status') == 'queued'
    and (not cancel or cancel == '') then
  local job_id = string.match(KEYS[1], '[^:]+$')
  local attempts = (tonumber(redis.call('hget', KEYS[1], 'attempts')) or 0) + 1
  local since = redis.call('hget', KEYS[1], 'started_at')
  if not since or since == 'null' then redis.call('hset', KEYS[1], 'started_at', ARGV[4]) end
  redis.call('hset', KEYS[1], 'status', 'running', 'attempts', attempts, 'worker', ARGV[3])
  local created = tonumber(redis.call('hget', KEYS[1], 'created_at')) or 0
  redis.call('zrem', KEYS[4], job_id)
  redis.call('zadd', KEYS[5], created, job_id)
  local cap = redis.call('hget', KEYS[1], 'capability')
  local qt = redis.call('hget', KEYS[1], 'qt')
  redis.call('hincrby', KEYS[3], cap, -1)
  if qt then redis.call('hincrby', KEYS[3], cap .. '@' .. qt, -1) end
  local corr = redis.call('hget', KEYS[1], 'correlation_id') or ''
  local data = '{"status":"running","attempt":' .. attempts .. ',"worker":' .. ARGV[3] .. '}'
  seq = redis.call('hincrby', KEYS[1], 'seq', 1)
  redis.call('xadd', KEYS[2], seq .. '-1', 't', 'status', 'd', data, 'ts', ARGV[4], 'c', corr)
  started = 1
end
local out = {started, seq}
for _, v in ipairs(redis.call('hgetall', KEYS[1])) do out[#out + 1] = v end
return out
