-- Triggers (PostgreSQL): a parent row per trigger, and the details of its kind in a table of
-- their own. Like a route, a trigger keeps its script from being deleted (the store says so
-- first, with a count); deleting the app removes its triggers with its scripts.

CREATE TABLE triggers (
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id  TEXT   COLLATE "C" NOT NULL REFERENCES scripts (id) ON DELETE RESTRICT,
    kind       TEXT   NOT NULL CHECK (kind IN ('kv', 'dead_letter')),
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint)
);

CREATE INDEX triggers_app_id_idx ON triggers (app_id);
CREATE INDEX triggers_script_id_idx ON triggers (script_id);

-- Writes to one collection, optionally only keys starting with `key_prefix`; `ops` lists the
-- operations, comma-separated ('set', 'delete' or 'set,delete').
CREATE TABLE kv_trigger_details (
    trigger_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES triggers (id) ON DELETE CASCADE,
    collection TEXT COLLATE "C" NOT NULL,
    key_prefix TEXT COLLATE "C" NULL,
    ops        TEXT NOT NULL
);

CREATE INDEX kv_trigger_details_collection_idx ON kv_trigger_details (collection);

-- Any job of the app that is dead-lettered; nothing more to say yet.
CREATE TABLE dead_letter_trigger_details (
    trigger_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES triggers (id) ON DELETE CASCADE
);
