-- 0004: fencing tokens and claim ids.
--
-- token: the fencing token of the job's current lease, drawn from jobs_token_seq by every
-- claim and every recovery (never reused); NULL while nobody holds the job. A write about
-- an attempt is applied only while the job is active or aborting under its token.
-- claim_id: a number the claiming client draws per claim or recover call, stored on the rows
-- that call took, so that a call whose reply was lost finds them instead of taking more.
--
-- Rows of before this migration keep working: a job claimed before the upgrade has no token,
-- so its lease can be neither renewed nor finished under a token; the lease expires and
-- recover gives the job a token (the job is recovered as a dead worker's would be). A queued
-- job stored before the upgrade may keep due = 0 ("at once", as enqueue stored it then): it
-- sorts before every job enqueued since, which were all enqueued later.
ALTER TABLE {{schema}}.jobs ADD COLUMN token bigint, ADD COLUMN claim_id bigint;
CREATE SEQUENCE {{schema}}.jobs_token_seq;
