-- The named queries of the SQLite backend.
--
-- Each query starts at a "-- name: <name>" line and runs to the next one. Parameters are
-- named (:queue ...); a list travels as one JSON array, read with json_each, so that a
-- batch is one statement whatever its length. A query is one statement unless its name
-- says otherwise (drop_queue). The Python code in operations.py decides nothing that a
-- query could decide: it only sequences these inside one transaction.

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS conveyor_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: applied_migrations
SELECT version FROM conveyor_migrations ORDER BY version;

-- name: record_migration
INSERT INTO conveyor_migrations (version, name, applied_at) VALUES (:version, :name, :now);

-- name: table_exists
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name;

-- name: job_status
SELECT status FROM jobs WHERE queue = :queue AND key = :key;

-- name: mark_expiry
SELECT expire_at FROM marks WHERE queue = :queue AND token = :token;

-- name: put_mark
INSERT OR REPLACE INTO marks (queue, token, expire_at) VALUES (:queue, :token, :expire_at);

-- name: max_seq
SELECT coalesce(max(seq), 0) FROM jobs WHERE queue = :queue;

-- name: insert_job
-- OR REPLACE: a finished job with the same key makes way for the new one.
INSERT OR REPLACE INTO jobs
    (queue, key, function, payload, status, priority, due, order_due, group_key, seq)
VALUES
    (:queue, :key, :function, :payload, 'queued', :priority, :due, :order_due, :group_key, :seq);

-- name: next_priority
-- The lowest priority above :after among queued jobs: claim's manual skip-scan, so that
-- many scheduled jobs at one priority are never walked one by one.
SELECT min(priority) FROM jobs INDEXED BY jobs_claim
WHERE queue = :queue AND status = 'queued' AND priority > :after;

-- name: claim_candidates
-- Due jobs of one priority in claim order, leaving out groups that have a job running.
-- order_due is the later of due and the time the job was written, so every job with
-- order_due <= :horizon is due but for a scheduled one, and no job beyond it is (see
-- JobOperations._claimable): the scan stops there, before the scheduled backlog.
SELECT j.key, j.function, j.attempts, j.group_key, j.payload
FROM jobs AS j INDEXED BY jobs_claim
WHERE j.queue = :queue AND j.status = 'queued' AND j.priority = :priority
    AND j.order_due <= :horizon AND j.due <= :now
    AND (j.group_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs AS a
        WHERE a.queue = j.queue AND a.group_key = j.group_key
            AND a.group_key IS NOT NULL AND a.status IN ('active', 'aborting')
    ))
ORDER BY j.order_due, j.seq;

-- name: insert_run
INSERT INTO runs (queue, key, function, attempt, worker_id, status, started_ms)
VALUES (:queue, :key, :function, :attempt, :worker_id, 'running', :now_ms);

-- name: activate_job
-- The new run's id is the lease's fencing token as well.
UPDATE jobs
SET status = 'active', attempts = :attempt, started_ms = :now_ms, touched_ms = :now_ms,
    worker_id = :worker_id, run_id = :run_id, lease_until = :lease_until, token = :run_id,
    owner = :owner
WHERE queue = :queue AND key = :key;

-- name: next_due
SELECT min(due) FROM jobs WHERE queue = :queue AND status = 'queued' AND due > :after;

-- name: renew_leases
-- Extends the leases of :leases (a JSON object {key: token}) that are held: the job is
-- active or aborting under that very token, whatever worker_id it carries. The + keeps the
-- planner off jobs_status (every running job of the queue): each lease is one primary key
-- lookup.
UPDATE jobs SET lease_until = :lease_until, touched_ms = :now_ms
WHERE queue = :queue AND +status IN ('active', 'aborting')
    AND (key, token) IN (SELECT key, value FROM json_each(:leases));

-- name: held_leases
-- Which leases of :leases are held, and their status (after renew_leases, when it did not
-- find them all).
SELECT key, token, status FROM jobs
WHERE queue = :queue AND +status IN ('active', 'aborting')
    AND (key, token) IN (SELECT key, value FROM json_each(:leases));

-- name: aborting_leases
-- The same for aborting jobs only, from jobs_status: when renew_leases found every lease,
-- these are all it still needs to know, and there are few.
SELECT key, token, status FROM jobs INDEXED BY jobs_status
WHERE queue = :queue AND status = 'aborting'
    AND (key, token) IN (SELECT key, value FROM json_each(:leases));

