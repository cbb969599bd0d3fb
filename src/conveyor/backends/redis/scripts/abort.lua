-- Abort a job. ARGV[A+1..]: key, payload. Returns the status before ('' when missing).
local key, payload = ARGV[A + 1], ARGV[A + 2]
local jk = P.job .. key
local f = redis.call('HMGET', jk, 'status', 'seq', 'group_key', 'due')
local before = f[1]
if not before then return '' end
if before == 'queued' then
  local job = { seq = f[2], group = f[3], due = f[4] }
  unqueue(key, job)
  redis.call('HSET', jk, 'status', 'aborted', 'payload', payload)
  set_status(key, 'queued', 'aborted', f[2])
  -- This job may have been the one released from its group's parking: pass the turn on.
  if job.group and job.group ~= '' and not group_busy(job.group) then unpark_one(job.group) end
  announce({ key })
elseif before == 'active' then
  redis.call('HSET', jk, 'status', 'aborting', 'payload', payload)
  set_status(key, 'active', 'aborting', f[2])
end
return before
