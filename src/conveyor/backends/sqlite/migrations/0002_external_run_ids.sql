-- Migration 2: run records stored for another backend (record_runs) keep the text id that
-- backend gave them in external_id; the backend's own runs keep their integer run_id.
ALTER TABLE runs ADD COLUMN external_id TEXT;

CREATE UNIQUE INDEX runs_external ON runs (queue, external_id) WHERE external_id IS NOT NULL;
