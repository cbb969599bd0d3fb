-- Count jobs. ARGV[A+1..]: now (s), statuses... ('scheduled': queued and not yet due).
-- Returns one count per status. Finished rows that Redis expired are counted until
-- ``expire()`` cleans their index entries.
local now = ARGV[A + 1]
local out = {}
for i = A + 2, #ARGV do
  if ARGV[i] == 'scheduled' then
    out[#out + 1] = redis.call('ZCOUNT', K.scheduled, '(' .. now, '+inf')
  else
    out[#out + 1] = redis.call('ZCARD', P.status .. ARGV[i])
  end
end
return out
