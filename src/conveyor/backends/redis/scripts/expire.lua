-- Delete finished jobs whose expire_at passed, and index entries of those Redis dropped.
-- ARGV[A+1..]: now_ms, limit. Returns how many jobs went.
local now_ms, limit = tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local doomed = redis.call('ZRANGEBYSCORE', K.expiring, '-inf', now_ms, 'LIMIT', 0, limit)
local n = 0
for _, key in ipairs(doomed) do
  redis.call('ZREM', K.expiring, key)
  local jk = P.job .. key
  local status = redis.call('HGET', jk, 'status')
  if not status then
    for name in pairs(TERMINAL) do redis.call('ZREM', P.status .. name, key) end
    n = n + 1
  elseif TERMINAL[status] then
    redis.call('ZREM', P.status .. status, key)
    redis.call('DEL', jk)
    n = n + 1
  end
end
return n
