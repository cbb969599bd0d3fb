-- 0003: listing reads jobs_status_idx one status at a time, so (queue, seq) goes: one index
-- fewer to write on every insert and every status change.
DROP INDEX IF EXISTS {{schema}}.jobs_list_idx;
