//! The SQL text of the store: column lists for `concat!`, and the statements of the bodies that
//! are written once, each a [`Sql`] in both dialects (see [`crate::db`]). Lists take the id to
//! start after (newest-first lists: the id to stop before) and the number of rows to fetch (see
//! [`crate::paging::Window`]). What only one backend runs lives in its module.

use crate::db::{dialects, Sql};

/// The columns of [`AppRow`], for `concat!`.
macro_rules! app_columns {
    () => {
        "id, slug, name, expose_errors, created_at, updated_at"
    };
}
/// The columns of [`ScriptRow`], for `concat!`.
macro_rules! script_columns {
    () => {
        "id, app_id, name, kind, source, created_at, updated_at"
    };
}
/// The columns of [`RouteRow`], for `concat!`.
macro_rules! route_columns {
    () => {
        "id, app_id, script_id, method, path, dispatch_mode, keep_headers, created_at"
    };
}
/// The columns of [`UserRow`], for `concat!`.
macro_rules! user_columns {
    () => {
        "id, username, is_instance_admin, disabled, created_at"
    };
}
/// The columns of [`ApiKeyRow`], for `concat!`.
macro_rules! api_key_columns {
    () => {
        "id, user_id, name, prefix, scopes, app_id, expires_at, last_used_at, created_at, revoked"
    };
}
/// The columns of [`TriggerRow`]: a trigger with its KV or docs details (NULL for other kinds),
/// from [`trigger_tables`], for `concat!`.
macro_rules! trigger_columns {
    () => {
        "triggers.id, triggers.app_id, triggers.script_id, triggers.kind, triggers.created_at, \
         COALESCE(kv_trigger_details.collection, docs_trigger_details.collection) AS collection, \
         kv_trigger_details.key_prefix, \
         COALESCE(kv_trigger_details.ops, docs_trigger_details.ops) AS ops, \
         docs_trigger_details.fields"
    };
}
/// The tables of [`trigger_columns`], for `concat!`.
macro_rules! trigger_tables {
    () => {
        " FROM triggers \
         LEFT JOIN kv_trigger_details ON kv_trigger_details.trigger_id = triggers.id \
         LEFT JOIN docs_trigger_details ON docs_trigger_details.trigger_id = triggers.id "
    };
}
/// The columns of [`JobRow`], for `concat!`. The payload is read as text on both backends
/// (JSONB on PostgreSQL).
macro_rules! job_columns {
    () => {
        "id, app_id, script_id, mode, source_kind, CAST(payload AS TEXT) AS payload, \
         trigger_depth, attempt, due_at, created_at"
    };
}
/// The columns of [`DeadLetterRow`], for `concat!`.
macro_rules! dead_letter_columns {
    () => {
        "id, app_id, script_id, execution_id, source_kind, CAST(payload AS TEXT) AS payload, \
         error, attempts, trigger_depth, created_at, resolved_at, resolution"
    };
}
/// The columns of [`AbandonedRow`], for `concat!`.
macro_rules! abandoned_columns {
    () => {
        "execution_id, app_id, script_id, reason, created_at"
    };
}
/// The columns of the `job` rows that [`crate::jobs::insert_jobs`] builds from
/// [`crate::jobs::JobValues`], in the order it binds them.
macro_rules! job_value_columns {
    () => {
        "id, app_id, script_id, source_kind, payload, trigger_depth"
    };
}
/// The KV triggers of the app `$1` on the collection `$2`, for `concat!`.
macro_rules! kv_triggers_sql {
    () => {
        "SELECT triggers.script_id, kv_trigger_details.key_prefix, kv_trigger_details.ops \
         FROM triggers JOIN kv_trigger_details ON kv_trigger_details.trigger_id = triggers.id \
         WHERE triggers.app_id = $1 AND kv_trigger_details.collection = $2 \
         ORDER BY triggers.id"
    };
}
/// What the app `$1` holds against its quotas ([`UsageRow`]), for `concat!` (PostgreSQL adds
/// `FOR UPDATE` when a write is to follow: it locks the app's `app_usage` row alone).
macro_rules! app_usage_sql {
    () => {
        "SELECT app_usage.kv_bytes, app_usage.jobs_enqueued + \
         (SELECT recorded - removed FROM app_job_counts WHERE app_job_counts.app_id = $1) \
         AS queued_jobs, app_usage.kv_version \
         FROM app_usage WHERE app_usage.app_id = $1"
    };
}
/// The head of a claim, for `concat!`: common table expressions ending in
/// `fair (id, turn, due_at)`, the due `pending` jobs the claimer may take, to be taken by turn,
/// then due time, then id (see [`crate::OutboxStore::claim_jobs`]). The arguments are the join
/// of the seek of a walk's next job (its head and its tail, around the seek's conditions; it
/// must name the job's row `outbox`, with its `id` and `due_at`), a query of the `(app_id,
/// jobs)` pairs the claimer runs now, from the JSON object `$5` (see
/// [`crate::jobs::running_jobs`]), and the backend's clock; `$4` is the most jobs of one app the
/// claimer may run at once.
///
/// - `walk` takes each app's due jobs in the order they fell due, at most `$4` of them, one
///   index seek each from the one before (`(due_at, id) >` the previous): a claim costs the
///   apps times `$4` seeks however long any app's backlog is.
/// - An app's n-th job gets the turn n + the jobs the claimer runs of it already; turns from
///   `$4` on are not taken (the app's share is full), the others go in turn order, and within a
///   turn the job that fell due first goes first.
macro_rules! fair_due_jobs {
    (($seek:expr, $seek_end:expr), $running:literal, $($clock:tt)+) => {
        concat!(
            "WITH RECURSIVE walk (app_id, id, due_at, turn) AS (",
            "SELECT apps.id, outbox.id, outbox.due_at, CAST(0 AS BIGINT) FROM apps ",
            $seek,
            "WHERE queued.app_id = apps.id AND queued.status = 'pending' AND queued.due_at <= ",
            $($clock)+,
            " ORDER BY queued.due_at, queued.id",
            $seek_end,
            "UNION ALL ",
            "SELECT walk.app_id, outbox.id, outbox.due_at, walk.turn + 1 FROM walk ",
            $seek,
            "WHERE queued.app_id = walk.app_id AND queued.status = 'pending' AND queued.due_at <= ",
            $($clock)+,
            " AND (queued.due_at, queued.id) > (walk.due_at, walk.id) ",
            "ORDER BY queued.due_at, queued.id",
            $seek_end,
            "WHERE walk.turn + 1 < $4), ",
            "running (app_id, jobs) AS (",
            $running,
            "), ",
            "fair (id, turn, due_at) AS (SELECT walk.id, walk.turn + COALESCE(running.jobs, 0), ",
            "walk.due_at FROM walk LEFT JOIN running ON running.app_id = walk.app_id ",
            "WHERE walk.turn + COALESCE(running.jobs, 0) < $4)"
        )
    };
}

