-- The outbox (PostgreSQL): every execution is a row here until it finished, was dead-lettered
-- or was abandoned. The row's id is the execution's id.
--
-- - `pending`: waits until `due_at`; `attempt` counts the claims so far (0: never claimed).
-- - `running`: claimed by `owner` until `lease_until`; a live owner extends the lease, an expired
--   one is claimed again (attempt + 1). Completion writes name (id, attempt), so a worker whose
--   lease was taken over cannot touch the newer attempt.
-- - `mode`: 'sync' (an HTTP caller waits; inserted already running by the node that serves it)
--   or 'async' (retried, then dead-lettered).
-- - `source_kind`: 'http', 'kv' or 'dead_letter', as `payload` (a JobPayload as JSON) says.
-- - `script_id` has no foreign key: a job whose script was deleted meanwhile fails with a
--   sentence and is dead-lettered like any other failure.
--
-- Rows are inserted, updated and deleted all the time: autovacuum visits this table far more
-- often than the default (20 % dead rows) would, so claims do not wade through dead tuples.

CREATE TABLE outbox (
    id            TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    app_id        TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id     TEXT   COLLATE "C" NOT NULL,
    mode          TEXT   NOT NULL CHECK (mode IN ('sync', 'async')),
    source_kind   TEXT   NOT NULL,
    payload       JSONB  NOT NULL,
    trigger_depth BIGINT NOT NULL DEFAULT 0,
    attempt       BIGINT NOT NULL DEFAULT 0,
    status        TEXT   NOT NULL CHECK (status IN ('pending', 'running')),
    owner         TEXT   NULL,
    lease_until   BIGINT NULL,
    due_at        BIGINT NOT NULL,
    last_error    TEXT   NULL,
    created_at    BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint)
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);

-- What a claim looks for: pending rows by due time, running rows by lease expiry.
CREATE INDEX outbox_pending_due_at_idx ON outbox (due_at) WHERE status = 'pending';
CREATE INDEX outbox_running_lease_until_idx ON outbox (lease_until) WHERE status = 'running';
