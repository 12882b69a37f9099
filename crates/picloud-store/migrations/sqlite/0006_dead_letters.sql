-- Dead letters (SQLite): async jobs that failed every attempt, kept for replay or resolution
-- until their retention runs out (by `created_at`).
--
-- A dead letter is open while `resolved_at` is NULL; it is closed once, as 'replayed' (sent
-- through the outbox again), 'resolved' (by a person or a script) or 'handler_failed' (the app's
-- dead-letter handler failed on it; `handler_error` says how). `attempts` is how many attempts
-- the job had; `script_id` has no foreign key, so a dead letter outlives its script.

CREATE TABLE dead_letters (
    id            TEXT    NOT NULL PRIMARY KEY,
    app_id        TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id     TEXT    NOT NULL,
    execution_id  TEXT    NOT NULL,
    source_kind   TEXT    NOT NULL,
    mode          TEXT    NOT NULL CHECK (mode IN ('sync', 'async')),
    payload       TEXT    NOT NULL,
    error         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    trigger_depth INTEGER NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER)),
    resolved_at   INTEGER NULL,
    resolution    TEXT    NULL CHECK (resolution IN ('replayed', 'resolved', 'handler_failed')),
    handler_error TEXT    NULL,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);

-- Lists per app, newest first (ids are time-ordered), and the count of open ones.
CREATE INDEX dead_letters_app_id_idx ON dead_letters (app_id, id);
CREATE INDEX dead_letters_unresolved_idx ON dead_letters (app_id, id) WHERE resolved_at IS NULL;
-- The retention sweep.
CREATE INDEX dead_letters_created_at_idx ON dead_letters (created_at);
