-- Delete finished runs that started before a time, with their logs and index entries.
-- ARGV[A+1..]: before_ms, limit. Returns how many runs went.
local before, limit = '(' .. ARGV[A + 1], tonumber(ARGV[A + 2])
local n, kept = 0, 0
while n < limit do
  local batch = redis.call('ZRANGEBYSCORE', K.runs, '-inf', before, 'LIMIT', kept, 100)
  if #batch == 0 then break end
  for _, rm in ipairs(batch) do
    if n >= limit then break end
    local id = string.match(rm, '^0*(%d+)$')
    local f = redis.call('HMGET', P.run .. id, 'status', 'function', 'key')
    if f[1] == 'running' then
      kept = kept + 1
    else
      redis.call('ZREM', K.runs, rm)
      if f[1] then
        redis.call('ZREM', P.runs_status .. f[1], rm)
        redis.call('ZREM', P.runs_function .. f[2], rm)
        redis.call('ZREM', P.runs_job .. f[3], rm)
        redis.call('DEL', P.run .. id, P.logs .. id)
        n = n + 1
      end
    end
  end
end
return n