pub const GET_APP: Sql<'static> = dialects!("SELECT ", app_columns!(), " FROM apps WHERE id = $1");
pub const GET_APP_BY_SLUG: Sql<'static> =
    dialects!("SELECT ", app_columns!(), " FROM apps WHERE slug = $1");
pub const LIST_APPS: Sql<'static> = dialects!(
    "SELECT ",
    app_columns!(),
    " FROM apps WHERE id > $1 ORDER BY id LIMIT $2"
);
pub const DELETE_APP: Sql<'static> = Sql::same("DELETE FROM apps WHERE id = $1");

pub const GET_SCRIPT: Sql<'static> =
    dialects!("SELECT ", script_columns!(), " FROM scripts WHERE id = $1");
pub const LIST_SCRIPTS: Sql<'static> = dialects!(
    "SELECT ",
    script_columns!(),
    " FROM scripts WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3"
);
pub const DELETE_SCRIPT: Sql<'static> = Sql::same("DELETE FROM scripts WHERE id = $1");

/// The module script `$2` of the app `$1`.
pub const GET_MODULE: Sql<'static> = dialects!(
    "SELECT ",
    script_columns!(),
    " FROM scripts WHERE app_id = $1 AND name = $2 AND kind = 'module'"
);
/// The module scripts of the app `$1` (of every app when NULL) with their versions: app_id,
/// name, id, updated_at.
pub const MODULE_VERSIONS: Sql<'static> = Sql::same(
    "\
    SELECT app_id, name, id, updated_at FROM scripts \
    WHERE kind = 'module' AND ($1 IS NULL OR app_id = $1) ORDER BY app_id, name",
);
/// Forgets the imports of the script `$1`, before its new ones are written.
pub const CLEAR_IMPORTS: Sql<'static> =
    Sql::same("DELETE FROM script_imports WHERE importer_id = $1");
/// Records that the script `$1` of the app `$2` imports the module named `$3`; no row when the
/// app has no such module.
pub const INSERT_IMPORT: Sql<'static> = Sql::same(
    "\
    INSERT INTO script_imports (importer_id, imported_id) \
    SELECT $1, id FROM scripts WHERE app_id = $2 AND name = $3 AND kind = 'module' AND id <> $1",
);
/// The scripts the script `$1` imports (id, name), by name.
pub const IMPORTS_OF: Sql<'static> = Sql::same(
    "\
    SELECT scripts.id, scripts.name FROM script_imports \
    JOIN scripts ON scripts.id = script_imports.imported_id \
    WHERE script_imports.importer_id = $1 ORDER BY scripts.name",
);
/// The scripts that import the script `$1` (id, name), by name.
pub const IMPORTERS_OF: Sql<'static> = Sql::same(
    "\
    SELECT scripts.id, scripts.name FROM script_imports \
    JOIN scripts ON scripts.id = script_imports.importer_id \
    WHERE script_imports.imported_id = $1 ORDER BY scripts.name",
);
/// Every import in the app `$1`, by names: importer, imported.
pub const IMPORT_GRAPH: Sql<'static> = Sql::same(
    "\
    SELECT importer.name, imported.name FROM script_imports \
    JOIN scripts AS importer ON importer.id = script_imports.importer_id \
    JOIN scripts AS imported ON imported.id = script_imports.imported_id \
    WHERE importer.app_id = $1",
);

pub const GET_ROUTE: Sql<'static> =
    dialects!("SELECT ", route_columns!(), " FROM routes WHERE id = $1");
pub const LIST_ROUTES: Sql<'static> = dialects!(
    "SELECT ",
    route_columns!(),
    " FROM routes WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3"
);
pub const LIST_ROUTES_OF_SCRIPT: Sql<'static> = dialects!(
    "SELECT ",
    route_columns!(),
    " FROM routes WHERE script_id = $1 ORDER BY id"
);
pub const DELETE_ROUTE: Sql<'static> = Sql::same("DELETE FROM routes WHERE id = $1");
/// Every route (of the app `$1`, or of all apps when `$1` is NULL) with its app's slug and
/// error setting and its script's current version, in creation order.
pub const ROUTING_ENTRIES: Sql<'static> = Sql::same("\
    SELECT routes.id, routes.app_id, routes.script_id, routes.method, routes.path, \
           routes.dispatch_mode, routes.keep_headers, routes.created_at, \
           apps.slug AS app_slug, apps.expose_errors AS app_expose_errors, scripts.name AS script_name, scripts.kind AS script_kind, \
           scripts.updated_at AS script_updated_at, scripts.source AS script_source \
    FROM routes \
    JOIN apps ON apps.id = routes.app_id \
    JOIN scripts ON scripts.id = routes.script_id \
    WHERE $1 IS NULL OR routes.app_id = $1 \
    ORDER BY routes.id");

