-- Store a new payload. ARGV[A+1..]: key, payload, now_ms. Returns 1, or 0 when missing.
local key = ARGV[A + 1]
local jk = P.job .. key
if redis.call('EXISTS', jk) == 0 then return 0 end
redis.call('HSET', jk, 'payload', ARGV[A + 2], 'touched_ms', ARGV[A + 3])
announce({ key })
return 1
