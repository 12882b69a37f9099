-- Sync executions whose caller had gone (timed out or disconnected) before they ran or before
-- they finished (PostgreSQL). Kept until their retention runs out (by `created_at`); the
-- execution's id is the key.

CREATE TABLE abandoned_executions (
    execution_id TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    app_id       TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id    TEXT   COLLATE "C" NOT NULL,
    reason       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint)
);

-- Lists per app, newest first (execution ids are time-ordered).
CREATE INDEX abandoned_executions_app_id_idx ON abandoned_executions (app_id, execution_id);
-- The retention sweep.
CREATE INDEX abandoned_executions_created_at_idx ON abandoned_executions (created_at);
