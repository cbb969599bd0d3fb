-- Shared helpers, placed before every script (see scripts.py).
local INCOMPLETE = { queued = true, active = true, aborting = true }
local TERMINAL = { complete = true, failed = true, aborted = true }

-- The ready-set member: due (ms) and seq zero padded, so equal priorities sort by them.
local function ready_member(due, seq, key)
  local due_ms = math.floor((tonumber(due) or 0) * 1000)
  if due_ms < 0 then due_ms = 0 end
  return string.format('%015d:%015d:', due_ms, tonumber(seq)) .. key
end

local function member_key(member)
  return string.sub(member, 33)
end

local function member_seq(member)
  return tonumber(string.sub(member, 17, 31))
end

local function run_member(run_id)
  return string.format('%015d', tonumber(run_id))
end

-- Whether another job holds ``group`` (a stale holder, one no longer active, does not count).
local function group_busy(group)
  local holder = redis.call('HGET', K.groups, group)
  if not holder then return false end
  local status = redis.call('HGET', P.job .. holder, 'status')
  if status == 'active' or status == 'aborting' then return true end
  redis.call('HDEL', K.groups, group)
  return false
end

-- Put a queued, due job where claim finds it: ready, or its group's parking set.
local function make_ready(key, priority, due, seq, group)
  local member = ready_member(due, seq, key)
  if group and group ~= '' and group_busy(group) then
    redis.call('ZADD', P.parked .. group, priority, member)
  else
    redis.call('ZADD', K.ready, priority, member)
  end
end

-- Move the best parked job of ``group`` back to ready.
local function unpark_one(group)
  local best = redis.call('ZRANGE', P.parked .. group, 0, 0, 'WITHSCORES')
  if #best > 0 then
    redis.call('ZREM', P.parked .. group, best[1])
    redis.call('ZADD', K.ready, best[2], best[1])
  end
end

-- Release ``group`` if ``key`` holds it, letting its next job be claimed.
local function release_group(group, key)
  if group and group ~= '' and redis.call('HGET', K.groups, group) == key then
    redis.call('HDEL', K.groups, group)
    unpark_one(group)
  end
end

-- Take a queued job out of ready / scheduled / parked (it is being aborted or rewritten).
local function unqueue(key, job)
  redis.call('ZREM', K.scheduled, key)
  if job.seq then
    local member = ready_member(job.due, job.seq, key)
    redis.call('ZREM', K.ready, member)
    if job.group and job.group ~= '' then
      redis.call('ZREM', P.parked .. job.group, member)
    end
  end
end

local function set_status(key, old, new, seq)
  if old and old ~= new then redis.call('ZREM', P.status .. old, key) end
  redis.call('ZADD', P.status .. new, seq, key)
end

-- Push up to 16 wake-up tokens in one LPUSH. With no worker waiting the list only grows:
-- past 64 it is cut back to 16, so most pushes need no trim.
local function wake(count)
  if count > 16 then count = 16 end
  local tokens = {}
  for i = 1, count do tokens[i] = '1' end
  if redis.call('LPUSH', K.wake, unpack(tokens)) > 64 then
    redis.call('LTRIM', K.wake, 0, 15)
  end
end

local function announce(keys)
  if #keys > 0 then redis.call(P.publish, P.channel, cjson.encode(keys)) end
end

local function str(value)
  if value then return value end
  return ''
end
-- Run ``cmd key items...`` in chunks (Lua's unpack has a stack limit); pairs stay whole.
local function many(cmd, key, items)
  for i = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
  end
end
-- Store log lines given as ARGV[first..last]: each the run id, US (\31), then the
-- sorted-set member, which starts with the line's seq (its score) and US. One ZADD per run.
local function store_logs(first, last)
  local runs, order = {}, {}
  for i = first, last do
    local arg = ARGV[i]
    local cut = string.find(arg, '\31', 1, true)
    local run_id, member = string.sub(arg, 1, cut - 1), string.sub(arg, cut + 1)
    local items = runs[run_id]
    if not items then
      items = {}
      runs[run_id] = items
      order[#order + 1] = run_id
    end
    items[#items + 1] = string.sub(member, 1, string.find(member, '\31', 1, true) - 1)
    items[#items + 1] = member
  end
  for _, run_id in ipairs(order) do many('ZADD', P.logs .. run_id, runs[run_id]) end
end
-- end of prelude