-- name: end_run
UPDATE runs SET status = :status, finished_ms = :finished_ms, error = :error, detail = :detail
WHERE queue = :queue AND run_id = :run_id;

-- name: requeue_job
-- A :token given: applied only while the lease under it is held (see renew_leases); the
-- same condition in end_job, delete_job and update_payload. A job no lease holds has no
-- token.
UPDATE jobs
SET payload = :payload, status = 'queued', due = :due, order_due = :order_due, seq = :seq,
    worker_id = NULL, lease_until = 0, token = NULL
WHERE queue = :queue AND key = :key
    AND (:token IS NULL OR (token = :token AND status IN ('active', 'aborting')));

-- name: end_job
UPDATE jobs
SET payload = :payload, status = :status, lease_until = 0, expire_at = :expire_at, token = NULL
WHERE queue = :queue AND key = :key
    AND (:token IS NULL OR (token = :token AND status IN ('active', 'aborting')));

-- name: delete_job
DELETE FROM jobs
WHERE queue = :queue AND key = :key
    AND (:token IS NULL OR (token = :token AND status IN ('active', 'aborting')));

-- name: update_payload
UPDATE jobs SET payload = :payload, touched_ms = :now_ms
WHERE queue = :queue AND key = :key
    AND (:token IS NULL OR (token = :token AND status IN ('active', 'aborting')));

-- name: set_status_payload
UPDATE jobs SET status = :status, payload = :payload WHERE queue = :queue AND key = :key;

-- name: expired_leases
SELECT key, payload, status, attempts, started_ms, touched_ms, run_id
FROM jobs INDEXED BY jobs_lease
WHERE queue = :queue AND status IN ('active', 'aborting') AND lease_until < :now
ORDER BY lease_until
LIMIT :limit;

-- name: take_lease
-- A new token: the dead owner's stops working in this very statement.
UPDATE jobs
SET lease_until = :lease_until, worker_id = :worker_id, token = :token, owner = :owner
WHERE queue = :queue AND key = :key;

-- name: reserve_ids
-- Takes :count ids from the runs' AUTOINCREMENT sequence without creating runs, for
-- recover's new tokens: SQLite numbers a new run above the sequence, so no run id or token
-- ever gets them again. No row changes when no run was ever stored (see first_ids).
UPDATE sqlite_sequence SET seq = seq + :count WHERE name = 'runs';

-- name: first_ids
INSERT INTO sqlite_sequence (name, seq)
SELECT 'runs', coalesce(max(run_id), 0) + :count FROM runs;

-- name: last_reserved_id
SELECT seq FROM sqlite_sequence WHERE name = 'runs';

-- name: insert_owner
INSERT INTO owners (queue, worker_id, host, pid, started)
VALUES (:queue, :worker_id, :host, :pid, :started);

-- name: owners_on_host
SELECT owner_id, pid, started FROM owners WHERE queue = :queue AND host = :host;

-- name: end_dead_leases
-- :owners is a JSON array of owner ids whose process is gone. Only a lease that has not
-- run out yet is ended (and counted), and only while the job still carries the worker id
-- that owner recorded: a job claimed since by code that does not set owner keeps its lease.
UPDATE jobs SET lease_until = 0
WHERE queue = :queue AND status IN ('active', 'aborting') AND lease_until >= :now
    AND owner IN (SELECT value FROM json_each(:owners))
    AND worker_id = (SELECT o.worker_id FROM owners AS o WHERE o.owner_id = jobs.owner);

-- name: forget_gone_owners
-- The gone owners of :owners that no running job points at any more.
DELETE FROM owners
WHERE owner_id IN (SELECT value FROM json_each(:owners))
    AND NOT EXISTS (
        SELECT 1 FROM jobs AS j
        WHERE j.queue = owners.queue AND j.owner = owners.owner_id
            AND j.status IN ('active', 'aborting')
    );

-- name: get_jobs
SELECT key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id
FROM jobs
WHERE queue = :queue AND key IN (SELECT value FROM json_each(:keys));

-- name: list_jobs
SELECT key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id
FROM jobs INDEXED BY jobs_seq
WHERE queue = :queue
ORDER BY seq DESC
LIMIT :limit OFFSET :offset;

-- name: newest_with_status
-- One status's newest jobs, from the covering index alone; list_jobs merges the statuses.
SELECT seq, rowid FROM jobs INDEXED BY jobs_status
WHERE queue = :queue AND status = :status
ORDER BY seq DESC
LIMIT :limit;

