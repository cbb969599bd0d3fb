-- The complete schema of the SQLite backend, as applying every file in migrations/ leaves it.
--
-- A fresh database is created from this file directly; an existing one is brought here by
-- the migrations it has not applied yet. tests/backends/test_sqlite.py checks that both
-- roads end at the same sqlite_master. Change this file and add a migration together.
--
-- Several queues share one file: every table has a queue column. Times are epoch seconds
-- (REAL) unless the column name ends in _ms (INTEGER milliseconds). Columns declared BLOB
-- have no type affinity, so a payload comes back exactly as bytes or str, as it was given.
-- Comments stay outside the statements: sqlite_master keeps statement text verbatim.

-- One row per job. seq orders insertion within a queue (a re-queued job gets a new one).
-- due is when the job becomes claimable (0: at once); order_due, what claims order by, is
-- the later of due and the time the job was enqueued or re-queued. token is the fencing
-- token of the lease (active or aborting), NULL otherwise; it comes from the runs' id
-- sequence, so that no two leases ever share one. Both come from migration 3. owner is the
-- owners row of the process holding the lease (migration 4).
CREATE TABLE jobs (
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    function TEXT NOT NULL,
    payload BLOB NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL DEFAULT 0,
    group_key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER NOT NULL DEFAULT 0,
    touched_ms INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    run_id INTEGER,
    lease_until REAL NOT NULL DEFAULT 0,
    expire_at REAL,
    seq INTEGER NOT NULL,
    token INTEGER,
    order_due REAL NOT NULL DEFAULT 0,
    owner INTEGER,
    PRIMARY KEY (queue, key)
);

-- Claiming walks this index priority by priority, taking due jobs in (order_due, seq) order.
CREATE INDEX jobs_claim ON jobs (queue, priority, order_due, seq) WHERE status = 'queued';

-- The next due time (wait_for_work) and the count of scheduled jobs.
CREATE INDEX jobs_due ON jobs (queue, due) WHERE status = 'queued';

-- Running jobs: expired leases (recover), and the running member of a group (claim).
CREATE INDEX jobs_lease ON jobs (queue, lease_until) WHERE status IN ('active', 'aborting');

CREATE INDEX jobs_group ON jobs (queue, group_key)
    WHERE group_key IS NOT NULL AND status IN ('active', 'aborting');

-- Finished jobs to delete (expire).
CREATE INDEX jobs_expire ON jobs (queue, expire_at) WHERE expire_at IS NOT NULL;

-- Newest first listings, and the next seq of a queue.
CREATE INDEX jobs_seq ON jobs (queue, seq);

-- Counts by status, and newest first listings of some statuses.
CREATE INDEX jobs_status ON jobs (queue, status, seq);

-- Set-once tokens (NewJob.once), so that a cron slot is enqueued once by any worker.
CREATE TABLE marks (
    queue TEXT NOT NULL,
    token TEXT NOT NULL,
    expire_at REAL NOT NULL,
    PRIMARY KEY (queue, token)
) WITHOUT ROWID;

CREATE INDEX marks_expire ON marks (queue, expire_at);

-- One row per attempt. AUTOINCREMENT: a purged run's id is never given to a new run.
-- Its public id is external_id when set (a run stored by record_runs), else run_id.
-- external_id is added last, as migration 2's ALTER TABLE leaves the statement.
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    key TEXT NOT NULL,
    function TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    status TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    detail BLOB NOT NULL DEFAULT x''
, external_id TEXT);

-- Runs stored for another backend (record_runs), by the id it gave them.
CREATE UNIQUE INDEX runs_external ON runs (queue, external_id) WHERE external_id IS NOT NULL;

CREATE INDEX runs_started ON runs (queue, started_ms);

CREATE INDEX runs_key ON runs (queue, key, started_ms);

-- Counting runs of one status over a period (the overview's complete and failed totals).
CREATE INDEX runs_status ON runs (queue, status, started_ms);

-- Captured log lines of runs.
CREATE TABLE logs (
    queue TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    extra BLOB NOT NULL DEFAULT x'',
    PRIMARY KEY (queue, run_id, seq)
);

-- Live workers' records; a row whose expire_at has passed is ignored, then deleted.
CREATE TABLE workers (
    queue TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    info BLOB NOT NULL,
    expire_at REAL NOT NULL,
    PRIMARY KEY (queue, worker_id)
) WITHOUT ROWID;

-- The processes holding leases, one row per worker id and backend that claimed or recovered
-- a job: host (host name, boot id, PID namespace), pid, start time (NULL where unknown).
-- expire_dead_leases ends the leases of a process of this host that is gone (owners.py).
CREATE TABLE owners (
    owner_id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started INTEGER
);

CREATE INDEX owners_host ON owners (queue, host);
