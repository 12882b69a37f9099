-- Per-app memberships and API keys (PostgreSQL).

-- A user's role on an app; deleting either removes the membership.
CREATE TABLE memberships (
    app_id     TEXT   COLLATE "C" NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    user_id    TEXT   COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT   NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    created_at BIGINT NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    PRIMARY KEY (app_id, user_id)
);

CREATE INDEX memberships_user_id_idx ON memberships (user_id);

-- An API key is found by its visible prefix; its secret is kept only as a SHA-256.
-- `scopes` is the space-separated list of scope names. A key bound to an app dies with it.
CREATE TABLE api_keys (
    id           TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    user_id      TEXT    COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    secret_hash  BYTEA   NOT NULL,
    scopes       TEXT    NOT NULL,
    app_id       TEXT    COLLATE "C" NULL REFERENCES apps (id) ON DELETE CASCADE,
    expires_at   BIGINT  NULL,
    last_used_at BIGINT  NULL,
    created_at   BIGINT  NOT NULL DEFAULT ((extract(epoch from clock_timestamp()) * 1000)::bigint),
    revoked      BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix)
);

CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);