-- name: jobs_by_rowid
SELECT rowid, key, payload, status, attempts, started_ms, touched_ms, worker_id, run_id
FROM jobs
WHERE rowid IN (SELECT value FROM json_each(:rowids));

-- name: count_status
SELECT count(*) FROM jobs INDEXED BY jobs_status WHERE queue = :queue AND status = :status;

-- name: count_scheduled
SELECT count(*) FROM jobs WHERE queue = :queue AND status = 'queued' AND due > :now;

-- name: expire_jobs
DELETE FROM jobs WHERE rowid IN (
    SELECT rowid FROM jobs
    WHERE queue = :queue AND expire_at <= :now AND status IN ('complete', 'failed', 'aborted')
    LIMIT :limit
);

-- name: expire_marks
DELETE FROM marks WHERE queue = :queue AND expire_at <= :now;

-- name: put_worker
INSERT OR REPLACE INTO workers (queue, worker_id, info, expire_at)
VALUES (:queue, :worker_id, :info, :expire_at);

-- name: forget_dead_workers
DELETE FROM workers WHERE queue = :queue AND expire_at <= :now;

-- name: delete_worker
DELETE FROM workers WHERE queue = :queue AND worker_id = :worker_id;

-- name: live_workers
SELECT worker_id, info FROM workers
WHERE queue = :queue AND expire_at > :now
ORDER BY worker_id;

-- name: list_runs
-- /* filters */ is replaced by the run_filter_* fragments of the filters that are set.
SELECT coalesce(external_id, run_id), key, function, attempt, worker_id, status, started_ms,
    finished_ms, error, detail
FROM runs
WHERE queue = :queue /* filters */
ORDER BY started_ms DESC, run_id DESC
LIMIT :limit OFFSET :offset;

-- name: count_runs
SELECT count(*) FROM runs WHERE queue = :queue /* filters */;

-- name: run_filter_status
AND status = :status

-- name: run_filter_function
AND function = :function

-- name: run_filter_key
AND key = :key

-- name: run_filter_since_ms
AND started_ms >= :since_ms

-- name: run_filter_until_ms
AND started_ms < :until_ms

-- name: run_filter_error_contains
-- conveyor_contains is registered on the connection: Unicode case-insensitive, no wildcards.
AND conveyor_contains(error, :error_contains)

-- name: get_run
SELECT coalesce(external_id, run_id), key, function, attempt, worker_id, status, started_ms,
    finished_ms, error, detail
FROM runs
WHERE queue = :queue AND (external_id = :run_id OR (external_id IS NULL AND run_id = :run_id));

-- name: record_run_start
INSERT OR IGNORE INTO runs (queue, external_id, key, function, attempt, worker_id, status,
    started_ms, finished_ms, error, detail)
VALUES (:queue, :run_id, :key, :function, :attempt, :worker_id, :status, :started_ms,
    :finished_ms, :error, :detail);

-- name: record_run_end
UPDATE runs SET status = :status, finished_ms = :finished_ms, error = :error, detail = :detail
WHERE queue = :queue AND external_id = :run_id;

-- name: append_log
-- Positional: one row per line, (queue, run_id, seq, ts, level, message, extra).
INSERT OR REPLACE INTO logs (queue, run_id, seq, ts, level, message, extra)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: read_logs
SELECT run_id, seq, ts, level, message, extra FROM logs
WHERE queue = :queue AND run_id = :run_id AND seq > :after_seq
ORDER BY seq
LIMIT :limit;

-- name: purgeable_runs
SELECT run_id, coalesce(external_id, run_id) FROM runs
WHERE queue = :queue AND started_ms < :before_ms AND status != 'running'
ORDER BY started_ms, run_id
LIMIT :limit;

-- name: delete_logs_of_runs
DELETE FROM logs WHERE queue = :queue AND run_id IN (SELECT value FROM json_each(:log_ids));

-- name: delete_runs
-- NOT INDEXED: the runs are found by their rowid. Left to choose, the planner took the
-- index on queue and read every run of the queue for each batch (a purge of a million runs
-- read a million rows a thousand times: batches of 1 to 3 s).
DELETE FROM runs NOT INDEXED
WHERE queue = :queue AND run_id IN (SELECT value FROM json_each(:run_ids));

-- name: drop_queue
DELETE FROM jobs WHERE queue = :queue;
DELETE FROM marks WHERE queue = :queue;
DELETE FROM runs WHERE queue = :queue;
DELETE FROM logs WHERE queue = :queue;
DELETE FROM workers WHERE queue = :queue;
DELETE FROM owners WHERE queue = :queue;
