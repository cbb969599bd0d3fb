-- Store log lines. ARGV[A+1..]: per line, run_id, seq, packed line.
for i = A + 1, #ARGV, 3 do
  redis.call('ZADD', P.logs .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
end
return (#ARGV - A) / 3
