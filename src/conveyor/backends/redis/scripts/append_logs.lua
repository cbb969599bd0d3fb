-- Store log lines. ARGV[A+1..]: one per line, the run id, US (\31), then the sorted-set
-- member, which starts with the line's seq (its score) and US. One ZADD per run.
local runs, order = {}, {}
for i = A + 1, #ARGV do
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
return #ARGV - A
