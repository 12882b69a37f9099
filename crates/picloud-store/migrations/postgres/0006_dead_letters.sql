-- Dead letters (PostgreSQL): async jobs that failed every attempt, kept for replay or
-- resolution until their retention runs out (by `created_at`).
--
-- A dead letter is open while `resolved_at` is NULL; it is closed once, as 'replayed' (sent
-- through the outbox again), 'resolved' (by a person or a script) or 'handler_failed' (the app's
-- dead-letter handler failed on it; `handler_error` says how). `attempts` is how many attempts
-- the job had; `script_id` has no foreign key, so a dead letter outlives its script.

CREATE TABLE dead_letters (
    id            TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    app_id        TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id     TEXT   COLLATE "C" NOT NULL,
    execution_id  TEXT   COLLATE "C" NOT NULL,
    source_kind   TEXT   NOT NULL,
    mode          TEXT   NOT NULL CHECK (mode IN ('sync', 'async')),
    payload       JSONB  NOT NULL,
    error         TEXT   NOT NULL,
    attempts      BIGINT NOT NULL,
    trigger_depth BIGINT NOT NULL,
    created_at    BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    resolved_at   BIGINT NULL,
    resolution    TEXT   NULL CHECK (resolution IN ('replayed', 'resolved', 'handler_failed')),
    handler_error TEXT   NULL,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);

-- Lists per app, newest first (ids are time-ordered), and the count of open ones.
CREATE INDEX dead_letters_app_id_idx ON dead_letters (app_id, id);
CREATE INDEX dead_letters_unresolved_idx ON dead_letters (app_id, id) WHERE resolved_at IS NULL;
-- The retention sweep.
CREATE INDEX dead_letters_created_at_idx ON dead_letters (created_at);
