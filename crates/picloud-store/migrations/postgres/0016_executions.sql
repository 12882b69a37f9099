-- Issue #18, observability: one record per execution attempt — sync request, async attempt,
-- trigger handler, dead-letter handler, test run — with its outcome and its log lines (a JSON
-- array, already capped by the executor). Written by the outbox's group commit after the run;
-- a record of an app deleted meanwhile is not written. Swept by age and by count per app.
CREATE TABLE executions (
    id           TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    execution_id TEXT   COLLATE "C" NOT NULL,
    attempt      BIGINT NOT NULL,
    app_id       TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
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
    CONSTRAINT executions_attempt_key UNIQUE (execution_id, attempt)
);
CREATE INDEX executions_app_idx ON executions (app_id, id);
CREATE INDEX executions_started_idx ON executions (started_at);
