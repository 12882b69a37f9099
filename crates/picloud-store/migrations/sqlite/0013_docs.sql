-- Issue #16, documents (SQLite; PostgreSQL's 0013 is the same model): the per-app document
-- store, the field indexes people declare on it, and docs triggers.
--
-- docs: one row per document, keyed (app, collection, id). `data` is the JSON text of a map
-- (checked by the store). `size` and `version` work as kv_entries': the document counts against
-- its app's stored bytes (app_usage.kv_bytes) and carries the app's commit that last wrote it
-- (app_usage.kv_version), which a run's commit checks. An app's documents go with it.
--
-- A filter compares a field through one expression per field path (`crate::docs` in the store
-- writes it): missing and null are NULL, numbers REAL, strings TEXT, and booleans, arrays and
-- maps one-byte BLOBs, so that SQLite's own order of values (NULL, numbers, TEXT, BLOB) is the
-- documented order. An index declared on a path (doc_indexes) is an index on that expression.

CREATE TABLE docs (
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    version    BIGINT  NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, collection, id)
);

-- The field paths an app declared indexes on, per collection. The index itself (`docs_path_…`)
-- is one per path for every app, made when the first app declares the path.
CREATE TABLE doc_indexes (
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (app_id, collection, path)
);

-- triggers.kind gains 'docs'. SQLite changes a CHECK only by building the table again; its
-- detail tables are built again beside it (they point at it), and renamed into place after it.
CREATE TABLE triggers_next (
    id         TEXT    NOT NULL PRIMARY KEY,
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id  TEXT    NOT NULL REFERENCES scripts (id) ON DELETE RESTRICT,
    kind       TEXT    NOT NULL CHECK (kind IN ('kv', 'docs', 'dead_letter')),
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER))
);
INSERT INTO triggers_next (id, app_id, script_id, kind, created_at)
SELECT id, app_id, script_id, kind, created_at FROM triggers;

CREATE TABLE kv_trigger_details_next (
    trigger_id TEXT NOT NULL PRIMARY KEY REFERENCES triggers_next (id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    key_prefix TEXT NULL,
    ops        TEXT NOT NULL
);
INSERT INTO kv_trigger_details_next (trigger_id, collection, key_prefix, ops)
SELECT trigger_id, collection, key_prefix, ops FROM kv_trigger_details;

CREATE TABLE dead_letter_trigger_details_next (
    trigger_id TEXT NOT NULL PRIMARY KEY REFERENCES triggers_next (id) ON DELETE CASCADE
);
INSERT INTO dead_letter_trigger_details_next (trigger_id)
SELECT trigger_id FROM dead_letter_trigger_details;

DROP TABLE kv_trigger_details;
DROP TABLE dead_letter_trigger_details;
DROP TABLE triggers;
ALTER TABLE triggers_next RENAME TO triggers;
ALTER TABLE kv_trigger_details_next RENAME TO kv_trigger_details;
ALTER TABLE dead_letter_trigger_details_next RENAME TO dead_letter_trigger_details;

CREATE INDEX triggers_app_id_idx ON triggers (app_id);
CREATE INDEX triggers_script_id_idx ON triggers (script_id);
CREATE INDEX kv_trigger_details_collection_idx ON kv_trigger_details (collection);

-- Changes to one collection's documents: `ops` as kv_trigger_details' ('create', 'update',
-- 'delete', comma-separated); `fields`, when set, the field paths (comma-separated) one of
-- which a change must touch.
CREATE TABLE docs_trigger_details (
    trigger_id TEXT NOT NULL PRIMARY KEY REFERENCES triggers (id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    ops        TEXT NOT NULL,
    fields     TEXT NULL
);

CREATE INDEX docs_trigger_details_collection_idx ON docs_trigger_details (collection);
