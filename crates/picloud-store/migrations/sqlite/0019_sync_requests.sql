-- Issue #19: sync requests leave the outbox for a table of their own (see PostgreSQL's 0019,
-- where the reason is: a dead row per request in the table async jobs are claimed from). SQLite
-- reuses a deleted row's space at once, so it needs no rotation: one table, keyed by the id,
-- and the lapsed leases found by their index.

CREATE TABLE sync_requests (
    id          TEXT    NOT NULL PRIMARY KEY,
    app_id      TEXT    NOT NULL,
    script_id   TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    lease_until INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sync_requests_lease_until_idx ON sync_requests (lease_until);

-- Sync rows still in the outbox belonged to requests served by a server before this one. (The
-- outbox's check on `mode` stays as 0008 made it: SQLite cannot change a check in place.)
INSERT OR IGNORE INTO abandoned_executions (execution_id, app_id, script_id, reason)
SELECT id, app_id, script_id, 'the server was upgraded while it ran; the caller''s connection ended with it'
FROM outbox WHERE mode = 'sync';
DELETE FROM outbox WHERE mode = 'sync';
