-- Apps, scripts, routes, users and sessions (PostgreSQL).
-- Ids are UUID strings made by the application (version 7, so they sort by creation time), kept
-- as TEXT like on SQLite, in the "C" collation so that text order is byte order (lists page by
-- id) whatever the database's default collation. Timestamps are BIGINT milliseconds since the epoch from the database's
-- clock; the defaults below use the same expression as the store's queries. Unique constraints
-- are named: the store recognises them by name to say which rule refused a write.

CREATE TABLE apps (
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    slug       TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    updated_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    CONSTRAINT apps_slug_key UNIQUE (slug)
);

CREATE TABLE scripts (
    id         TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name       TEXT   NOT NULL,
    kind       TEXT   NOT NULL DEFAULT 'endpoint' CHECK (kind IN ('endpoint', 'module')),
    source     TEXT   NOT NULL,
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    updated_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    CONSTRAINT scripts_app_id_name_key UNIQUE (app_id, name)
);

CREATE INDEX scripts_app_id_kind_idx ON scripts (app_id, kind);

-- A script that routes point at cannot be deleted (the store says so first, with a count);
-- deleting the app removes its routes and scripts together.
CREATE TABLE routes (
    id            TEXT   COLLATE "C" NOT NULL PRIMARY KEY,
    app_id        TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    script_id     TEXT   COLLATE "C" NOT NULL REFERENCES scripts (id) ON DELETE RESTRICT,
    method        TEXT   NOT NULL,
    path          TEXT   NOT NULL,
    dispatch_mode TEXT   NOT NULL DEFAULT 'sync' CHECK (dispatch_mode IN ('sync', 'async')),
    created_at    BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    CONSTRAINT routes_app_id_method_path_key UNIQUE (app_id, method, path)
);

CREATE INDEX routes_script_id_idx ON routes (script_id);

CREATE TABLE users (
    id                TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    username          TEXT    NOT NULL,
    password_hash     TEXT    NOT NULL,
    is_instance_admin BOOLEAN NOT NULL DEFAULT FALSE,
    disabled          BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        BIGINT  NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    CONSTRAINT users_username_key UNIQUE (username)
);

-- A session is stored under the SHA-256 of its token, never the token itself.
CREATE TABLE sessions (
    token_hash BYTEA  NOT NULL PRIMARY KEY,
    user_id    TEXT   COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
