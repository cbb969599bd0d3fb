-- Named queries of the PostgreSQL backend, parsed when a backend is built.
--
-- A query starts at a "-- name: <name>" line and ends at the next one. {{schema}} stands
-- for the quoted schema identifier, {{schema_name}} for the schema name as a string literal.
-- Parameters are psycopg's %(name)s placeholders (a literal percent sign is written %%);
-- arrays travel in binary, %(name)b, which costs a fraction of the text format's escaping.
-- A block named fragment_<x> is not a query: {{fragment_<x>}} in a query stands for it.
-- {{limit}} (in claim only) is filled in by the backend at each call.
-- Every statement that a worker runs once per batch is a single statement: one round
-- trip, one transaction, whatever the batch size.

-- name: version_table
-- The migrations table, or NULL when the schema was never migrated.
SELECT to_regclass('{{schema}}.schema_version') IS NOT NULL;

-- name: current_version
SELECT coalesce(max(version), 0) FROM {{schema}}.schema_version;

-- name: migration_lock
-- Transaction-scoped: released at commit or rollback, never left on a pooled connection.
SELECT pg_advisory_xact_lock(hashtext('conveyor.migrate'), hashtext({{schema_name}}));

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {{schema}};

-- name: create_version_table
CREATE TABLE IF NOT EXISTS {{schema}}.schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: record_version
INSERT INTO {{schema}}.schema_version (version, name) VALUES ({{version}}, '{{migration}}');

-- name: drop
DROP SCHEMA IF EXISTS {{schema}} CASCADE;

