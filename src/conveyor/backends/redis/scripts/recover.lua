-- Take over expired leases. ARGV[A+1..]: worker_id, limit, lease_until (s), now (s).
-- Returns per job: key, payload, status, attempts, started_ms, touched_ms, run_id.
local worker, limit, lease_until, now = ARGV[A + 1], tonumber(ARGV[A + 2]), ARGV[A + 3],
  ARGV[A + 4]
local out = {}
local expired = redis.call('ZRANGEBYSCORE', K.leases, '-inf', '(' .. now, 'LIMIT', 0, limit)
for _, key in ipairs(expired) do
  local jk = P.job .. key
  local f = redis.call('HMGET', jk, 'status', 'payload', 'attempts', 'started_ms',
    'touched_ms', 'run_id')
  if f[1] == 'active' or f[1] == 'aborting' then
    redis.call('ZADD', K.leases, lease_until, key)
    redis.call('HSET', jk, 'worker_id', worker)
    out[#out + 1] = key
    for j = 1, 6 do out[#out + 1] = str(f[j]) end
  else
    redis.call('ZREM', K.leases, key)
  end
end
return out
