-- 0002: runs stored for another backend (record_runs) keep the text id it gave them.
ALTER TABLE {{schema}}.runs ADD COLUMN external_id text;
CREATE UNIQUE INDEX runs_external_idx ON {{schema}}.runs (queue, external_id)
    WHERE external_id IS NOT NULL;