pub const GET_USER: Sql<'static> =
    dialects!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
pub const USER_CREDENTIALS: Sql<'static> = dialects!(
    "SELECT ",
    user_columns!(),
    ", password_hash FROM users WHERE username = $1"
);
pub const COUNT_USERS: Sql<'static> = Sql::same("SELECT COUNT(*) FROM users");
pub const SET_USER_DISABLED: Sql<'static> = dialects!(
    "UPDATE users SET disabled = $2 WHERE id = $1 RETURNING ",
    user_columns!()
);

pub const DELETE_SESSION: Sql<'static> = Sql::same("DELETE FROM sessions WHERE token_hash = $1");
pub const DELETE_SESSIONS_OF_USER: Sql<'static> =
    Sql::same("DELETE FROM sessions WHERE user_id = $1");

pub const LIST_USERS: Sql<'static> = dialects!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE id > $1 ORDER BY id LIMIT $2"
);
pub const SET_PASSWORD: Sql<'static> = dialects!(
    "UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING ",
    user_columns!()
);
pub const SET_INSTANCE_ADMIN: Sql<'static> = dialects!(
    "UPDATE users SET is_instance_admin = $2 WHERE id = $1 RETURNING ",
    user_columns!()
);
pub const DELETE_USER: Sql<'static> = Sql::same("DELETE FROM users WHERE id = $1");

/// Inserts or replaces a membership when both the app and the user exist (no row otherwise).
pub const UPSERT_MEMBERSHIP: Sql<'static> = Sql::same(
    "\
    INSERT INTO memberships (app_id, user_id, role) \
    SELECT apps.id, users.id, $3 FROM apps, users WHERE apps.id = $1 AND users.id = $2 \
    ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role \
    RETURNING app_id",
);
pub const GET_MEMBERSHIP: Sql<'static> = Sql::same(
    "\
    SELECT memberships.app_id, memberships.user_id, users.username, memberships.role, \
           memberships.created_at \
    FROM memberships JOIN users ON users.id = memberships.user_id \
    WHERE memberships.app_id = $1 AND memberships.user_id = $2",
);
pub const LIST_MEMBERS: Sql<'static> = Sql::same(
    "\
    SELECT memberships.app_id, memberships.user_id, users.username, memberships.role, \
           memberships.created_at \
    FROM memberships JOIN users ON users.id = memberships.user_id \
    WHERE memberships.app_id = $1 ORDER BY users.username",
);
pub const MEMBERSHIPS_OF_USER: Sql<'static> =
    Sql::same("SELECT app_id, role FROM memberships WHERE user_id = $1 ORDER BY app_id");
pub const DELETE_MEMBERSHIP: Sql<'static> =
    Sql::same("DELETE FROM memberships WHERE app_id = $1 AND user_id = $2");
pub const APP_EXISTS: Sql<'static> = Sql::same("SELECT COUNT(*) FROM apps WHERE id = $1");

/// Inserts a key when its user (and its app, when bound) exist; no row otherwise.
pub const INSERT_API_KEY: Sql<'static> = dialects!(
    "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, scopes, app_id, expires_at) ",
    "SELECT $1, users.id, $3, $4, $5, $6, $7, $8 FROM users WHERE users.id = $2 ",
    "AND ($7 IS NULL OR EXISTS (SELECT 1 FROM apps WHERE apps.id = $7)) ",
    "RETURNING ",
    api_key_columns!()
);
pub const USER_EXISTS: Sql<'static> = Sql::same("SELECT COUNT(*) FROM users WHERE id = $1");
pub const GET_API_KEY: Sql<'static> = dialects!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys WHERE id = $1"
);
pub const LIST_API_KEYS: Sql<'static> = dialects!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys WHERE $1 IS NULL OR user_id = $1 ORDER BY id"
);
pub const REVOKE_API_KEY: Sql<'static> =
    Sql::same("UPDATE api_keys SET revoked = TRUE WHERE id = $1 AND revoked = FALSE");

/// What `delete_script` must refuse for: the routes and the triggers pointing at `$1`.
pub const COUNT_TARGETS_OF_SCRIPT: Sql<'static> = Sql::same(
    "\
    SELECT (SELECT COUNT(*) FROM routes WHERE script_id = $1), \
           (SELECT COUNT(*) FROM triggers WHERE script_id = $1)",
);
/// See [`RouteStore::routing_fingerprint`](crate::RouteStore::routing_fingerprint) and
/// [`super::FingerprintRow`].
pub const ROUTING_FINGERPRINT: Sql<'static> = Sql::same(
    "\
    SELECT (SELECT COUNT(*) FROM apps) AS apps, \
           (SELECT COALESCE(MAX(id), '') FROM apps) AS last_app, \
           (SELECT CAST(COALESCE(SUM(updated_at - created_at), 0) AS BIGINT) FROM apps) \
               AS app_versions, \
           (SELECT COUNT(*) FROM routes) AS routes, \
           (SELECT COALESCE(MAX(id), '') FROM routes) AS last_route, \
           (SELECT CAST(COALESCE(SUM(updated_at - created_at), 0) AS BIGINT) FROM scripts) \
               AS script_versions, \
           (SELECT COUNT(*) FROM scripts) AS scripts, \
           (SELECT COALESCE(MAX(id), '') FROM scripts) AS last_script",
);