-- name: server_identity
-- Which server and database a connection reaches (see sessions.py): a server's start time
-- tells it from another server, a primary from its standby too (in seconds since the epoch,
-- the same whatever the session's TimeZone).
SELECT current_database(), extract(epoch FROM pg_postmaster_start_time())::text;

-- name: fragment_replace_finished
-- How every enqueue statement settles a key that exists: a finished job is replaced by the
-- new one, an incomplete one (queued, active or aborting) is left as it is and its key is
-- not returned.
ON CONFLICT (queue, key) DO UPDATE SET
    function = excluded.function, payload = excluded.payload,
    payload_raw = excluded.payload_raw, payload_bytes = excluded.payload_bytes,
    status = 'queued', priority = excluded.priority, due = excluded.due,
    ready_at = excluded.ready_at,
    group_key = excluded.group_key, attempts = 0, started_ms = 0, touched_ms = 0,
    worker_id = NULL, run_id = NULL, lease_until = 0, expire_at = NULL, token = NULL,
    seq = excluded.seq
WHERE j.status NOT IN ('queued', 'active', 'aborting')

-- name: fragment_wake_workers
-- The end of a batch enqueue: the inserted keys, and one notification for waiting workers
-- when there is any.
notified AS (
    SELECT pg_notify(%(channel)s, 'w:' || %(queue)s) AS sent
    WHERE EXISTS (SELECT 1 FROM inserted)
)
SELECT inserted.key FROM inserted, notified

-- name: enqueue_job
-- One job without a once-mark (queue.enqueue): one upsert, and the wake-up in the same
-- statement. Positional parameters, in order: queue, key, function, payload (JSON text or
-- NULL), payload_raw, payload_bytes, priority, due, ready_at, group_key, channel,
-- notification (ready_at as the client computed it: see the enqueue query); a dict of
-- twelve named ones costs more client time than the rest of the call.
WITH inserted AS (
    INSERT INTO {{schema}}.jobs AS j (
        queue, key, function, payload, payload_raw, payload_bytes, status, priority, due,
        ready_at, group_key
    )
    VALUES (%s, %s, %s, %s::jsonb, %s::bytea, %s::boolean, 'queued', %s::integer, %s::float8,
        %s::float8, %s::text)
    {{fragment_replace_finished}}
    RETURNING j.key
)
SELECT key, pg_notify(%s, %s) FROM inserted;

-- name: enqueue_jobs
-- A batch (or one chunk of it) of jobs without once-marks whose payloads are JSON text. The
-- columns travel as text, their values joined by U+001F (U+001E stands for a NULL group),
-- which the client builds at C speed where arrays cost microseconds per value; the client
-- checks that no value contains the separators. Returns the inserted keys; waiting workers
-- get one notification.
WITH inserted AS (
    INSERT INTO {{schema}}.jobs AS j (
        queue, key, function, payload, payload_bytes, status, priority, due, ready_at,
        group_key
    )
    SELECT %(queue)s, i.key, i.function, i.payload::jsonb, %(is_bytes)s, 'queued', i.priority,
        i.due, greatest(i.due, %(now)s), i.group_key
    FROM unnest(
        string_to_array(%(keys)s, E'\x1f'), string_to_array(%(functions)s, E'\x1f'),
        string_to_array(%(payloads)s, E'\x1f'), string_to_array(%(priorities)s, ',')::integer[],
        string_to_array(%(dues)s, ',')::float8[], string_to_array(%(groups)s, E'\x1f', E'\x1e')
    ) AS i(key, function, payload, priority, due, group_key)
    {{fragment_replace_finished}}
    RETURNING j.key
),
{{fragment_wake_workers}};

-- name: enqueue
-- Any batch, one array element per job (keys and once tokens are unique in a batch): the
-- statement for once-marks, and for payloads that are not JSON. A job goes in when no
-- incomplete job holds its key and its once-mark is free or expired (the mark is taken in
-- the same statement); a finished job with the same key is replaced. Returns the inserted
-- keys; waiting workers get one notification for the batch.
--
-- A job's place in the claim order, ready_at, is its due time, or for a job due at once
-- (due 0 or past) the time of the call (now, on the client's clock): so it sorts after a
-- retry or a scheduled job that was due before it. Its due stays as given: it is claimable
-- at any time from then on.
WITH input AS (
    SELECT * FROM unnest(
        %(keys)b::text[], %(functions)b::text[], %(payloads)b::text[], %(raws)b::bytea[],
        %(is_bytes)b::boolean[], %(priorities)b::integer[], %(dues)b::float8[],
        %(groups)b::text[], %(onces)b::text[], %(once_ttls)b::float8[]
    ) AS t(key, function, payload, raw, is_bytes, priority, due, group_key, once, once_ttl)
),
blocked AS (
    SELECT j.key FROM {{schema}}.jobs j
    WHERE j.queue = %(queue)s AND j.key IN (SELECT key FROM input)
      AND j.status IN ('queued', 'active', 'aborting')
),
marked AS (
    INSERT INTO {{schema}}.marks AS m (queue, token, expire_at)
    SELECT %(queue)s, i.once, %(now)s + i.once_ttl FROM input i
    WHERE i.once IS NOT NULL AND i.key NOT IN (SELECT key FROM blocked)
    ON CONFLICT (queue, token) DO UPDATE SET expire_at = excluded.expire_at
        WHERE m.expire_at <= %(now)s
    RETURNING m.token
),
inserted AS (
    INSERT INTO {{schema}}.jobs AS j (
        queue, key, function, payload, payload_raw, payload_bytes, status, priority, due,
        ready_at, group_key
    )
    SELECT %(queue)s, i.key, i.function, i.payload::jsonb, i.raw, i.is_bytes, 'queued',
        i.priority, i.due, greatest(i.due, %(now)s), i.group_key
    FROM input i
    WHERE i.once IS NULL OR i.once IN (SELECT token FROM marked)
    {{fragment_replace_finished}}
    RETURNING j.key
),
{{fragment_wake_workers}};

-- name: claim
-- Take the next claimable jobs: queued, due, and either without a group, or the head of
-- a group (its first due job in claim order) that has no running job. Claim order:
-- priority, ready_at (the due time, or the time it was queued for a job due at once: see
-- the enqueue query), insertion. Only a head may be
-- taken, so one statement takes at most one job per group; the unique index
-- jobs_group_running_idx settles the rare race between two statements (the loser fails
-- with a unique violation and the caller retries). The run rows are created in the same
-- statement.
--
-- {{limit}} is the batch size, written in by the backend at each call: one prepared
-- statement per batch size (psycopg keeps prepared_max of them per connection). With a
-- parameter, the plan cache's generic plan would expect a tenth of the queue under the
-- LIMIT, so once the table has statistics the statement would be planned again at every
-- call (0.3 to 0.5 ms of server time each).
--
-- Not idempotent: run again after a lost reply, it would take more jobs and leave the
-- first ones active under a worker that never heard of them. A connection lost while it
-- ran is followed by claim_again, which finds them by the call's claim_id.
WITH picked AS (
    {{fragment_claimable}}
    ORDER BY j.priority, j.ready_at, j.seq
    LIMIT {{limit}}
    FOR UPDATE SKIP LOCKED
),
{{fragment_claim_picked}}
SELECT key, payload, payload_raw, payload_bytes, status, attempts, started_ms, touched_ms,
    worker_id, run_id, token
FROM claimed
ORDER BY priority, ready_at, seq;

-- name: claim_again
-- The claim after a connection lost while a claim ran (it may have committed): the jobs
-- that claim took, found by its claim_id, if it took any; else a claim as claim makes it.
-- Running it again is harmless: it finds what the previous run took.
WITH earlier AS (
    SELECT key, payload::text AS payload, payload_raw, payload_bytes, status, attempts,
        started_ms, touched_ms, worker_id, run_id, token, priority, ready_at, seq
    FROM {{schema}}.jobs
    WHERE queue = %(queue)s AND status IN ('active', 'aborting')
      AND claim_id = %(claim_id)s AND worker_id = %(worker_id)s
),
picked AS (
    {{fragment_claimable}}
      AND NOT EXISTS (SELECT 1 FROM earlier)
    ORDER BY j.priority, j.ready_at, j.seq
    LIMIT {{limit}}
    FOR UPDATE SKIP LOCKED
),
{{fragment_claim_picked}}
SELECT key, payload, payload_raw, payload_bytes, status, attempts, started_ms, touched_ms,
    worker_id, run_id, token
FROM (
    SELECT key, payload, payload_raw, payload_bytes, status, attempts, started_ms,
        touched_ms, worker_id, run_id, token, priority, ready_at, seq
    FROM claimed
    UNION ALL
    SELECT * FROM earlier
) AS taken
ORDER BY priority, ready_at, seq;

-- name: fragment_claimable
-- The claimable jobs (claim's and claim_again's picked), before their order and limit:
-- those of the worker's priority window (SAQ's priorities; the whole integer range by
-- default). The head of a group is its first job whatever the window: a group whose head
-- is outside it waits for a worker whose window has it.
SELECT j.key FROM {{schema}}.jobs j
    WHERE j.queue = %(queue)s AND j.status = 'queued' AND j.due <= %(now)s
      AND j.priority BETWEEN %(lowest)s AND %(highest)s
      AND (j.group_key IS NULL OR (
          NOT EXISTS (
              SELECT 1 FROM {{schema}}.jobs r
              WHERE r.queue = j.queue AND r.group_key = j.group_key
                AND r.status IN ('active', 'aborting')
          )
          AND NOT EXISTS (
              SELECT 1 FROM {{schema}}.jobs h
              WHERE h.queue = j.queue AND h.group_key = j.group_key
                AND h.status = 'queued' AND h.due <= %(now)s
                AND (h.priority, h.ready_at, h.seq) < (j.priority, j.ready_at, j.seq)
          )
      ))

-- name: fragment_claim_picked
-- Make the picked jobs active, each under a new fencing token and the call's claim_id, and
-- create their runs. The picked rows are updated through the primary key (key = ANY of
-- their keys), not joined to jobs: with a join, the planner may read the whole queue and
-- hash it instead of looking the keys up (it does, with statistics, from some 5,000 to
-- 20,000 jobs, for a claim of 100). Run ids and tokens are taken in the update's order,
-- not in claim order.
claimed AS (
    UPDATE {{schema}}.jobs j SET
        status = 'active', attempts = j.attempts + 1, started_ms = %(now_ms)s,
        touched_ms = %(now_ms)s, worker_id = %(worker_id)s,
        run_id = nextval('{{schema}}.runs_id_seq'),
        token = nextval('{{schema}}.jobs_token_seq'), claim_id = %(claim_id)s,
        lease_until = %(lease_until)s, owner_present = %(present)s
    WHERE j.queue = %(queue)s AND j.key = ANY(ARRAY(SELECT key FROM picked))
    RETURNING j.key, j.payload::text AS payload, j.payload_raw, j.payload_bytes, j.status,
        j.attempts, j.started_ms, j.touched_ms, j.worker_id, j.run_id, j.token, j.function,
        j.priority, j.ready_at, j.seq
),
runs AS (
    INSERT INTO {{schema}}.runs (id, queue, key, function, attempt, worker_id, status,
        started_ms)
    SELECT run_id, %(queue)s, key, function, attempts, %(worker_id)s, 'running', %(now_ms)s
    FROM claimed
)

-- name: next_due
-- The earliest due time of a scheduled job, for wait_for_work (uses jobs_due_idx).
SELECT min(due) FROM {{schema}}.jobs
WHERE queue = %(queue)s AND status = 'queued' AND due > 0 AND due > %(now)s;

-- name: renew
-- Extend the leases that are still held (the job active or aborting under the lease's
-- token, checked again on the row's latest version when another statement changed it
-- meanwhile); returns each renewed lease's key and token, and whether its job is aborting.
-- A lease not returned is lost, and nothing of it was changed. owner_present: whether the
-- worker holds its presence lock now (see expire_dead_leases). key = ANY lets the scan of
-- the active jobs skip the others' rows (without it, a renewal of 10 leases among 1,000
-- active jobs took 1.2 ms instead of 0.5).
UPDATE {{schema}}.jobs j SET
    lease_until = %(lease_until)s, touched_ms = %(now_ms)s, owner_present = %(present)s
