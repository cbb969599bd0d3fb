-- Claim up to ``limit`` jobs. ARGV[A+1..]: worker_id, limit, lease_until (s), now (s),
-- now_ms, move_bound (how many due scheduled jobs to move at most).
-- Returns per claimed job: key, payload, attempts, run_id.
local worker, limit = ARGV[A + 1], tonumber(ARGV[A + 2])
local lease_until, now, now_ms = ARGV[A + 3], ARGV[A + 4], ARGV[A + 5]
local move_bound = tonumber(ARGV[A + 6])

-- Scheduled jobs that are due become ready (or parked behind their group).
local due_keys = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', now, 'LIMIT', 0, move_bound)
for _, key in ipairs(due_keys) do
  redis.call('ZREM', K.scheduled, key)
  local f = redis.call('HMGET', P.job .. key, 'status', 'priority', 'due', 'seq', 'group_key')
  if f[1] == 'queued' then make_ready(key, f[2], f[3], f[4], f[5]) end
end

local function activate(key, jk, f)
  local attempts = (tonumber(f[4]) or 0) + 1
  local run_id = redis.call('INCR', K.run_seq)
  redis.call('HSET', jk, 'status', 'active', 'attempts', attempts, 'started_ms', now_ms,
    'touched_ms', now_ms, 'worker_id', worker, 'run_id', run_id)
  set_status(key, 'queued', 'active', f[6])
  redis.call('ZADD', K.leases, lease_until, key)
  redis.call('HSET', P.run .. run_id, 'key', key, 'function', f[3], 'attempt', attempts,
    'worker_id', worker, 'status', 'running', 'started_ms', now_ms, 'finished_ms', 0)
  local rm = run_member(run_id)
  redis.call('ZADD', K.runs, now_ms, rm)
  redis.call('ZADD', P.runs_status .. 'running', now_ms, rm)
  redis.call('ZADD', P.runs_function .. f[3], now_ms, rm)
  redis.call('ZADD', P.runs_job .. key, now_ms, rm)
  return attempts, run_id
end

local out = {}
local taken = 0
while taken < limit do
  local batch = redis.call('ZRANGE', K.ready, 0, limit - taken - 1, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local member = batch[i]
    redis.call('ZREM', K.ready, member)
    local key = member_key(member)
    local jk = P.job .. key
    local f = redis.call('HMGET', jk, 'status', 'group_key', 'function', 'attempts', 'payload',
      'seq')
    -- Entries of jobs that changed since (aborted, rewritten) are dropped.
    if f[1] == 'queued' and tonumber(f[6]) == member_seq(member) then
      local group = f[2]
      if group and group ~= '' and group_busy(group) then
        redis.call('ZADD', P.parked .. group, batch[i + 1], member)
      else
        if group and group ~= '' then redis.call('HSET', K.groups, group, key) end
        local attempts, run_id = activate(key, jk, f)
        out[#out + 1] = key
        out[#out + 1] = f[5]
        out[#out + 1] = attempts
        out[#out + 1] = tostring(run_id)
        taken = taken + 1
      end
    end
  end
end

-- Wake-up tokens: pass one on while work remains, drop stale ones once there is none.
if redis.call('ZCARD', K.ready) > 0 then
  if taken >= limit then wake(1) end
elseif redis.call('ZCARD', K.scheduled) == 0 then
  redis.call('DEL', K.wake)
end
return out
