-- Insert jobs. ARGV[A+1..]: per job, 8 values:
--   key, function, payload, priority, due (epoch s), group_key ('' none),
--   once token ('' none), once ttl (ms).
-- Returns one 0/1 per job: inserted or not.
local out = {}
local inserted = 0
for i = A + 1, #ARGV, 8 do
  local key, fn, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local priority, due, group = ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5]
  local once, once_ttl = ARGV[i + 6], tonumber(ARGV[i + 7])
  local jk = P.job .. key
  local old = redis.call('HGET', jk, 'status')
  local ok = not (old and INCOMPLETE[old])
  if ok and once ~= '' and once_ttl > 0 then
    ok = redis.call('SET', P.mark .. once, '1', 'NX', 'PX', once_ttl) and true or false
  end
  if ok then
    if old then
      -- A finished job with the same key is replaced.
      redis.call('ZREM', P.status .. old, key)
      redis.call('ZREM', K.expiring, key)
      redis.call('DEL', jk)
    end
    local seq = redis.call('INCR', K.seq)
    redis.call('HSET', jk, 'payload', payload, 'status', 'queued', 'attempts', 0,
      'function', fn, 'priority', priority, 'due', ARGV[i + 4], 'group_key', group, 'seq', seq)
    redis.call('ZADD', P.status .. 'queued', seq, key)
    if due > 0 then
      redis.call('ZADD', K.scheduled, due, key)
    else
      make_ready(key, priority, 0, seq, group)
    end
    inserted = inserted + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if inserted > 0 then wake(inserted) end
return out
