-- 0004: fencing tokens, claim ids, presence marks, and due times for jobs due at once.
--
-- token: the fencing token of the job's current lease, drawn from jobs_token_seq by every
-- claim and every recovery (never reused); NULL while nobody holds the job. A write about
-- an attempt is applied only while the job is active or aborting under its token.
-- claim_id: a number the claiming client draws per claim or recover call, stored on the rows
-- that call took, so that a call whose reply was lost finds them instead of taking more.
-- owner_present: the lease's owner held its presence lock (see presence.py) when it took or
-- last renewed the lease, so that expire_dead_leases may end the lease once that lock is
-- gone (rows of before the migration are not marked: their leases end when they expire).
-- scheduled: the job was (re-)queued with a due time still to come. A job due at once is now
-- stored due at the time it was queued (it was 0), for the claim order; jobs_due_idx keeps
-- holding the scheduled jobs only.
--
-- Rows of before this migration keep working: a job claimed before the upgrade has no token,
-- so its lease can be neither renewed nor finished under a token; the lease expires and
-- recover gives the job a token (the job is recovered as a dead worker's would be). A queued
-- job stored before the upgrade may keep due = 0 ("at once", as enqueue stored it then): it
-- sorts before every job enqueued since, which were all enqueued later.
ALTER TABLE {{schema}}.jobs
    ADD COLUMN token bigint,
    ADD COLUMN claim_id bigint,
    ADD COLUMN scheduled boolean NOT NULL DEFAULT false,
    ADD COLUMN owner_present boolean NOT NULL DEFAULT false;
CREATE SEQUENCE {{schema}}.jobs_token_seq;
UPDATE {{schema}}.jobs SET scheduled = true WHERE status = 'queued' AND due > 0;
DROP INDEX {{schema}}.jobs_due_idx;
CREATE INDEX jobs_due_idx ON {{schema}}.jobs (queue, due)
    WHERE status = 'queued' AND scheduled;
