-- Issue #16, documents (PostgreSQL; SQLite's 0013 is the same model): the per-app document
-- store, the field indexes people declare on it, and docs triggers.
--
-- docs: one row per document, keyed (app, collection, id). `data` is JSONB (a map, checked by
-- the store), with the changelog's GIN `jsonb_path_ops` index, which equality filters use
-- (`data @> …`). `size` and `version` work as kv_entries': the document counts against its
-- app's stored bytes (app_usage.kv_bytes) and carries the app's commit that last wrote it
-- (app_usage.kv_version), which a run's commit checks. An app's documents go with it.
CREATE TABLE docs (
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT   COLLATE "C" NOT NULL,
    id         TEXT   COLLATE "C" NOT NULL,
    data       JSONB  NOT NULL,
    size       BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, collection, id)
);

CREATE INDEX docs_data_idx ON docs USING GIN (data jsonb_path_ops);

-- Where a field's value sorts, as bytes compared bytewise, whatever the database's collation:
-- missing and null are NULL; a number is 0x01 and its float8 bits made to sort as unsigned
-- integers (positive: the sign bit set; negative: every bit flipped); a string 0x02 and its
-- UTF-8; false 0x03, true 0x04, an array 0x05, a map 0x06. The store encodes the values a
-- filter compares with the same way (`crate::docs`), and a declared index is a btree on it.
CREATE FUNCTION picloud_doc_key(v JSONB) RETURNS BYTEA
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN '\x01'::bytea || int8send(
            CASE WHEN bits >= 0 THEN bits + (-9223372036854775807 - 1) ELSE ~bits END)
        WHEN 'string' THEN '\x02'::bytea || convert_to(v #>> '{}', 'UTF8')
        WHEN 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN '\x04'::bytea ELSE '\x03'::bytea END
        WHEN 'array' THEN '\x05'::bytea
        WHEN 'object' THEN '\x06'::bytea
    END
    FROM (SELECT CASE WHEN jsonb_typeof(v) = 'number'
        THEN ('x' || encode(float8send(v::float8 + 0), 'hex'))::bit(64)::bigint END AS bits) AS n
$$;

-- The field paths an app declared indexes on, per collection. The index itself (`docs_path_…`)
-- is one per path for every app, made when the first app declares the path.
CREATE TABLE doc_indexes (
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    collection TEXT   COLLATE "C" NOT NULL,
    path       TEXT   COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    PRIMARY KEY (app_id, collection, path)
);

ALTER TABLE triggers DROP CONSTRAINT triggers_kind_check;
ALTER TABLE triggers ADD CONSTRAINT triggers_kind_check
    CHECK (kind IN ('kv', 'docs', 'dead_letter'));

-- Changes to one collection's documents: `ops` as kv_trigger_details' ('create', 'update',
-- 'delete', comma-separated); `fields`, when set, the field paths (comma-separated) one of
-- which a change must touch.
CREATE TABLE docs_trigger_details (
    trigger_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES triggers (id) ON DELETE CASCADE,
    collection TEXT COLLATE "C" NOT NULL,
    ops        TEXT NOT NULL,
    fields     TEXT NULL
);

CREATE INDEX docs_trigger_details_collection_idx ON docs_trigger_details (collection);
