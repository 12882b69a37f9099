-- The per-app key-value store (SQLite).
-- A value is the JSON text of what a script stored (at most 1 MiB, checked by the store). Keys
-- compare with SQLite's default BINARY collation, so lists come back in byte order. An app's
-- entries go with it.

CREATE TABLE kv_entries (
    app_id     TEXT    NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER)),
    updated_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (app_id, collection, key)
);
