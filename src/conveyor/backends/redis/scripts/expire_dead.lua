-- End the leases of workers found dead (see presence.py). ARGV[A+1..]: now (s), then per
-- worker its id and the presence record that was found gone. A worker whose record changed
-- since (it registered again: alive) is left alone; a dead one's record is deleted.
-- Returns how many unexpired leases were ended (their expiry set in the past, so that the
-- next ``recover`` takes them over).
local presence = B .. 'presence'
local dead, any = {}, false
for i = A + 2, #ARGV, 2 do
  if redis.call('HGET', presence, ARGV[i]) == ARGV[i + 1] then
    dead[ARGV[i]] = true
    any = true
    redis.call('HDEL', presence, ARGV[i])
  end
end
if not any then return 0 end
local n = 0
for _, key in ipairs(redis.call('ZRANGEBYSCORE', K.leases, ARGV[A + 1], '+inf')) do
  local f = redis.call('HMGET', P.job .. key, 'worker_id', 'status')
  if f[1] and dead[f[1]] and (f[2] == 'active' or f[2] == 'aborting') then
    redis.call('ZADD', K.leases, 0, key)
    n = n + 1
  end
end
return n
