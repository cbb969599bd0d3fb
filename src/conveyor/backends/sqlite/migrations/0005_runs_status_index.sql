-- Migration 5: the overview counts a queue's runs of one status over a period (complete
-- and failed in the last 24 hours) from this index alone, without reading each run's row.
CREATE INDEX IF NOT EXISTS runs_status ON runs (queue, status, started_ms);
