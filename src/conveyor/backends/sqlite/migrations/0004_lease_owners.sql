-- Migration 4: the process holding each lease, so that the lease of a process that is gone
-- can be ended before it runs out (SQLiteBackend.expire_dead_leases; see owners.py).
--
-- One row per worker id and backend that claimed or recovered a job: the host it runs on
-- (host name, boot id, PID namespace), its pid and its start time (/proc/<pid>/stat, NULL
-- where unknown). AUTOINCREMENT: an id is never given to another process's row.
-- jobs.owner points at the row of the lease's holder; jobs claimed before this migration
-- have none, and their leases simply run out as before.
CREATE TABLE owners (
    owner_id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started INTEGER
);

CREATE INDEX owners_host ON owners (queue, host);

ALTER TABLE jobs ADD COLUMN owner INTEGER;
