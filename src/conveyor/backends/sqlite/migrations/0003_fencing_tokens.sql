-- Migration 3: fencing tokens. A claimed or recovered job holds the token of its lease;
-- every write about the attempt carries it and is refused unless it still matches.
--
-- Existing rows keep working: a job that was active before the upgrade has no token (NULL),
-- so no token a worker presents matches it. Its worker can neither renew nor finish it under
-- a token; its lease expires and recover gives it a token. That costs the job one more
-- attempt at most, never a lost job or a write by two owners.
--
-- Claim order becomes (priority, order_due, seq): order_due is the later of due and the
-- time the job was enqueued or re-queued, so that a retry or a scheduled job that became
-- due is not overtaken by jobs enqueued after that. Queued rows written before this
-- migration get order_due = due, which is 0 for a job due at once: they sort first within
-- their priority, which is where their age puts them anyway (they were all enqueued before
-- any row written after the upgrade).
ALTER TABLE jobs ADD COLUMN token INTEGER;

ALTER TABLE jobs ADD COLUMN order_due REAL NOT NULL DEFAULT 0;

UPDATE jobs SET order_due = due WHERE status = 'queued';

DROP INDEX jobs_claim;

CREATE INDEX jobs_claim ON jobs (queue, priority, order_due, seq) WHERE status = 'queued';
