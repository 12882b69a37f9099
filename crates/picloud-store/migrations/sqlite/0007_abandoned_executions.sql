-- Sync executions whose caller had gone (timed out or disconnected) before they ran or before
-- they finished (SQLite). Kept until their retention runs out (by `created_at`); the execution's
-- id is the key.

CREATE TABLE abandoned_executions (
    execution_id TEXT    NOT NULL PRIMARY KEY,
    app_id       TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id    TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER))
);

-- Lists per app, newest first (execution ids are time-ordered).
CREATE INDEX abandoned_executions_app_id_idx ON abandoned_executions (app_id, execution_id);
-- The retention sweep.
CREATE INDEX abandoned_executions_created_at_idx ON abandoned_executions (created_at);