/// The rows that count an app's usage, made with the app.
pub const INSERT_APP_USAGE: Sql<'static> = Sql::same("INSERT INTO app_usage (app_id) VALUES ($1)");
pub const INSERT_APP_JOB_COUNTS: Sql<'static> =
    Sql::same("INSERT INTO app_job_counts (app_id) VALUES ($1)");
pub const APP_USAGE: Sql<'static> = dialects!(app_usage_sql!());
/// Counts what data writes of the app `$1` changed: `$2` KV bytes (negative: freed), `$3` jobs
/// enqueued (negative: its own async jobs they finished) and `$4` commits that wrote its KV
/// (its commit sequence, `kv_version`).
pub const COUNT_WRITE: Sql<'static> = Sql::same(
    "UPDATE app_usage \
    SET kv_bytes = kv_bytes + $2, jobs_enqueued = jobs_enqueued + $3, \
    kv_version = kv_version + $4 WHERE app_id = $1",
);
/// Counts the async jobs of the app `$1` that the outbox's own writes recorded (`$2`) and
/// removed (`$3`).
pub const COUNT_JOBS: Sql<'static> = Sql::same(
    "UPDATE app_job_counts \
    SET recorded = recorded + $2, removed = removed + $3 WHERE app_id = $1",
);

/// The entry's value (JSON text) and version.
pub const GET_KV: Sql<'static> = Sql::same(
    "SELECT CAST(value AS TEXT), version FROM kv_entries \
    WHERE app_id = $1 AND collection = $2 AND key = $3",
);
/// The entry's version.
pub const KV_VERSION: Sql<'static> =
    Sql::same("SELECT version FROM kv_entries WHERE app_id = $1 AND collection = $2 AND key = $3");
/// What a run's write to the entry replaces: its value, size and version.
pub const KV_BEFORE_WRITE: Sql<'static> = Sql::same(
    "SELECT CAST(value AS TEXT), size, version FROM kv_entries \
    WHERE app_id = $1 AND collection = $2 AND key = $3",
);
/// Stores `$4` (JSON text) of size `$5` at version `$6` under the key `($1, $2, $3)`.
pub const UPSERT_KV: Sql<'static> = dialects!(
    "INSERT INTO kv_entries (app_id, collection, key, value, size, version, created_at, ",
    "updated_at) VALUES ($1, $2, $3, $4",
    jsonb!(),
    ", $5, $6, ",
    clock!(),
    ", ",
    clock!(),
    ") ON CONFLICT (app_id, collection, key) DO UPDATE SET value = excluded.value, ",
    "size = excluded.size, version = excluded.version, ",
    "updated_at = ",
    greatest!(),
    "(excluded.updated_at, kv_entries.updated_at)"
);
/// Deletes an entry.
pub const DELETE_KV: Sql<'static> =
    Sql::same("DELETE FROM kv_entries WHERE app_id = $1 AND collection = $2 AND key = $3");
/// The document's data (JSON text), times and version.
pub const GET_DOC: Sql<'static> = Sql::same(
    "SELECT CAST(data AS TEXT), created_at, updated_at, version FROM docs \
    WHERE app_id = $1 AND collection = $2 AND id = $3",
);
/// The document's version.
pub const DOC_VERSION: Sql<'static> =
    Sql::same("SELECT version FROM docs WHERE app_id = $1 AND collection = $2 AND id = $3");
/// What a run's write to the document replaces: its data, size and version.
pub const DOC_BEFORE_WRITE: Sql<'static> = Sql::same(
    "SELECT CAST(data AS TEXT), size, version FROM docs \
    WHERE app_id = $1 AND collection = $2 AND id = $3",
);
/// Stores the document `($1, $2, $3)`: data `$4` (JSON text) of size `$5` at version `$6`,
/// created at `$7` (kept when it exists) and updated at `$8`.
pub const UPSERT_DOC: Sql<'static> = dialects!(
    "INSERT INTO docs (app_id, collection, id, data, size, version, created_at, updated_at) ",
    "VALUES ($1, $2, $3, $4",
    jsonb!(),
    ", $5, $6, $7, $8) ON CONFLICT (app_id, collection, id) DO UPDATE SET ",
    "data = excluded.data, size = excluded.size, version = excluded.version, ",
    "updated_at = excluded.updated_at"
);
/// The version of the app `$1`'s collection `$2` of documents: the commit that last wrote one.
pub const DOC_COLLECTION_VERSION: Sql<'static> =
    Sql::same("SELECT version FROM doc_collections WHERE app_id = $1 AND collection = $2");
/// Sets the version `$3` of the app `$1`'s collection `$2` of documents.
pub const SET_DOC_COLLECTION_VERSION: Sql<'static> = Sql::same(
    "INSERT INTO doc_collections (app_id, collection, version) VALUES ($1, $2, $3) \
    ON CONFLICT (app_id, collection) DO UPDATE SET version = excluded.version",
);
/// Deletes a document.
pub const DELETE_DOC: Sql<'static> =
    Sql::same("DELETE FROM docs WHERE app_id = $1 AND collection = $2 AND id = $3");
