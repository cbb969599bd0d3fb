-- A page of jobs with the given statuses, newest (highest seq) first.
-- ARGV[A+1..]: offset, limit, statuses...
-- Returns per job 8 values: key, status, payload, attempts, started_ms, touched_ms,
-- worker_id, run_id. Index entries of rows Redis expired are removed on the way.
local offset, limit = tonumber(ARGV[A + 1]), tonumber(ARGV[A + 2])
local want = offset + limit

local function merged()
  local all = {}
  for i = A + 3, #ARGV do
    local status = ARGV[i]
    local r = redis.call('ZREVRANGE', P.status .. status, 0, want - 1, 'WITHSCORES')
    for j = 1, #r, 2 do all[#all + 1] = { tonumber(r[j + 1]), r[j], status } end
  end
  table.sort(all, function(a, b) return a[1] > b[1] end)
  return all
end

local function drop_stale(all)
  local stale = false
  for j = 1, math.min(#all, want) do
    local key, status = all[j][2], all[j][3]
    if TERMINAL[status] and redis.call('EXISTS', P.job .. key) == 0 then
      redis.call('ZREM', P.status .. status, key)
      redis.call('ZREM', K.expiring, key)
      stale = true
    end
  end
  return stale
end

local all = merged()
for _ = 1, 5 do
  if not drop_stale(all) then break end
  all = merged()
end
local out = {}
for j = offset + 1, math.min(#all, want) do
  local key = all[j][2]
  local f = redis.call('HMGET', P.job .. key, 'status', 'payload', 'attempts', 'started_ms',
    'touched_ms', 'worker_id', 'run_id')
  if f[1] then
    out[#out + 1] = key
    for k = 1, 7 do out[#out + 1] = str(f[k]) end
  end
end
return out
