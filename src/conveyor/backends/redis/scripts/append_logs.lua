-- Store log lines. ARGV[A+1..]: one per line (see store_logs in the prelude).
store_logs(A + 1, #ARGV)
return #ARGV - A
