-- 0005: the overview counts a queue's runs of one status over a period (complete and
-- failed in the last 24 hours): from this index, the failed runs among a million complete
-- ones are found without reading the million, and the complete ones are counted from the
-- index alone once autovacuum has marked the pages all-visible. Built without
-- CONCURRENTLY (migrations run in a transaction): it blocks writes to runs while it builds,
-- some seconds for a million runs.
CREATE INDEX IF NOT EXISTS runs_status_idx ON {{schema}}.runs (queue, status, started_ms);
