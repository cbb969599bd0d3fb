-- A page of runs, newest first, and the total that match.
-- ARGV[A+1..]: index key, min score, max score, offset, limit, window,
--   status, function, key, error needle (lower case; '' for no such filter).
-- The index and the score range come from the most selective filter. Filters the index
-- does not cover are checked run by run over the newest ``window`` entries of the range.
-- Returns total, truncated (1 when the window cut the scan), then 10 values per run:
--   run_id, key, function, attempt, worker_id, status, started_ms, finished_ms, error, detail.
local index, min, max = ARGV[A + 1], ARGV[A + 2], ARGV[A + 3]
local offset, limit, window = tonumber(ARGV[A + 4]), tonumber(ARGV[A + 5]),
  tonumber(ARGV[A + 6])
local want_status, want_fn, want_key = ARGV[A + 7], ARGV[A + 8], ARGV[A + 9]
local needle = ARGV[A + 10]
local exact = want_status == '' and want_fn == '' and want_key == '' and needle == ''

local function load(rm)
  local id = string.match(rm, '^0*(%d+)$')
  local f = redis.call('HMGET', P.run .. id, 'key', 'function', 'attempt', 'worker_id',
    'status', 'started_ms', 'finished_ms', 'error', 'detail')
  return id, f
end

local function emit(out, id, f)
  out[#out + 1] = id
  for j = 1, 9 do out[#out + 1] = str(f[j]) end
end

local function matches(f)
  if not f[1] then return false end
  if want_status ~= '' and f[5] ~= want_status then return false end
  if want_fn ~= '' and f[2] ~= want_fn then return false end
  if want_key ~= '' and f[1] ~= want_key then return false end
  if needle ~= '' and not string.find(string.lower(str(f[8])), needle, 1, true) then
    return false
  end
  return true
end

if exact then
  local out = { redis.call('ZCOUNT', index, min, max), 0 }
  local members = redis.call('ZREVRANGEBYSCORE', index, max, min, 'LIMIT', offset, limit)
  for _, rm in ipairs(members) do
    local id, f = load(rm)
    if f[1] then emit(out, id, f) end
  end
  return out
end

local members = redis.call('ZREVRANGEBYSCORE', index, max, min, 'LIMIT', 0, window)
local out = { 0, 0 }
local total = 0
for _, rm in ipairs(members) do
  local id, f = load(rm)
  if matches(f) then
    total = total + 1
    if total > offset and total <= offset + limit then emit(out, id, f) end
  end
end
out[1] = total
if #members >= window then out[2] = 1 end
return out
