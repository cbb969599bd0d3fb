-- Store log lines, then apply transitions, atomically. ARGV[A+1]: now (s, the caller's
-- clock); ARGV[A+2]: the number N of log lines that follow (see store_logs in the
-- prelude); then per transition, 12 values:
--   key, payload, status, due (s), expire_at (ms, '' none), delete ('1' or ''),
--   run_id ('' none), run_status, finished_ms, detail, error, fencing token ('' none).
-- A transition with a token is applied only while the job is active or aborting under
-- that token; otherwise nothing of it is stored, its run's end included. Applying one
-- clears the token. A job re-queued to run now sorts by ``now`` (see enqueue.lua).
-- Returns one 0/1 per transition: applied or not. Announces every changed key once on
-- the channel; wakes workers when jobs are re-queued.
local changed, applied = {}, {}
local requeued = 0
local now = ARGV[A + 1]

local function end_run(run_id, status, finished_ms, detail, err)
  local rk = P.run .. run_id
  local old = redis.call('HMGET', rk, 'status', 'started_ms')
  if not old[1] then return end
  redis.call('HSET', rk, 'status', status, 'finished_ms', finished_ms, 'detail', detail,
    'error', err)
  local rm = run_member(run_id)
  redis.call('ZREM', P.runs_status .. old[1], rm)
  redis.call('ZADD', P.runs_status .. status, old[2], rm)
end

local logs = tonumber(ARGV[A + 2])
if logs > 0 then store_logs(A + 3, A + 2 + logs) end

for i = A + 3 + logs, #ARGV, 12 do
  local key, payload, status = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local due, expire_ms, delete = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local token = ARGV[i + 11]
  local jk = P.job .. key
  local f = redis.call('HMGET', jk, 'status', 'seq', 'group_key', 'priority', 'due', 'token')
  local old = f[1]
  if token ~= '' and (f[6] ~= token or not (old == 'active' or old == 'aborting')) then
    applied[#applied + 1] = 0 -- a stale owner's write: nothing of it is stored
  else
    if ARGV[i + 6] ~= '' then
      end_run(ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10])
    end
    if old then
      local job = { seq = f[2], group = f[3], due = f[5] }
      if old == 'queued' then unqueue(key, job) end
      redis.call('ZREM', K.leases, key)
      release_group(job.group, key)
      if status == 'queued' then
        local seq = redis.call('INCR', K.seq)
        local later = tonumber(due) > tonumber(now)
        if not later then due = now end
        redis.call('HSET', jk, 'payload', payload, 'status', 'queued', 'due', due,
          'seq', seq, 'worker_id', '', 'token', '')
        set_status(key, old, 'queued', seq)
        if later then
          redis.call('ZADD', K.scheduled, due, key)
        else
          make_ready(key, f[4], due, seq, job.group)
        end
        requeued = requeued + 1
      elseif delete == '1' then
        redis.call('ZREM', P.status .. old, key)
        redis.call('ZREM', K.expiring, key)
        redis.call('DEL', jk)
      else
        set_status(key, old, status, job.seq)
        if expire_ms == '' then
          redis.call('HSET', jk, 'payload', payload, 'status', status, 'token', '')
          if TERMINAL[old] then
            -- Finished again (e.g. an aborted queued job), now to be kept: no expiry left.
            redis.call('HDEL', jk, 'expire_at')
            redis.call('ZREM', K.expiring, key)
            redis.call('PERSIST', jk)
          end
        else
          redis.call('HSET', jk, 'payload', payload, 'status', status, 'expire_at', expire_ms,
            'token', '')
          redis.call('ZADD', K.expiring, expire_ms, key)
          redis.call('PEXPIREAT', jk, expire_ms)
        end
      end
      changed[#changed + 1] = key
      applied[#applied + 1] = 1
    else
      applied[#applied + 1] = 0
    end
  end
end
announce(changed)
if requeued > 0 then wake(requeued) end
return applied
