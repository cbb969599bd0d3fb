-- Load jobs. ARGV[A+1..]: keys. Returns per key 7 values (status '' when missing):
--   status, payload, attempts, started_ms, touched_ms, worker_id, run_id.
local out = {}
for i = A + 1, #ARGV do
  local f = redis.call('HMGET', P.job .. ARGV[i], 'status', 'payload', 'attempts',
    'started_ms', 'touched_ms', 'worker_id', 'run_id')
  for j = 1, 7 do out[#out + 1] = str(f[j]) end
end
return out
