-- ACQUIRE: take the job's lease and read it.
-- KEYS: job   ARGV: entry_id, reclaimed ('1' or '')
-- Takes a new fence token and returns the whole record after it (HGETALL, the token in its
-- ``fence`` field): the lease and the read in one round trip. An empty reply: the job is gone.
-- A dispatch entry is handed out fresh once and then only reclaimed, after its holder's lease
-- lapsed; so once a reclaim of the entry has taken the lease (``claimed`` = the entry), its
-- fresh holder is stale however late it arrives (a supervisor paused between taking the entry
-- and this script): it is refused with -2, as a stale fence is, and must write nothing.
if redis.call('exists', KEYS[1]) == 0 then return {} end
if ARGV[1] ~= '' then
  if ARGV[2] == '1' then
    redis.call('hset', KEYS[1], 'claimed', ARGV[1])
  elseif redis.call('hget', KEYS[1], 'claimed') == ARGV[1] then
    return -2
  end
end
redis.call('hincrby', KEYS[1], 'fence', 1)
return redis.call('hgetall', KEYS[1])
