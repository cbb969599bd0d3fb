-- Claim up to ``limit`` jobs. ARGV[A+1..]: worker_id, limit, lease_until (s), now (s),
-- now_ms, move_bound (how many due scheduled jobs to move at most).
-- Returns per claimed job: key, payload, attempts, run_id. The run id is also the job's
-- new fencing token (unique forever: run ids come from one counter that recover's tokens
-- share), stored in its hash as ``token``.
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

-- Index writes are collected and sent variadic at the end: a job is claimed at most once
-- per call, so no two of them touch the same member.
local was_queued, now_active, leases, run_members, by_function = {}, {}, {}, {}, {}

local function activate(key, jk, f)
  local attempts = (tonumber(f[4]) or 0) + 1
  local run_id = redis.call('INCR', K.run_seq)
  redis.call('HSET', jk, 'status', 'active', 'attempts', attempts, 'started_ms', now_ms,
    'touched_ms', now_ms, 'worker_id', worker, 'run_id', run_id, 'token', run_id)
  redis.call('HSET', P.run .. run_id, 'key', key, 'function', f[3], 'attempt', attempts,
    'worker_id', worker, 'status', 'running', 'started_ms', now_ms, 'finished_ms', 0)
  local rm = run_member(run_id)
  redis.call('ZADD', P.runs_job .. key, now_ms, rm)
  was_queued[#was_queued + 1] = key
  now_active[#now_active + 1] = f[6]
  now_active[#now_active + 1] = key
  leases[#leases + 1] = lease_until
  leases[#leases + 1] = key
  run_members[#run_members + 1] = now_ms
  run_members[#run_members + 1] = rm
  local same_fn = by_function[f[3]]
  if not same_fn then
    same_fn = {}
    by_function[f[3]] = same_fn
  end
  same_fn[#same_fn + 1] = now_ms
  same_fn[#same_fn + 1] = rm
  return attempts, run_id
end

local out = {}
local taken = 0
while taken < limit do
  -- Equal priorities pop in member order: due, then seq (see keys.py).
  local batch = redis.call('ZPOPMIN', K.ready, limit - taken)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local member = batch[i]
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

if taken > 0 then
  many('ZREM', P.status .. 'queued', was_queued)
  many('ZADD', P.status .. 'active', now_active)
  many('ZADD', K.leases, leases)
  many('ZADD', K.runs, run_members)
  many('ZADD', P.runs_status .. 'running', run_members)
  for fn, members in pairs(by_function) do many('ZADD', P.runs_function .. fn, members) end
end

-- Wake-up tokens: pass one on while work remains, drop stale ones once there is none.
if redis.call('ZCARD', K.ready) > 0 then
  if taken >= limit then wake(1) end
elseif redis.call('ZCARD', K.scheduled) == 0 then
  redis.call('DEL', K.wake)
end
return out
