-- ACQUIRE: take the job's lease and read it.
-- KEYS: job   ARGV: (none). Takes a new fence token and returns the whole record after it
-- (HGETALL, the token in its ``fence`` field): the lease and the read in one round trip.
-- An empty reply: the job is gone.
if redis.call('exists', KEYS[1]) == 0 then return {} end
redis.call('hincrby', KEYS[1], 'fence', 1)
return redis.call('hgetall', KEYS[1])
