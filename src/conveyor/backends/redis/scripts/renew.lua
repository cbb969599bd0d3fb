-- Extend leases. ARGV[A+1..]: worker_id, lease_until (s), now_ms, keys...
-- Returns the keys that are aborting or gone.
local worker, lease_until, now_ms = ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
local cancel = {}
for i = A + 4, #ARGV do
  local key = ARGV[i]
  local jk = P.job .. key
  local f = redis.call('HMGET', jk, 'status', 'worker_id')
  local status = f[1]
  if not status then
    cancel[#cancel + 1] = key
  else
    if f[2] == worker and (status == 'active' or status == 'aborting') then
      redis.call('ZADD', K.leases, lease_until, key)
      redis.call('HSET', jk, 'touched_ms', now_ms)
    end
    if status == 'aborting' then cancel[#cancel + 1] = key end
  end
end
return cancel