/// A page of the collection's documents by id: after `$3`, `$4` of them.
pub const LIST_DOCS: Sql<'static> = Sql::same(
    "SELECT id, CAST(data AS TEXT), created_at, updated_at, version FROM docs \
    WHERE app_id = $1 AND collection = $2 AND id > $3 ORDER BY id LIMIT $4",
);
/// [`LIST_DOCS`] with the versions only: a run's commit checking the page it read.
pub const LIST_DOC_VERSIONS: Sql<'static> = Sql::same(
    "SELECT id, version FROM docs \
    WHERE app_id = $1 AND collection = $2 AND id > $3 ORDER BY id LIMIT $4",
);
/// The docs triggers of the app `$1` on the collection `$2`.
pub const DOCS_TRIGGERS: Sql<'static> = Sql::same(
    "SELECT triggers.script_id, docs_trigger_details.ops, docs_trigger_details.fields \
    FROM triggers JOIN docs_trigger_details ON docs_trigger_details.trigger_id = triggers.id \
    WHERE triggers.app_id = $1 AND docs_trigger_details.collection = $2 ORDER BY triggers.id",
);
pub const INSERT_DOCS_TRIGGER_DETAILS: Sql<'static> = Sql::same(
    "INSERT INTO docs_trigger_details (trigger_id, collection, ops, fields) \
    VALUES ($1, $2, $3, $4)",
);
/// Declares the path `$3` indexed in the app `$1`'s collection `$2` while the app declares fewer
/// than `$4` indexes; nothing when it is declared already or the app has `$4`.
pub const DECLARE_DOC_INDEX: Sql<'static> = Sql::same(
    "INSERT INTO doc_indexes (app_id, collection, path) \
    SELECT $1, $2, $3 WHERE (SELECT COUNT(*) FROM doc_indexes WHERE app_id = $1) < $4 \
    ON CONFLICT (app_id, collection, path) DO NOTHING",
);
/// Withdraws the app `$1`'s declaration of the path `$3` in its collection `$2`.
pub const UNDECLARE_DOC_INDEX: Sql<'static> =
    Sql::same("DELETE FROM doc_indexes WHERE app_id = $1 AND collection = $2 AND path = $3");
/// Whether any app still declares the path `$1`.
pub const DOC_INDEX_DECLARED: Sql<'static> =
    Sql::same("SELECT COUNT(*) FROM doc_indexes WHERE path = $1");
/// The paths the app `$1` declared indexed in its collection `$2`, with when.
pub const DOC_INDEXES: Sql<'static> = Sql::same(
    "SELECT path, created_at FROM doc_indexes WHERE app_id = $1 AND collection = $2 ORDER BY path",
);
/// The app and resolution of the dead letter `$1`, its row locked on PostgreSQL: a concurrent
/// replay or resolve waits, then finds it closed.
pub const LOCK_DEAD_LETTER: Sql<'static> = dialects!(
    "SELECT app_id, resolution FROM dead_letters WHERE id = $1",
    for_update!()
);
/// Closes the dead letter `$1` with the resolution `$2` unless it is closed already.
pub const CLOSE_DEAD_LETTER: Sql<'static> = dialects!(
    "UPDATE dead_letters SET resolution = $2, resolved_at = ",
    now!(),
    " WHERE id = $1 AND resolved_at IS NULL"
);
/// A row (1) while the outbox row of the attempt (`$1` id, `$2` attempt) is held, locked on
/// PostgreSQL: none once the row moved on.
pub const LOCK_ATTEMPT: Sql<'static> = dialects!(
    "SELECT CAST(1 AS BIGINT) FROM outbox WHERE id = $1 AND attempt = $2",
    for_update!()
);
pub const DELETE_ATTEMPT: Sql<'static> =
    Sql::same("DELETE FROM outbox WHERE id = $1 AND attempt = $2");
/// The KV triggers of the app `$1` on the collection `$2`; the store matches the key prefix
/// and the operation.
pub const KV_TRIGGERS: Sql<'static> = dialects!(kv_triggers_sql!());
/// The scripts of the dead-letter triggers of the app `$1`.
pub const DEAD_LETTER_TRIGGER_SCRIPTS: Sql<'static> = Sql::same(
    "\
    SELECT triggers.script_id \
    FROM triggers \
    JOIN dead_letter_trigger_details ON dead_letter_trigger_details.trigger_id = triggers.id \
    WHERE triggers.app_id = $1 ORDER BY triggers.id",
);

pub const INSERT_KV_TRIGGER_DETAILS: Sql<'static> = Sql::same(
    "INSERT INTO kv_trigger_details \
    (trigger_id, collection, key_prefix, ops) VALUES ($1, $2, $3, $4)",
);
pub const INSERT_DEAD_LETTER_TRIGGER_DETAILS: Sql<'static> =
    Sql::same("INSERT INTO dead_letter_trigger_details (trigger_id) VALUES ($1)");
pub const GET_TRIGGER: Sql<'static> = dialects!(
    "SELECT ",
    trigger_columns!(),
    trigger_tables!(),
    "WHERE triggers.id = $1"
);
pub const LIST_TRIGGERS: Sql<'static> = dialects!(
    "SELECT ",
    trigger_columns!(),
    trigger_tables!(),
    "WHERE triggers.app_id = $1 AND triggers.id > $2 ORDER BY triggers.id LIMIT $3"
);
pub const DELETE_TRIGGER: Sql<'static> = Sql::same("DELETE FROM triggers WHERE id = $1");

/// Deletes the attempt `($1, $2)` of a job (fenced), returning the row.
pub const DELETE_JOB: Sql<'static> = dialects!(
    "DELETE FROM outbox WHERE id = $1 AND attempt = $2 RETURNING ",
    job_columns!()
);
pub const OUTBOX_DEPTH: Sql<'static> = Sql::same(
    "\
    SELECT COUNT(*) FILTER (WHERE status = 'pending'), \
           COUNT(*) FILTER (WHERE status = 'running') \
    FROM outbox",
);
/// The pending jobs whose due time has come, and how long the one due first has waited, in
/// milliseconds (0 when none is due).
pub const OUTBOX_LAG: Sql<'static> = dialects!(
    "SELECT COUNT(*), COALESCE(",
    clock!(),
    " - MIN(due_at), 0) FROM outbox WHERE status = 'pending' AND due_at <= ",
    clock!()
);

