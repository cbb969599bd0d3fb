-- Store a new payload. ARGV[A+1..]: key, payload, now_ms, fencing token ('' none: any
-- existing job). Returns 1, or 0 when the job is missing or not held under the token.
local key, token = ARGV[A + 1], ARGV[A + 4]
local jk = P.job .. key
if token == '' then
  if redis.call('EXISTS', jk) == 0 then return 0 end
else
  local f = redis.call('HMGET', jk, 'status', 'token')
  if f[2] ~= token or not (f[1] == 'active' or f[1] == 'aborting') then return 0 end
end
redis.call('HSET', jk, 'payload', ARGV[A + 2], 'touched_ms', ARGV[A + 3])
announce({ key })
return 1
