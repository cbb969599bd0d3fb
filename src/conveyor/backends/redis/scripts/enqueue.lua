-- Insert jobs. ARGV[A+1]: now (epoch s, the caller's clock); then per job, 8 values:
--   key, function, payload, priority, due (epoch s), group_key ('' none),
--   once token ('' none), once ttl (ms).
-- Returns one 0/1 per job: inserted or not.
-- A job due now (due 0 or past) is ready at once and sorts by ``now``, its enqueue time, so
-- that a job that was scheduled or retried earlier and became due sorts before it (claims
-- go by priority, then due, then insertion order); its hash keeps that due, from which
-- ``unqueue`` finds its ready member again.
-- One INCRBY reserves the seqs of the whole call (a rejected job leaves a gap), and the
-- index entries of all inserted jobs are added at the end, a few ZADDs per call.
local now = ARGV[A + 1]
local now_n = tonumber(now)
local n = (#ARGV - A - 1) / 8
local seq = redis.call('INCRBY', K.seq, n) - n
local out, queued, ready, scheduled = {}, {}, {}, {}
local inserted = 0
-- The ready member's due part for jobs due now (see ready_member).
local now_part = string.format('%015d:', math.floor(now_n * 1000))
for i = A + 2, #ARGV, 8 do
  local key, payload = ARGV[i], ARGV[i + 2]
  local priority, due, group = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local once, once_ttl = ARGV[i + 6], tonumber(ARGV[i + 7])
  local jk = P.job .. key
  local old = redis.call('HGET', jk, 'status')
  local ok = not (old and INCOMPLETE[old])
  if ok and once ~= '' and once_ttl > 0 then
    ok = redis.call('SET', P.mark .. once, '1', 'NX', 'PX', once_ttl) and true or false
  end
  seq = seq + 1
  if ok then
    if old then
      -- A finished job with the same key is replaced.
      redis.call('ZREM', P.status .. old, key)
      redis.call('ZREM', K.expiring, key)
      redis.call('DEL', jk)
    end
    local later = tonumber(due) > now_n
    if not later then due = now end
    redis.call('HSET', jk, 'payload', payload, 'status', 'queued', 'attempts', 0,
      'function', ARGV[i + 1], 'priority', priority, 'due', due, 'group_key', group,
      'seq', seq)
    queued[#queued + 1] = seq
    queued[#queued + 1] = key
    if later then
      scheduled[#scheduled + 1] = due
      scheduled[#scheduled + 1] = key
    elseif group ~= '' then
      make_ready(key, priority, now, seq, group)
    else
      ready[#ready + 1] = priority
      -- ready_member(now, seq, key), written out: half a microsecond less per job.
      ready[#ready + 1] = now_part .. string.format('%015d:', seq) .. key
    end
    inserted = inserted + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if inserted > 0 then
  many('ZADD', P.status .. 'queued', queued)
  if #scheduled > 0 then many('ZADD', K.scheduled, scheduled) end
  if #ready > 0 then many('ZADD', K.ready, ready) end
  wake(inserted)
end
return out
