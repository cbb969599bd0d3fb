-- Take over expired leases. ARGV[A+1..]: worker_id, limit, lease_until (s), now (s).
-- Each job taken gets a new fencing token from the run id counter (unique forever, never
-- a run id), so the dead owner's token stops working in this very step.
-- Returns per job: key, status, payload, attempts, started_ms, touched_ms, run_id, token.
-- A job claimed before fencing existed has no token: its owner can neither renew nor
-- finish it under one, so its lease runs out and this gives it a token like any other.
local worker, limit, lease_until, now = ARGV[A + 1], tonumber(ARGV[A + 2]), ARGV[A + 3],
  ARGV[A + 4]
local out = {}
local expired = redis.call('ZRANGEBYSCORE', K.leases, '-inf', '(' .. now, 'LIMIT', 0, limit)
for _, key in ipairs(expired) do
  local jk = P.job .. key
  local f = redis.call('HMGET', jk, 'status', 'payload', 'attempts', 'started_ms',
    'touched_ms', 'run_id')
  if f[1] == 'active' or f[1] == 'aborting' then
    local token = redis.call('INCR', K.run_seq)
    redis.call('ZADD', K.leases, lease_until, key)
    redis.call('HSET', jk, 'worker_id', worker, 'token', token)
    out[#out + 1] = key
    for j = 1, 6 do out[#out + 1] = str(f[j]) end
    out[#out + 1] = tostring(token)
  else
    redis.call('ZREM', K.leases, key)
  end
end
return out
