-- The outbox (SQLite) keyed by its id alone: a table WITHOUT ROWID keeps each row in the
-- primary key's b-tree, where a rowid table keeps it in its own b-tree and the id in a second
-- one. Every sync request inserts a row and deletes it soon after, so this is one b-tree fewer
-- to change, and fewer pages to write to the WAL, per row (the figures are in bench/RESULTS.md's
-- history). Columns, checks and indexes are those of 0005.

CREATE TABLE outbox_keyed (
    id            TEXT    NOT NULL PRIMARY KEY,
    app_id        TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id     TEXT    NOT NULL,
    mode          TEXT    NOT NULL CHECK (mode IN ('sync', 'async')),
    source_kind   TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    trigger_depth INTEGER NOT NULL DEFAULT 0,
    attempt       INTEGER NOT NULL DEFAULT 0,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'running')),
    owner         TEXT    NULL,
    lease_until   INTEGER NULL,
    due_at        INTEGER NOT NULL,
    last_error    TEXT    NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER))
) WITHOUT ROWID;

INSERT INTO outbox_keyed (id, app_id, script_id, mode, source_kind, payload, trigger_depth,
                          attempt, status, owner, lease_until, due_at, last_error, created_at)
SELECT id, app_id, script_id, mode, source_kind, payload, trigger_depth,
       attempt, status, owner, lease_until, due_at, last_error, created_at
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_keyed RENAME TO outbox;

CREATE INDEX outbox_pending_due_at_idx ON outbox (due_at) WHERE status = 'pending';
CREATE INDEX outbox_running_lease_until_idx ON outbox (lease_until) WHERE status = 'running';