FROM unnest(%(keys)b::text[], %(tokens)b::bigint[]) AS l(key, token)
WHERE j.queue = %(queue)s AND j.key = ANY(%(keys)b::text[]) AND j.key = l.key
  AND j.token = l.token AND j.status IN ('active', 'aborting')
RETURNING j.key, j.token, j.status = 'aborting';

-- name: finish
-- Apply transitions and end their runs (see fragment_apply_transitions).
WITH
{{fragment_apply_transitions}};

-- name: finish_with_logs
-- Store log lines as append_logs does and apply transitions as finish does, in one
-- statement: one round trip and one transaction, so both are stored or neither. Run twice
-- (a retry after a lost connection), it stores each line once, as append_logs would.
WITH logged AS (
{{fragment_insert_logs}}
),
{{fragment_apply_transitions}};

-- name: fragment_apply_transitions
-- The statement of finish after its WITH: apply transitions and end their runs, one array
-- element each, numbered n from 1. A transition with a token is applied only while its job
-- is active or aborting under that token: the condition is part of the job's UPDATE or
-- DELETE, so it is checked on the row that is written (again on its latest version if
-- another statement changed it meanwhile), and its run is ended only when the job's row
-- was. Applying a transition clears the job's token. A queued job (a retry or a re-queue)
-- is ready at the call's time (now) at the earliest, so it sorts by the time it was
-- re-queued (see the enqueue query). Returns the numbers of the transitions applied, and
-- notifies once: "f" for finish waiters, plus "w" for workers when a job was re-queued or
-- a group was freed. A run is found by its id
-- (unique in the schema) and checked against its job's key, without a condition on the
-- queue: with one, a plan made while runs had no statistics read every run of the queue
-- (on a new queue, a finish of 10 took 9 ms once it had 3,000 runs).
input AS (
    SELECT * FROM unnest(
        %(keys)b::text[], %(payloads)b::text[], %(raws)b::bytea[], %(is_bytes)b::boolean[],
        %(statuses)b::text[], %(dues)b::float8[], %(expire_ats)b::float8[],
        %(removes)b::boolean[], %(run_ids)b::bigint[], %(run_statuses)b::text[],
        %(finished_ms)b::bigint[], %(details)b::bytea[], %(details_text)b::boolean[],
        %(errors)b::text[], %(tokens)b::bigint[]
    ) WITH ORDINALITY AS t(key, payload, raw, is_bytes, status, due, expire_at, remove,
        run_id, run_status, finished_ms, detail, detail_text, error, token, n)
),
deleted AS (
    DELETE FROM {{schema}}.jobs j USING input i
    WHERE i.remove AND j.queue = %(queue)s AND j.key = i.key
      AND (i.token IS NULL OR (j.token = i.token AND j.status IN ('active', 'aborting')))
    RETURNING j.group_key, i.status, i.n
),
updated AS (
    UPDATE {{schema}}.jobs j SET
        payload = i.payload::jsonb, payload_raw = i.raw, payload_bytes = i.is_bytes,
        status = i.status, lease_until = 0, token = NULL,
        due = CASE WHEN i.status = 'queued' THEN i.due ELSE j.due END,
        ready_at = CASE WHEN i.status = 'queued'
            THEN greatest(i.due, %(now)s) ELSE j.ready_at END,
        seq = CASE WHEN i.status = 'queued'
            THEN nextval('{{schema}}.jobs_seq_seq') ELSE j.seq END,
        worker_id = CASE WHEN i.status = 'queued' THEN NULL ELSE j.worker_id END,
        expire_at = CASE WHEN i.status = 'queued' THEN j.expire_at ELSE i.expire_at END
    FROM input i
    WHERE NOT i.remove AND j.queue = %(queue)s AND j.key = i.key
      AND (i.token IS NULL OR (j.token = i.token AND j.status IN ('active', 'aborting')))
    RETURNING j.group_key, i.status, i.n
),
changed AS (
    SELECT * FROM deleted UNION ALL SELECT * FROM updated
),
ended AS (
    UPDATE {{schema}}.runs r SET
        status = i.run_status, finished_ms = i.finished_ms, error = i.error,
        detail = i.detail, detail_text = i.detail_text
    FROM input i
    WHERE i.run_id IS NOT NULL AND r.id = i.run_id AND r.key = i.key
      AND (i.token IS NULL OR i.n IN (SELECT n FROM changed))
)
SELECT pg_notify(
    %(channel)s,
    CASE WHEN bool_or(c.status = 'queued' OR c.group_key IS NOT NULL) THEN 'fw:' ELSE 'f:' END
        || %(queue)s
), array_agg(c.n)
FROM changed c;

