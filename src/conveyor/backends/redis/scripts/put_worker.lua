-- Store a worker record and prune expired ones. ARGV[A+1..]: worker_id, info, expiry_ms,
-- now_ms.
redis.call('HSET', K.workers, ARGV[A + 1], ARGV[A + 2])
redis.call('ZADD', K.worker_ttl, ARGV[A + 3], ARGV[A + 1])
local dead = redis.call('ZRANGEBYSCORE', K.worker_ttl, '-inf', ARGV[A + 4])
for _, id in ipairs(dead) do redis.call('HDEL', K.workers, id) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', K.worker_ttl, '-inf', ARGV[A + 4]) end
return #dead
