-- Live worker records. ARGV[A+1]: now_ms. Returns id, info pairs.
local ids = redis.call('ZRANGEBYSCORE', K.worker_ttl, '(' .. ARGV[A + 1], '+inf')
local out = {}
for _, id in ipairs(ids) do
  local info = redis.call('HGET', K.workers, id)
  if info then
    out[#out + 1] = id
    out[#out + 1] = info
  end
end
return out
