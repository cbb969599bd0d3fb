-- The current Conveyor schema, as the numbered migrations build it.
--
-- {{schema}} stands for the configured schema (a quoted identifier). A test applies this
-- file and the migrations into two schemas and checks that they give the same tables,
-- columns and indexes: change both together.

-- Jobs: one row per (queue, key). The payload is JSONB when the serializer wrote JSON
-- text (so operators can query it), else raw bytes in payload_raw; payload_bytes
-- remembers whether the caller gave bytes, so that the same type comes back. due is when
-- a queued job becomes claimable (0: at once); ready_at, its place in the claim order: its
-- due time, or for a job (re-)queued to run at once the time it was queued, so that it
-- sorts after a retry or a scheduled job that became due before it. token is the fencing
-- token of the current lease (see jobs_token_seq); claim_id, the number of the claim or
-- recover call that took the job last (see the claim_again query); owner_present, whether
-- its owner held its presence lock when it took or renewed the lease (see the
-- expire_dead_leases query).
CREATE TABLE {{schema}}.jobs (
    queue text NOT NULL,
    key text NOT NULL,
    function text NOT NULL,
    payload jsonb,
    payload_raw bytea,
    payload_bytes boolean NOT NULL DEFAULT false,
    status text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    due double precision NOT NULL DEFAULT 0,
    group_key text,
    attempts integer NOT NULL DEFAULT 0,
    started_ms bigint NOT NULL DEFAULT 0,
    touched_ms bigint NOT NULL DEFAULT 0,
    worker_id text,
    run_id bigint,
    lease_until double precision NOT NULL DEFAULT 0,
    expire_at double precision,
    seq bigserial NOT NULL,
    token bigint,
    claim_id bigint,
    owner_present boolean NOT NULL DEFAULT false,
    ready_at double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, key),
    CONSTRAINT jobs_one_payload CHECK ((payload IS NULL) <> (payload_raw IS NULL)),
    CONSTRAINT jobs_status CHECK (
        status IN ('queued', 'active', 'aborting', 'complete', 'failed', 'aborted')
    )
);

-- Fencing tokens: every claim and recovery takes the next one for the lease it gives, so a
-- token is never reused (jobs.token holds the current lease's; NULL while nobody holds it).
CREATE SEQUENCE {{schema}}.jobs_token_seq;

-- Claiming: the next queued jobs in (priority, ready_at, insertion) order. Partial, so a
-- million finished rows cost nothing here. due comes last so that claim's due <= now is
-- checked in the index: without it, the plan cache's generic plan (which takes a third of
-- the jobs for due) expected three times the heap reads, and every claim was planned again.
CREATE INDEX jobs_claim_idx ON {{schema}}.jobs (queue, priority, ready_at, seq, due)
    WHERE status = 'queued';
-- The earliest future due time (wait_for_work); jobs due at once (due = 0) stay out.
CREATE INDEX jobs_due_idx ON {{schema}}.jobs (queue, due)
    WHERE status = 'queued' AND due > 0;
-- The head of each group: only a group's first claimable job may be claimed.
CREATE INDEX jobs_group_head_idx
    ON {{schema}}.jobs (queue, group_key, priority, ready_at, seq, due)
    WHERE status = 'queued' AND group_key IS NOT NULL;
-- At most one running job per group, enforced by the database itself.
CREATE UNIQUE INDEX jobs_group_running_idx ON {{schema}}.jobs (queue, group_key)
    WHERE status IN ('active', 'aborting') AND group_key IS NOT NULL;
-- Recovering expired leases.
CREATE INDEX jobs_lease_idx ON {{schema}}.jobs (queue, lease_until)
    WHERE status IN ('active', 'aborting');
-- Expiring finished jobs.
CREATE INDEX jobs_expire_idx ON {{schema}}.jobs (queue, expire_at)
    WHERE status IN ('complete', 'failed', 'aborted') AND expire_at IS NOT NULL;
-- Listing (newest first, one status at a time, merged) and counting.
CREATE INDEX jobs_status_idx ON {{schema}}.jobs (queue, status, seq);

-- Set-once tokens (a cron slot is enqueued once by any number of workers).
CREATE TABLE {{schema}}.marks (
    queue text NOT NULL,
    token text NOT NULL,
    expire_at double precision NOT NULL,
    PRIMARY KEY (queue, token)
);

-- One row per attempt; the id is exposed as a string.
CREATE TABLE {{schema}}.runs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    key text NOT NULL,
    function text NOT NULL,
    attempt integer NOT NULL,
    worker_id text,
    status text NOT NULL,
    started_ms bigint NOT NULL,
    finished_ms bigint NOT NULL DEFAULT 0,
    error text,
    detail bytea NOT NULL DEFAULT '',
    detail_text boolean NOT NULL DEFAULT false,
    external_id text
);

CREATE UNIQUE INDEX runs_external_idx ON {{schema}}.runs (queue, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX runs_list_idx ON {{schema}}.runs (queue, started_ms, id);
CREATE INDEX runs_key_idx ON {{schema}}.runs (queue, key);
-- Counting runs of one status over a period (the overview's complete and failed totals).
CREATE INDEX runs_status_idx ON {{schema}}.runs (queue, status, started_ms);

-- Captured log lines of runs.
CREATE TABLE {{schema}}.logs (
    queue text NOT NULL,
    run_id text NOT NULL,
    seq bigint NOT NULL,
    ts double precision NOT NULL,
    level text NOT NULL,
    message text NOT NULL,
    extra bytea NOT NULL DEFAULT '',
    extra_text boolean NOT NULL DEFAULT false,
    PRIMARY KEY (queue, run_id, seq)
);

-- Live workers; a record whose expire_at has passed is dead.
CREATE TABLE {{schema}}.workers (
    queue text NOT NULL,
    worker_id text NOT NULL,
    info bytea NOT NULL,
    info_text boolean NOT NULL DEFAULT false,
    expire_at double precision NOT NULL,
    PRIMARY KEY (queue, worker_id)
);