-- name: update
-- Store a new payload; notifies finish waiters. Returns a row when it was stored: when the
-- job exists and, with a token (fenced), is active or aborting under that token.
WITH updated AS (
    UPDATE {{schema}}.jobs SET
        payload = %(payload)s::jsonb, payload_raw = %(raw)s, payload_bytes = %(is_bytes)s,
        touched_ms = %(now_ms)s
    WHERE queue = %(queue)s AND key = %(key)s
      AND (NOT %(fenced)s OR (token = %(token)s AND status IN ('active', 'aborting')))
    RETURNING 1
)
SELECT pg_notify(%(channel)s, 'f:' || %(queue)s) FROM updated;

-- name: abort
-- queued -> aborted, active -> aborting (payload stored in both cases); returns the
-- status before, or no row when the job does not exist.
WITH before AS (
    SELECT key, status FROM {{schema}}.jobs
    WHERE queue = %(queue)s AND key = %(key)s
    FOR UPDATE
),
changed AS (
    UPDATE {{schema}}.jobs j SET
        status = CASE WHEN b.status = 'queued' THEN 'aborted' ELSE 'aborting' END,
        payload = %(payload)s::jsonb, payload_raw = %(raw)s, payload_bytes = %(is_bytes)s
    FROM before b
    WHERE j.queue = %(queue)s AND j.key = b.key AND b.status IN ('queued', 'active')
)
SELECT status FROM before;

