-- Issue #18: execution records are kept in batches, one row per app and write (the records
-- thread writes every 200 ms), instead of one row per record. At 20 k sync requests a second a
-- row per record cost an insert, a delete once the app held its cap, and a dead tuple each for
-- vacuum to find: `hello` at 32 connections −13.7 % (bench/RESULTS.md). A batch row costs that
-- once per write.
--
-- A batch holds the records of one app written together whose ids (time-ordered, see
-- `RecordId::of`) lie within a second of its first: an attempt of an old execution gets a batch
-- of its own, so `first_id`..`last_id` stays narrow. `body` is the records as a JSON array,
-- oldest first (at most 4,096 records or about 1 MiB), stored out of line uncompressed
-- (`EXTERNAL`): compressing a megabyte every 200 ms is CPU the requests need more. `failures`
-- counts records whose outcome is not `ok`, so a list of errors skips batches without any.
-- Retention deletes whole batches: by age when the newest record is old enough, by count when
-- newer batches hold the app's cap.
--
-- The records of earlier builds of this unreleased version are not carried over.
DROP TABLE executions;

CREATE TABLE execution_batches (
    app_id   TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    last_id  TEXT   COLLATE "C" NOT NULL,
    first_id TEXT   COLLATE "C" NOT NULL,
    records  BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    body     TEXT   NOT NULL,
    PRIMARY KEY (app_id, last_id)
);
ALTER TABLE execution_batches ALTER COLUMN body SET STORAGE EXTERNAL;
