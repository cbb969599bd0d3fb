-- The names every script uses, from its KEYS and ARGV: assigned to locals declared before
-- this text (see scripts.py: once per call of a plain script, once per queue in the
-- function library, which keeps them by key base).
-- KEYS follow keys.FIXED_KEYS; ARGV[1] is the queue's key base, from which every key
-- prefix is built here (same slot as KEYS, thanks to the hash tag in the base), so a call
-- sends one argument for them all; ARGV[2] is the command that announces changed jobs
-- (PUBLISH, or SPUBLISH on a Redis Cluster: a sharded channel stays on the queue's node).
-- A script's own arguments start at ARGV[A + 1].
K = {
  ready = KEYS[1], scheduled = KEYS[2], leases = KEYS[3], groups = KEYS[4],
  seq = KEYS[5], run_seq = KEYS[6], wake = KEYS[7], expiring = KEYS[8],
  runs = KEYS[9], workers = KEYS[10], worker_ttl = KEYS[11],
}
B = ARGV[1]
P = {
  job = B .. 'job:', status = B .. 'status:', parked = B .. 'parked:', run = B .. 'run:',
  runs_status = B .. 'runs:status:', runs_function = B .. 'runs:function:',
  runs_job = B .. 'runs:job:', logs = B .. 'logs:', mark = B .. 'mark:',
  channel = B .. 'finished', publish = ARGV[2],
}
A = 2

