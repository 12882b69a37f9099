-- Issue #13, per-app quotas (PostgreSQL; the same as SQLite's 0010): the bytes an app's KV
-- entries take and the async jobs it has queued, counted as they change so that a write checks
-- them in O(1).
--
-- kv_entries.size: what the entry counts against its app's stored-bytes quota, set by every
-- write: the bytes of its collection name, key and value (JSON text), plus 64 for what the
-- database keeps beside them (a row and its index entry), so that a flood of tiny entries is
-- counted too.
--
-- app_usage: what an app's own writes change — its KV bytes (the sum of its entries' sizes)
-- and the async jobs they enqueued (KV triggers, replays). A data write updates its app's row in
-- the write's transaction.
--
-- app_job_counts: the rest of the count of an app's queued jobs, kept by the outbox's own
-- writes — async jobs recorded by the platform (async requests, dead-letter handlers) and every
-- async job that left the outbox (finished, dead-lettered, skipped). Kept apart from app_usage
-- so that the outbox's group commits, which serve every app, never wait for the row lock an
-- app's data writes hold until they commit (PostgreSQL).
--
-- An app's queued jobs = app_usage.jobs_enqueued + app_job_counts.recorded
--                        - app_job_counts.removed
-- (its async outbox rows, pending or running). Both rows are created with the app and go with
-- it.

ALTER TABLE kv_entries ADD COLUMN size BIGINT NOT NULL DEFAULT 0;

-- A value is JSONB here: an entry written before counts its value as PostgreSQL prints it.
UPDATE kv_entries SET size = octet_length(collection) + octet_length(key)
    + octet_length(value::text) + 64;

CREATE TABLE app_usage (
    app_id        TEXT   COLLATE "C" NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    kv_bytes      BIGINT NOT NULL DEFAULT 0,
    jobs_enqueued BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE app_job_counts (
    app_id   TEXT   COLLATE "C" NOT NULL PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    recorded BIGINT NOT NULL DEFAULT 0,
    removed  BIGINT NOT NULL DEFAULT 0
);

INSERT INTO app_usage (app_id, kv_bytes)
SELECT apps.id, COALESCE((SELECT SUM(size) FROM kv_entries WHERE kv_entries.app_id = apps.id), 0)
FROM apps;

INSERT INTO app_job_counts (app_id, recorded)
SELECT apps.id,
       (SELECT COUNT(*) FROM outbox WHERE outbox.app_id = apps.id AND outbox.mode = 'async')
FROM apps;