pub const GET_DEAD_LETTER: Sql<'static> = dialects!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE id = $1"
);
/// Dead letters of the app `$1` before the id `$2`, newest first, at most `$3`; only those
/// of the script `$4` unless it is NULL, and only resolved (`$5` true) or unresolved ones
/// (false) unless it is NULL.
pub const LIST_DEAD_LETTERS: Sql<'static> = dialects!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE app_id = $1 AND id < $2 ",
    "AND ($4 IS NULL OR script_id = $4) ",
    "AND ($5 IS NULL OR (resolved_at IS NOT NULL) = $5) ",
    "ORDER BY id DESC LIMIT $3"
);
pub const COUNT_UNRESOLVED_DEAD_LETTERS: Sql<'static> =
    Sql::same("SELECT COUNT(*) FROM dead_letters WHERE app_id = $1 AND resolved_at IS NULL");
/// Each app's unresolved dead letters, by slug; apps with none are left out. Counted on the
/// unresolved ones' index (0006): the open dead letters' index entries are read, not their rows.
pub const COUNT_UNRESOLVED_DEAD_LETTERS_BY_APP: Sql<'static> = Sql::same(
    "\
    SELECT apps.slug, open.unresolved \
    FROM (SELECT app_id, COUNT(*) AS unresolved FROM dead_letters \
          WHERE resolved_at IS NULL GROUP BY app_id) AS open \
    JOIN apps ON apps.id = open.app_id",
);
/// Abandoned executions of the app `$1` before the id `$2`, newest first, at most `$3`.
pub const LIST_ABANDONED_EXECUTIONS: Sql<'static> = dialects!(
    "SELECT ",
    abandoned_columns!(),
    " FROM abandoned_executions WHERE app_id = $1 AND execution_id < $2 ",
    "ORDER BY execution_id DESC LIMIT $3"
);

pub const PING: Sql<'static> = Sql::same("SELECT CAST(1 AS BIGINT)");

pub const CREATE_APP: Sql<'static> = dialects!(
    "INSERT INTO apps (id, slug, name, expose_errors, created_at, updated_at) ",
    "SELECT $1, $2, $3, $4, clock.now, clock.now FROM (SELECT ",
    now!(),
    " AS now) AS clock RETURNING ",
    app_columns!()
);
/// `updated_at + 1`: every change is a new version, which the routing fingerprint sees.
pub const UPDATE_APP: Sql<'static> = dialects!(
    "UPDATE apps SET slug = COALESCE($2, slug), name = COALESCE($3, name), ",
    "expose_errors = COALESCE($4, expose_errors), updated_at = ",
    greatest!(),
    "(",
    now!(),
    ", updated_at + 1) WHERE id = $1 RETURNING ",
    app_columns!()
);

/// Selecting from apps makes a missing app "no row" rather than a foreign-key error.
pub const CREATE_SCRIPT: Sql<'static> = dialects!(
    "INSERT INTO scripts (id, app_id, name, kind, source, created_at, updated_at) ",
    "SELECT $1, apps.id, $3, $4, $5, clock.now, clock.now FROM apps, (SELECT ",
    now!(),
    " AS now) AS clock WHERE apps.id = $2 RETURNING ",
    script_columns!()
);
/// `updated_at + 1`: two updates within one millisecond still get distinct versions.
pub const UPDATE_SCRIPT: Sql<'static> = dialects!(
    "UPDATE scripts SET name = COALESCE($2, name), kind = COALESCE($3, kind), ",
    "source = COALESCE($4, source), updated_at = ",
    greatest!(),
    "(",
    now!(),
    ", updated_at + 1) WHERE id = $1 RETURNING ",
    script_columns!()
);
/// Locks the script `$1` until `delete_script`'s transaction ends. On PostgreSQL the row lock
/// conflicts with the key-share lock a new route or trigger takes on its script, so none can
/// appear between the count and the delete; SQLite's `BEGIN IMMEDIATE` holds the write lock
/// already.
pub const LOCK_SCRIPT: Sql<'static> =
    dialects!("SELECT id FROM scripts WHERE id = $1", for_update!());

/// The script must exist in the route's app: a route never crosses apps.
pub const CREATE_ROUTE: Sql<'static> = dialects!(
    "INSERT INTO routes (id, app_id, script_id, method, path, dispatch_mode, keep_headers, ",
    "created_at) SELECT $1, scripts.app_id, scripts.id, $4, $5, $6, $7, ",
    now!(),
    " FROM scripts WHERE scripts.id = $3 AND scripts.app_id = $2 RETURNING ",
    route_columns!()
);

pub const CREATE_USER: Sql<'static> = dialects!(
    "INSERT INTO users (id, username, password_hash, is_instance_admin, disabled, created_at) ",
    "VALUES ($1, $2, $3, $4, FALSE, ",
    now!(),
    ") RETURNING ",
    user_columns!()
);

pub const CREATE_SESSION: Sql<'static> = dialects!(
    "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) ",
    "SELECT $1, users.id, clock.now, clock.now + $3 FROM users, (SELECT ",
    now!(),
    " AS now) AS clock WHERE users.id = $2 RETURNING expires_at"
);
pub const SESSION_USER: Sql<'static> = dialects!(
    "SELECT users.id, users.username, users.is_instance_admin, users.disabled, ",
    "users.created_at FROM sessions JOIN users ON users.id = sessions.user_id ",
    "WHERE sessions.token_hash = $1 AND sessions.expires_at > ",
    now!(),
    " AND users.disabled = FALSE"
);
pub const DELETE_EXPIRED_SESSIONS: Sql<'static> =
    dialects!("DELETE FROM sessions WHERE expires_at <= ", now!());

