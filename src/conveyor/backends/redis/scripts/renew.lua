-- Extend the leases still held. ARGV[A+1..]: lease_until (s), now_ms, then per lease its
-- key and fencing token. Held: the job is active or aborting under that token (even if its
-- lease expired meanwhile: nobody recovered it).
-- Returns two lists: the held keys whose job is aborting, and the keys no longer held
-- (left alone).
local lease_until, now_ms = ARGV[A + 1], ARGV[A + 2]
local aborting, lost = {}, {}
for i = A + 3, #ARGV, 2 do
  local key = ARGV[i]
  local jk = P.job .. key
  local f = redis.call('HMGET', jk, 'status', 'token')
  local status = f[1]
  if f[2] == ARGV[i + 1] and (status == 'active' or status == 'aborting') then
    redis.call('ZADD', K.leases, lease_until, key)
    redis.call('HSET', jk, 'touched_ms', now_ms)
    if status == 'aborting' then aborting[#aborting + 1] = key end
  else
    lost[#lost + 1] = key
  end
end
return { aborting, lost }
