-- ADMIT: a submission takes a token of its tenant's bucket and a place among its jobs in
-- flight, both or neither. The bucket holds up to `burst` tokens and refills at `rate` a
-- second (times are the caller's clock, in ms); the in-flight set holds admitted job ids.
-- KEYS: bucket, inflight
-- ARGV: now_ms, rate (0: no rate limit), burst, max_inflight (0: none), job_id, inflight_ttl_s
-- Returns {'ok', ''}, {'rate', ms until a token} or {'inflight', count}.
local now, rate, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
if limit > 0 then
  local n = redis.call('zcard', KEYS[2])
  if n >= limit then return {'inflight', tostring(n)} end
end
if rate > 0 then
  local burst = tonumber(ARGV[3])
  local tokens = tonumber(redis.call('hget', KEYS[1], 'tokens')) or burst
  local ts = tonumber(redis.call('hget', KEYS[1], 'ts')) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < 1 then return {'rate', tostring(math.ceil((1 - tokens) * 1000 / rate))} end
  redis.call('hset', KEYS[1], 'tokens', string.format('%.14g', tokens - 1), 'ts', ARGV[1])
  redis.call('expire', KEYS[1], math.ceil(burst / rate) + 1)
end
if limit > 0 then
  redis.call('zadd', KEYS[2], now, ARGV[5])
  redis.call('expire', KEYS[2], tonumber(ARGV[6]))
end
return {'ok', ''}
