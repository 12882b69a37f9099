-- Issue #18: execution records are kept in batches, one row per app and write (the records
-- thread writes every 200 ms), instead of one row per record. At 20 k sync requests a second a
-- row per record cost the records thread an insert and, once the app held its cap, a delete
-- each: `hello` at 32 connections −10 % (bench/RESULTS.md). A batch row costs that once per
-- write.
--
-- A batch holds the records of one app written together whose ids (time-ordered, see
-- `RecordId::of`) lie within a second of its first: an attempt of an old execution gets a batch
-- of its own, so `first_id`..`last_id` stays narrow. `body` is the records as a JSON array,
-- oldest first (at most 4,096 records or about 1 MiB). `failures` counts records whose outcome
-- is not `ok`, so a list of errors skips batches without any. Retention deletes whole batches:
-- by age when the newest record is old enough, by count when newer batches hold the app's cap.
--
-- The records of earlier builds of this unreleased version are not carried over.
DROP TABLE executions;

-- A rowid table, unlike the outbox: a batch's body runs to overflow pages, and a seek in a
-- table WITHOUT ROWID reads a whole overflowing row to compare its key (with one, the records
-- thread spent a third of its time reading batches back). Here the key is in the index, and a
-- row's leading columns in its first page.
CREATE TABLE execution_batches (
    app_id   TEXT   NOT NULL,
    last_id  TEXT   NOT NULL,
    first_id TEXT   NOT NULL,
    records  BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    body     TEXT   NOT NULL,
    UNIQUE (app_id, last_id)
);