pub const API_KEY_CREDENTIALS: Sql<'static> = dialects!(
    "SELECT ",
    api_key_columns!(),
    ", secret_hash FROM api_keys WHERE prefix = $1 AND revoked = FALSE ",
    "AND (expires_at IS NULL OR expires_at > ",
    now!(),
    ")"
);
pub const TOUCH_API_KEY: Sql<'static> = dialects!(
    "UPDATE api_keys SET last_used_at = ",
    now!(),
    " WHERE id = $1"
);

/// The script must exist in the trigger's app: a trigger never crosses apps.
pub const CREATE_TRIGGER: Sql<'static> = dialects!(
    "INSERT INTO triggers (id, app_id, script_id, kind, created_at) ",
    "SELECT $1, scripts.app_id, scripts.id, $4, ",
    now!(),
    " FROM scripts WHERE scripts.id = $3 AND scripts.app_id = $2"
);

/// The head of every insert of new jobs into the outbox, for `concat!`: the columns they fill.
/// A new job is async, pending, due now and never claimed.
macro_rules! insert_into_outbox {
    () => {
        concat!(
            "INSERT INTO outbox (id, app_id, script_id, source_kind, payload, trigger_depth, ",
            "mode, status, attempt, due_at, created_at) "
        )
    };
}
/// The outbox insert after the `job` rows of [`crate::jobs::insert_jobs`]: a job of an app that
/// no longer exists is skipped.
pub const INSERT_FROM_JOB: Sql<'static> = dialects!(
    insert_into_outbox!(),
    "SELECT job.id, job.app_id, job.script_id, job.source_kind, job.payload",
    jsonb!(),
    ", job.trigger_depth, 'async', 'pending', 0, clock.now, clock.now ",
    "FROM job JOIN apps ON apps.id = job.app_id CROSS JOIN (SELECT ",
    now!(),
    " AS now) AS clock"
);

pub const RETRY_JOB: Sql<'static> = dialects!(
    "UPDATE outbox SET status = 'pending', owner = NULL, lease_until = NULL, due_at = ",
    now!(),
    " + $3, last_error = $4 WHERE id = $1 AND attempt = $2"
);
pub const RELEASE_JOBS: Sql<'static> = dialects!(
    "UPDATE outbox SET status = 'pending', owner = NULL, lease_until = NULL, due_at = ",
    now!(),
    " WHERE status = 'running' AND owner = $1"
);
/// Records the execution `$1` of the app `$2` and script `$3` abandoned for the reason `$4`;
/// nothing when the app is gone, or the execution recorded already.
pub const INSERT_ABANDONED: Sql<'static> = dialects!(
    "INSERT INTO abandoned_executions (execution_id, app_id, script_id, reason, created_at) ",
    "SELECT $1, id, $3, $4, ",
    now!(),
    " FROM apps WHERE id = $2 ON CONFLICT (execution_id) DO NOTHING"
);
/// Deletes the record of the sync request `$1`.
pub const DELETE_SYNC_REQUEST: Sql<'static> = Sql::same("DELETE FROM sync_requests WHERE id = $1");
/// Why a sync request whose lease lapsed is recorded abandoned.
pub const LAPSED_SYNC_REASON: &str =
    "its node stopped before answering it; the caller's connection ended with it";
pub const INSERT_DEAD_LETTER: Sql<'static> = dialects!(
    "INSERT INTO dead_letters (id, app_id, script_id, execution_id, source_kind, mode, ",
    "payload, error, attempts, trigger_depth, created_at) ",
    "VALUES ($1, $2, $3, $4, $5, $6, $7",
    jsonb!(),
    ", $8, $9, $10, ",
    now!(),
    ") RETURNING ",
    dead_letter_columns!()
);
/// Marks the open dead letter `$1` handler_failed, keeping the handler's error `$2`.
pub const DEAD_LETTER_HANDLER_FAILED: Sql<'static> = dialects!(
    "UPDATE dead_letters SET resolution = 'handler_failed', resolved_at = ",
    now!(),
    ", handler_error = $2 WHERE id = $1 AND resolved_at IS NULL"
);
/// Enqueues the dead letter `$1`'s job again as the execution `$2`: async, pending, due now.
pub const REPLAY_DEAD_LETTER: Sql<'static> = dialects!(
    "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, trigger_depth, ",
    "status, attempt, due_at, created_at) ",
    "SELECT $2, app_id, script_id, 'async', source_kind, payload, trigger_depth, ",
    "'pending', 0, clock.now, clock.now FROM dead_letters, (SELECT ",
    now!(),
    " AS now) AS clock WHERE id = $1"
);
/// [`APP_USAGE`] with the app's `app_usage` row locked on PostgreSQL until the transaction ends:
/// concurrent writes of one app (on any node) count one after another, so the quotas hold
/// exactly. Taken last before a commit, to hold the lock briefly.
pub const LOCK_APP_USAGE: Sql<'static> = dialects!(app_usage_sql!(), for_update!());

