-- Issue #18, observability: one record per execution attempt — sync request, async attempt,
-- trigger handler, dead-letter handler, test run — with its outcome and its log lines (a JSON
-- array, already capped by the executor). On SQLite the records live in a database file of
-- their own beside the main one (`picloud-executions.db` beside `picloud.db`), with migrations
-- of their own (this directory): their writer thread never takes the main file's write lock,
-- which the outbox's group commits hold. So there is no `apps` table to refer to: the sweep
-- deletes the records of an app that is gone. Swept by age and by count per app.
--
-- One structure, because every sync request writes one: rows are clustered by (app_id, id),
-- and a record's id is its execution's id with the attempt in the last 16 bits
-- (`RecordId::of`). Ids are time-ordered, so a record lands at the end of its app's range,
-- lists of an app read a range, sweeps delete the oldest of a range, and an execution's
-- attempts are one range of ids (found per app, without an index of their own: a unique index
-- on (execution_id, attempt) cost `hello` 5 µs of CPU a request, bench/RESULTS.md).
CREATE TABLE executions (
    id           TEXT   NOT NULL,
    execution_id TEXT   NOT NULL,
    attempt      BIGINT NOT NULL,
    app_id       TEXT   NOT NULL,
    script_id    TEXT   NOT NULL,
    source       TEXT   NOT NULL,
    summary      TEXT   NOT NULL,
    outcome      TEXT   NOT NULL,
    status       BIGINT,
    error        TEXT,
    error_line   BIGINT,
    error_column BIGINT,
    runs         BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    duration_us  BIGINT NOT NULL,
    logs         TEXT   NOT NULL,
    PRIMARY KEY (app_id, id)
) WITHOUT ROWID;
