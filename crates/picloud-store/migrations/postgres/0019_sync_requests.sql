-- Issue #19: sync requests leave the outbox. Each sync request inserted an outbox row and deleted
-- it a moment later; under load the table that async jobs are claimed from carried hundreds of
-- thousands of dead rows between autovacuum's visits, and its plans went wrong with them
-- (bench/RESULTS.md, "PostgreSQL's slow state"). A sync request's record now lives here: what an
-- abandoned-execution record needs (its ids) and who holds it until when.
--
-- Two partitions, written one at a time (`sync_rotation.slot`). A sweep (every few seconds, one
-- at a time across nodes) empties the other by TRUNCATE — after moving its requests still held
-- into the written one and recording its lapsed ones (their node died) as abandoned — and makes
-- it the written one. Dead rows never outlive two sweeps and are never vacuumed: autovacuum is
-- off for the partitions.
--
-- No foreign key to `apps`: its check would read and lock the app's row for every request. A
-- request of an app deleted meanwhile is inserted by no one (the insert joins `apps`) and
-- recorded abandoned by no one (the same join); the rotation drops it.

CREATE TABLE sync_requests (
    slot        SMALLINT NOT NULL,
    id          TEXT     COLLATE "C" NOT NULL,
    app_id      TEXT     COLLATE "C" NOT NULL,
    script_id   TEXT     COLLATE "C" NOT NULL,
    owner       TEXT     NOT NULL,
    lease_until BIGINT   NOT NULL,
    PRIMARY KEY (id, slot)
) PARTITION BY LIST (slot);

CREATE TABLE sync_requests_0 PARTITION OF sync_requests FOR VALUES IN (0)
    WITH (autovacuum_enabled = false);
CREATE TABLE sync_requests_1 PARTITION OF sync_requests FOR VALUES IN (1)
    WITH (autovacuum_enabled = false);

-- The partition written now, and when the last rotation was (by the database's clock, in ms).
CREATE TABLE sync_rotation (
    only_row   BOOLEAN  NOT NULL PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    slot       SMALLINT NOT NULL CHECK (slot IN (0, 1)),
    rotated_at BIGINT   NOT NULL
);
INSERT INTO sync_rotation (slot, rotated_at)
VALUES (0, (extract(epoch from clock_timestamp()) * 1000)::bigint);

-- Sync rows still in the outbox belonged to requests served by a server before this one.
INSERT INTO abandoned_executions (execution_id, app_id, script_id, reason)
SELECT id, app_id, script_id, 'the server was upgraded while it ran; the caller''s connection ended with it'
FROM outbox WHERE mode = 'sync'
ON CONFLICT (execution_id) DO NOTHING;
DELETE FROM outbox WHERE mode = 'sync';
ALTER TABLE outbox DROP CONSTRAINT outbox_mode_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_mode_check CHECK (mode = 'async');