/// Deletes up to `$2` dead letters older than `$1` ms. Nodes sweeping at once delete different
/// rows instead of waiting (PostgreSQL's SKIP LOCKED).
pub const SWEEP_DEAD_LETTERS: Sql<'static> = dialects!(
    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE created_at < ",
    clock!(),
    " - $1 ORDER BY created_at LIMIT $2",
    skip_locked!(),
    ")"
);
/// [`SWEEP_DEAD_LETTERS`] for abandoned executions.
pub const SWEEP_ABANDONED_EXECUTIONS: Sql<'static> = dialects!(
    "DELETE FROM abandoned_executions WHERE execution_id IN (SELECT execution_id ",
    "FROM abandoned_executions WHERE created_at < ",
    clock!(),
    " - $1 ORDER BY created_at LIMIT $2",
    skip_locked!(),
    ")"
);

pub(crate) use {fair_due_jobs, insert_into_outbox, job_columns, job_value_columns};

/// The columns of an execution batch, in [`crate::executions`]' order, for `concat!`.
macro_rules! batch_columns {
    () => {
        "app_id, last_id, first_id, records, failures, body"
    };
}
/// `app (id)`: the apps that have execution records, found by skipping from one app's range to
/// the next (a scan of the whole table would read every batch); its last row is `NULL`.
macro_rules! apps_with_executions {
    () => {
        "app (id) AS (SELECT MIN(app_id) FROM execution_batches UNION ALL \
         SELECT (SELECT MIN(app_id) FROM execution_batches WHERE app_id > app.id) FROM app \
         WHERE app.id IS NOT NULL)"
    };
}
/// One batch of execution records, on SQLite, in the records' own file (where there is no
/// `apps` table to check: the sweep deletes the records of an app that is gone). Nothing when
/// the batch was written already (a write tried again).
pub const INSERT_EXECUTION_BATCH: &str = concat!(
    "INSERT INTO execution_batches (",
    batch_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, last_id) DO NOTHING"
);
/// [`batch_columns`] as a constant, for statements built at run time.
pub const BATCH_COLUMNS: &str = batch_columns!();
/// What follows `WITH batch (columns) AS (VALUES …)` on PostgreSQL: the batches of apps that
/// still exist, a batch written already left out.
pub const INSERT_EXECUTION_BATCHES: &str = concat!(
    "INSERT INTO execution_batches (",
    batch_columns!(),
    ") SELECT ",
    batch_columns!(),
    " FROM batch WHERE app_id IN (SELECT id FROM apps) ",
    "ON CONFLICT (app_id, last_id) DO NOTHING"
);
/// The app `$1`'s batches that may hold records before the record id `$2`, newest last record
/// first, after the batch `$3` (the last of the previous page; `NULL` for the first), at most
/// `$4`; with a failure when `$5`, with a success when `$6`.
pub const LIST_EXECUTION_BATCHES: Sql<'static> = dialects!(
    "SELECT last_id, body FROM execution_batches WHERE app_id = $1 AND first_id < $2 ",
    "AND ($3 IS NULL OR last_id < $3) AND (NOT $5 OR failures > 0) ",
    "AND (NOT $6 OR failures < records) ORDER BY last_id DESC LIMIT $4"
);
/// The batches that may hold a record with an id from `$1` to `$2`, in every app that has
/// records.
pub const FIND_EXECUTION_BATCHES: Sql<'static> = dialects!(
    "WITH RECURSIVE ",
    apps_with_executions!(),
    " SELECT app_id, body FROM execution_batches ",
    "WHERE app_id IN (SELECT id FROM app WHERE id IS NOT NULL) ",
    "AND last_id >= $1 AND first_id <= $2"
);
/// The app `$1`'s batches named by the id of their newest record, `$2`, … (the statement is
/// completed at run time).
pub const APP_EXECUTION_BATCHES: &str =
    "SELECT app_id, body FROM execution_batches WHERE app_id = $1 AND last_id IN";
/// The apps that have execution records.
pub const APPS_WITH_EXECUTIONS: Sql<'static> = dialects!(
    "WITH RECURSIVE ",
    apps_with_executions!(),
    " SELECT id FROM app WHERE id IS NOT NULL"
);
/// Every app's id.
pub const APP_IDS: Sql<'static> = Sql::same("SELECT id FROM apps");
/// Deletes up to `$2` of the app `$1`'s batches, oldest first (of an app that is gone); the
/// records they held.
pub const SWEEP_APP_EXECUTIONS: Sql<'static> = Sql::same(
    "\
    DELETE FROM execution_batches WHERE app_id = $1 AND last_id IN (SELECT last_id \
    FROM execution_batches WHERE app_id = $1 ORDER BY last_id LIMIT $2) RETURNING records",
);
/// Deletes up to `$3` of the app `$1`'s batches whose newest record has an id before `$2`
/// (older), oldest first; the records they held.
pub const SWEEP_OLD_EXECUTIONS: Sql<'static> = Sql::same(
    "\
    DELETE FROM execution_batches WHERE app_id = $1 AND last_id IN (SELECT last_id \
    FROM execution_batches WHERE app_id = $1 AND last_id < $2 ORDER BY last_id LIMIT $3) \
    RETURNING records",
);
/// Deletes up to `$3` of the app `$1`'s batches whose newer batches hold `$2` records or more,
/// oldest first; the records they held. So the app keeps its newest `$2` records at least, and
/// the rest of the batch that holds the oldest of them.
pub const SWEEP_EXCESS_EXECUTIONS: Sql<'static> = Sql::same(
    "\
    DELETE FROM execution_batches WHERE app_id = $1 AND last_id IN (SELECT last_id FROM \
    (SELECT last_id, SUM(records) OVER (ORDER BY last_id DESC) - records AS newer \
    FROM execution_batches WHERE app_id = $1) AS counted WHERE newer >= $2 \
    ORDER BY last_id LIMIT $3) RETURNING records",
);
