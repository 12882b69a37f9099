-- The per-app key-value store (PostgreSQL).
-- A value is JSONB (at most 1 MiB of JSON text, checked by the store). Keys are in the "C"
-- collation, so they compare and sort by their bytes, as on SQLite. An app's entries go with it.

CREATE TABLE kv_entries (
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT   COLLATE "C" NOT NULL,
    key        TEXT   COLLATE "C" NOT NULL,
    value      JSONB  NOT NULL,
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    updated_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    PRIMARY KEY (app_id, collection, key)
);