-- name: recover
-- Take over jobs whose lease expired: status, attempts and run are kept; each gets a new
-- fencing token (the dead owner's stops working in the same step) and the call's claim_id.
-- Not idempotent, like claim: a connection lost while it ran is followed by recover_again.
WITH picked AS (
    {{fragment_expired}}
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
{{fragment_take_over}}
SELECT * FROM recovered;

-- name: recover_again
-- The recover after a connection lost while a recover ran: the jobs it took, found by its
-- claim_id, if it took any; else a recover as recover makes it.
WITH earlier AS (
    SELECT key, payload::text AS payload, payload_raw, payload_bytes, status, attempts,
        started_ms, touched_ms, worker_id, run_id, token
    FROM {{schema}}.jobs
    WHERE queue = %(queue)s AND status IN ('active', 'aborting')
      AND claim_id = %(claim_id)s AND worker_id = %(worker_id)s
),
picked AS (
    {{fragment_expired}}
      AND NOT EXISTS (SELECT 1 FROM earlier)
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
{{fragment_take_over}}
SELECT * FROM recovered UNION ALL SELECT * FROM earlier;

-- name: fragment_expired
-- The jobs whose lease expired (recover's and recover_again's picked), before their order.
SELECT key FROM {{schema}}.jobs
    WHERE queue = %(queue)s AND status IN ('active', 'aborting') AND lease_until < %(now)s

-- name: fragment_take_over
recovered AS (
    UPDATE {{schema}}.jobs j SET
        lease_until = %(lease_until)s, worker_id = %(worker_id)s,
        token = nextval('{{schema}}.jobs_token_seq'), claim_id = %(claim_id)s,
        owner_present = %(present)s
    FROM picked p
    WHERE j.queue = %(queue)s AND j.key = p.key
    RETURNING j.key, j.payload::text AS payload, j.payload_raw, j.payload_bytes, j.status,
        j.attempts, j.started_ms, j.touched_ms, j.worker_id, j.run_id, j.token
)

-- name: expire_dead_leases
-- End the leases whose owner is gone: set lease_until to 0, so that the next recover takes
-- them over (a renewal or a finish of the owner's still works until then). Gone means all
-- of: the lease is marked owner_present (the owner held its presence lock when it claimed,
-- recovered or renewed it last: see presence.py); nobody holds that lock now; the owner has
-- not renewed for silent_s seconds; and the caller's own presence session (pid) has lived
-- settled_s seconds, so that after a restart of the server, which ends every session at
-- once, live workers have connected and renewed again first. Returns how many leases it
-- ended.
-- pg_locks is read once: hashtext's int4 keys appear there as oids.
WITH locks AS MATERIALIZED (
    SELECT l.objid FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_catalog.pg_database
                        WHERE datname = current_database())
      AND l.classid = hashtext(%(namespace)s)::oid
),
ended AS (
    UPDATE {{schema}}.jobs j SET lease_until = 0
    WHERE j.queue = %(queue)s AND j.status IN ('active', 'aborting') AND j.owner_present
      AND j.lease_until >= %(now)s AND j.touched_ms < (%(now)s - %(silent_s)s) * 1000
      AND hashtext(j.worker_id)::oid NOT IN (SELECT objid FROM locks)
      AND EXISTS (
          SELECT 1 FROM pg_catalog.pg_stat_activity
          WHERE pid = %(pid)s
            AND backend_start < statement_timestamp() - make_interval(secs => %(settled_s)s)
      )
    RETURNING 1
)
SELECT count(*) FROM ended;

-- name: get
SELECT key, payload::text, payload_raw, payload_bytes, status, attempts, started_ms,
    touched_ms, worker_id, run_id
FROM {{schema}}.jobs
WHERE queue = %(queue)s AND key = ANY(%(keys)b::text[]);

-- name: list_jobs
-- One page of the jobs in the given statuses (each given once), newest first: the newest
-- offset + limit jobs of each status, read from jobs_status_idx, then merged. A table of
-- a million finished jobs costs a page no more than an empty one.
SELECT j.key, j.payload::text, j.payload_raw, j.payload_bytes, j.status, j.attempts,
    j.started_ms, j.touched_ms, j.worker_id, j.run_id
FROM unnest(%(statuses)b::text[]) AS s(status)
CROSS JOIN LATERAL (
    SELECT * FROM {{schema}}.jobs
    WHERE queue = %(queue)s AND status = s.status
    ORDER BY seq DESC
    LIMIT %(offset)s + %(limit)s
) AS j
ORDER BY j.seq DESC
OFFSET %(offset)s LIMIT %(limit)s;

-- name: count
-- Per status: how many, and how many are not due yet (for "scheduled").
SELECT status, count(*), count(*) FILTER (WHERE due > %(now)s)
FROM {{schema}}.jobs
WHERE queue = %(queue)s AND status = ANY(%(statuses)b::text[])
GROUP BY status;

-- name: expire
-- Delete a bounded batch of expired finished jobs (skipping rows locked by anyone), with
-- expired marks and dead worker records. Returns how many jobs were deleted.
WITH doomed AS (
    SELECT key FROM {{schema}}.jobs
    WHERE queue = %(queue)s AND status IN ('complete', 'failed', 'aborted')
      AND expire_at IS NOT NULL AND expire_at <= %(now)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM {{schema}}.jobs j USING doomed d
    WHERE j.queue = %(queue)s AND j.key = d.key
    RETURNING 1
),
old_marks AS (
    SELECT token FROM {{schema}}.marks
    WHERE queue = %(queue)s AND expire_at <= %(now)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
marks_deleted AS (
    DELETE FROM {{schema}}.marks m USING old_marks o
    WHERE m.queue = %(queue)s AND m.token = o.token
),
workers_deleted AS (
    DELETE FROM {{schema}}.workers WHERE queue = %(queue)s AND expire_at <= %(now)s
)
SELECT count(*) FROM deleted;

-- name: tables_without_statistics
-- Those of the given tables of the schema that were never analyzed (by ANALYZE or by
-- autovacuum, as pg_stat_user_tables tells; see statistics.py): for each, whether it holds
-- the given number of bytes, and whether this role may analyze it (its owner, a member of
-- the owner's role, or a superuser). Reads pg_class by its index and nothing else.
SELECT c.relname, pg_relation_size(c.oid) >= %(min_bytes)s, pg_has_role(c.relowner, 'USAGE')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = {{schema_name}} AND c.relname = ANY(%(tables)b::text[])
  AND pg_stat_get_last_analyze_time(c.oid) IS NULL
  AND pg_stat_get_last_autoanalyze_time(c.oid) IS NULL;

-- name: analyze_lock
-- Transaction-scoped, taken without waiting: one process analyzes the schema's tables, the
-- others skip. An ANALYZE that would wait for a table lock (a VACUUM or an index build
-- running) gives up after a second instead of holding a connection.
SELECT pg_try_advisory_xact_lock(hashtext('conveyor.analyze'), hashtext({{schema_name}})),
    set_config('lock_timeout', '1s', true);

-- name: analyze_jobs
ANALYZE {{schema}}.jobs;

-- name: analyze_runs
ANALYZE {{schema}}.runs;

-- name: put_worker
INSERT INTO {{schema}}.workers AS w (queue, worker_id, info, info_text, expire_at)
VALUES (%(queue)s, %(worker_id)s, %(info)s, %(info_text)s, %(expire_at)s)
ON CONFLICT (queue, worker_id) DO UPDATE SET
    info = excluded.info, info_text = excluded.info_text, expire_at = excluded.expire_at;

-- name: delete_worker
DELETE FROM {{schema}}.workers WHERE queue = %(queue)s AND worker_id = %(worker_id)s;

-- name: workers
SELECT worker_id, info, info_text FROM {{schema}}.workers
WHERE queue = %(queue)s AND expire_at > %(now)s;

-- name: list_runs
-- One page of runs, newest first, and the total that match: always at least one row (the
-- total), whose run columns are NULL when the page is empty.
WITH matching AS (
    SELECT id, key, function, attempt, worker_id, status, started_ms, finished_ms, error,
        detail, detail_text, external_id
    FROM {{schema}}.runs
    WHERE queue = %(queue)s
      AND (%(status)s::text IS NULL OR status = %(status)s::text)
      AND (%(function)s::text IS NULL OR function = %(function)s::text)
      AND (%(key)s::text IS NULL OR key = %(key)s::text)
      AND (%(since_ms)s::bigint IS NULL OR started_ms >= %(since_ms)s::bigint)
      AND (%(until_ms)s::bigint IS NULL OR started_ms < %(until_ms)s::bigint)
      AND (%(error)s::text IS NULL OR strpos(lower(error), lower(%(error)s::text)) > 0)
),
page AS (
    SELECT * FROM matching
    ORDER BY started_ms DESC, id DESC
    OFFSET %(offset)s LIMIT %(limit)s
)
SELECT (SELECT count(*) FROM matching), coalesce(page.external_id, page.id::text),
    page.key, page.function, page.attempt, page.worker_id, page.status, page.started_ms,
    page.finished_ms, page.error, page.detail, page.detail_text
FROM (SELECT 1) AS one LEFT JOIN page ON true
ORDER BY page.started_ms DESC, page.id DESC;

-- name: get_run
SELECT coalesce(external_id, id::text), key, function, attempt, worker_id, status,
    started_ms, finished_ms, error, detail, detail_text
FROM {{schema}}.runs
WHERE queue = %(queue)s AND (id = %(id)s OR external_id = %(run_id)s);

-- name: record_runs
-- Store runs created by another backend, then end runs, in one statement. A start ended in
-- the same call is inserted ended (the UPDATE sees only rows that existed before).
WITH s AS (
    SELECT * FROM unnest(
        %(s_ids)b::text[], %(s_keys)b::text[], %(s_functions)b::text[],
        %(s_attempts)b::integer[], %(s_workers)b::text[], %(s_statuses)b::text[],
        %(s_started)b::bigint[], %(s_finished)b::bigint[], %(s_errors)b::text[],
        %(s_details)b::bytea[], %(s_details_text)b::boolean[]
    ) AS t(run_id, key, function, attempt, worker_id, status, started_ms, finished_ms, error,
        detail, detail_text)
),
e AS (
    SELECT * FROM unnest(
        %(e_ids)b::text[], %(e_statuses)b::text[], %(e_finished)b::bigint[],
        %(e_errors)b::text[], %(e_details)b::bytea[], %(e_details_text)b::boolean[]
    ) AS t(run_id, status, finished_ms, error, detail, detail_text)
),
inserted AS (
    INSERT INTO {{schema}}.runs (queue, external_id, key, function, attempt, worker_id,
        status, started_ms, finished_ms, error, detail, detail_text)
    SELECT %(queue)s, s.run_id, s.key, s.function, s.attempt, s.worker_id,
        coalesce(e.status, s.status), s.started_ms, coalesce(e.finished_ms, s.finished_ms),
        CASE WHEN e.run_id IS NULL THEN s.error ELSE e.error END,
        coalesce(e.detail, s.detail), coalesce(e.detail_text, s.detail_text)
    FROM s LEFT JOIN e ON e.run_id = s.run_id
    ON CONFLICT (queue, external_id) WHERE external_id IS NOT NULL DO NOTHING
)
UPDATE {{schema}}.runs r SET
    status = e.status, finished_ms = e.finished_ms, error = e.error, detail = e.detail,
    detail_text = e.detail_text
FROM e
WHERE r.queue = %(queue)s AND r.external_id = e.run_id;

-- name: append_logs
{{fragment_insert_logs}};

-- name: fragment_insert_logs
-- Store log lines of any number of runs, one array element each; a line already stored
-- (same run and seq) is skipped.
INSERT INTO {{schema}}.logs (queue, run_id, seq, ts, level, message, extra, extra_text)
SELECT %(queue)s, t.* FROM unnest(
    %(log_run_ids)b::text[], %(seqs)b::bigint[], %(ts)b::float8[], %(levels)b::text[],
    %(messages)b::text[], %(extras)b::bytea[], %(extras_text)b::boolean[]
) AS t
ON CONFLICT DO NOTHING;

-- name: read_logs
SELECT run_id, seq, ts, level, message, extra, extra_text FROM {{schema}}.logs
WHERE queue = %(queue)s AND run_id = %(run_id)s AND seq > %(after_seq)s
ORDER BY seq
LIMIT %(limit)s;

-- name: purge_runs
-- Delete a bounded batch of finished runs started before a time, with their log lines.
WITH doomed AS (
    SELECT id, external_id FROM {{schema}}.runs
    WHERE queue = %(queue)s AND status <> 'running' AND started_ms < %(before_ms)s
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
deleted AS (
    DELETE FROM {{schema}}.runs r USING doomed d
    WHERE r.id = d.id
    RETURNING coalesce(r.external_id, r.id::text) AS public_id
),
logs_deleted AS (
    DELETE FROM {{schema}}.logs l USING deleted d
    WHERE l.queue = %(queue)s AND l.run_id = d.public_id
)
SELECT count(*) FROM deleted;
