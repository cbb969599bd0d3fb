-- 0004: fencing tokens, claim ids, presence marks, and the claim order by due time.
--
-- token: the fencing token of the job's current lease, drawn from jobs_token_seq by every
-- claim and every recovery (never reused); NULL while nobody holds the job. A write about
-- an attempt is applied only while the job is active or aborting under its token.
-- claim_id: a number the claiming client draws per claim or recover call, stored on the rows
-- that call took, so that a call whose reply was lost finds them instead of taking more.
-- owner_present: the lease's owner held its presence lock (see presence.py) when it took or
-- last renewed the lease, so that expire_dead_leases may end the lease once that lock is
-- gone (rows of before the migration are not marked: their leases end when they expire).
-- ready_at: the job's place in the claim order (its due time, or the time it was queued
-- when due at once); the claim indexes order by it instead of due.
--
-- Rows of before this migration keep working: a job claimed before the upgrade has no token,
-- so its lease can be neither renewed nor finished under a token; the lease expires and
-- recover gives the job a token (the job is recovered as a dead worker's would be). A queued
-- job due at once keeps ready_at = 0 (its enqueue time is not known): it sorts before every
-- job enqueued since, which were all enqueued later.
ALTER TABLE {{schema}}.jobs
    ADD COLUMN token bigint,
    ADD COLUMN claim_id bigint,
    ADD COLUMN owner_present boolean NOT NULL DEFAULT false,
    ADD COLUMN ready_at double precision NOT NULL DEFAULT 0;
CREATE SEQUENCE {{schema}}.jobs_token_seq;
UPDATE {{schema}}.jobs SET ready_at = due WHERE status = 'queued' AND due > 0;
DROP INDEX {{schema}}.jobs_claim_idx;
CREATE INDEX jobs_claim_idx ON {{schema}}.jobs (queue, priority, ready_at, seq, due)
    WHERE status = 'queued';
DROP INDEX {{schema}}.jobs_group_head_idx;
CREATE INDEX jobs_group_head_idx
    ON {{schema}}.jobs (queue, group_key, priority, ready_at, seq, due)
    WHERE status = 'queued' AND group_key IS NOT NULL;
