//! What the two backends share, written once: the column lists and the queries that read the
//! same on both, rows as they come out of either database and their conversion into records,
//! the translation of database errors into [`StoreError`]s — including the sentences a user
//! reads when a uniqueness rule refuses a write, which must be identical on both backends —,
//! which KV triggers a change fires and what a dead letter enqueues, and the multi-row
//! statements of the outbox ([`insert_jobs`], [`push_attempts`]), built generically over the
//! backend.
//!
//! The row structs derive `sqlx::FromRow` generically, so one definition decodes SQLite and
//! PostgreSQL rows alike: both schemas use TEXT ids, BIGINT milliseconds and booleans, and JSON
//! (TEXT on SQLite, JSONB on PostgreSQL) is read as `CAST(… AS TEXT)`. Both backends accept
//! `$1`-style parameters, so queries without a clock read the same too; only writing JSON differs
//! (`$n::jsonb` on PostgreSQL).

use std::collections::BTreeMap;
use std::fmt::Display;

use picloud_core::events::{DeadLetterEvent, KvEvent};
use picloud_core::services::Writer;
use picloud_core::{
    ApiKey, ApiKeyId, App, AppId, AppName, AppSlug, CollectionName, DeadLetter, DeadLetterId,
    DispatchMode, ExecutionId, JobMode, JobPayload, KeptHeaders, KvKey, KvOp, Membership,
    Resolution, Role, Route, RouteId, RouteMethod, RoutePath, Scope, Script, ScriptId, ScriptKind,
    ScriptName, Timestamp, Trigger, TriggerDetail, TriggerEvent, TriggerId, User, UserId, Username,
};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::paging::{prefix_range, Window};
use crate::{
    AbandonedExecution, ApiKeyCredentials, AppQuotas, AppUsage, ClaimedJob, DeadLetterStatus,
    JobAttempt, NewJob, OverLimit, RoutingEntry, StoreError, StoreResult, UserCredentials,
    KV_ENTRY_OVERHEAD,
};

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
/// The columns of [`TriggerRow`]: a trigger with its KV details (NULL for other kinds), from
/// `triggers LEFT JOIN kv_trigger_details`, for `concat!`.
macro_rules! trigger_columns {
    () => {
        "triggers.id, triggers.app_id, triggers.script_id, triggers.kind, triggers.created_at, \
         kv_trigger_details.collection, kv_trigger_details.key_prefix, kv_trigger_details.ops"
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
/// The columns of the `job` rows that [`insert_jobs`] builds from [`JobValues`], in the order it
/// binds them.
macro_rules! job_value_columns {
    () => {
        "id, app_id, script_id, mode, source_kind, payload, trigger_depth, status, attempt, \
         owner, lease_ms"
    };
}
/// The KV triggers of the app `$1` on the collection `$2`, for `concat!`.
macro_rules! kv_triggers_sql {
    () => {
        "SELECT triggers.id, triggers.script_id, kv_trigger_details.key_prefix, \
         kv_trigger_details.ops \
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
         AS queued_jobs \
         FROM app_usage WHERE app_usage.app_id = $1"
    };
}
/// The head of a claim, for `concat!`: common table expressions ending in
/// `fair (id, turn, due_at)`, the due `pending` jobs the claimer may take, to be taken by turn,
/// then due time, then id (see [`crate::OutboxStore::claim_jobs`]). The arguments are a query
/// of the `(app_id, jobs)` pairs the claimer runs now, from the JSON object `$5` (see
/// [`running_jobs`]), and the backend's clock; `$4` is the most jobs of one app the claimer may
/// run at once.
///
/// - `walk` takes each app's due jobs in the order they fell due, at most `$4` of them, one
///   index seek each from the one before (`(due_at, id) >` the previous): a claim costs the
///   apps times `$4` seeks however long any app's backlog is. (PostgreSQL has `LATERAL` for
///   this, SQLite no correlated `OFFSET`; the walk reads the same on both.)
/// - An app's n-th job gets the turn n + the jobs the claimer runs of it already; turns from
///   `$4` on are not taken (the app's share is full), the others go in turn order, and within a
///   turn the job that fell due first goes first.
macro_rules! fair_due_jobs {
    ($running:literal, $($clock:tt)+) => {
        concat!(
            "WITH RECURSIVE walk (app_id, id, due_at, turn) AS (",
            "SELECT apps.id, outbox.id, outbox.due_at, CAST(0 AS BIGINT) FROM apps ",
            "JOIN outbox ON outbox.id = (SELECT queued.id FROM outbox AS queued ",
            "WHERE queued.app_id = apps.id AND queued.status = 'pending' AND queued.due_at <= ",
            $($clock)+,
            " ORDER BY queued.due_at, queued.id LIMIT 1) ",
            "UNION ALL ",
            "SELECT walk.app_id, outbox.id, outbox.due_at, walk.turn + 1 FROM walk ",
            "JOIN outbox ON outbox.id = (SELECT queued.id FROM outbox AS queued ",
            "WHERE queued.app_id = walk.app_id AND queued.status = 'pending' AND queued.due_at <= ",
            $($clock)+,
            " AND (queued.due_at, queued.id) > (walk.due_at, walk.id) ",
            "ORDER BY queued.due_at, queued.id LIMIT 1) ",
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
pub(crate) use {
    api_key_columns, app_columns, app_usage_sql, dead_letter_columns, fair_due_jobs, job_columns,
    kv_triggers_sql, route_columns, script_columns, user_columns,
};

/// The queries that read the same on both backends (no clock, no locking). Lists take the id
/// to start after (newest-first lists: the id to stop before) and the number of rows to fetch
/// (see [`crate::paging::Window`]).
pub(crate) mod sql {
    pub const GET_APP: &str = concat!("SELECT ", app_columns!(), " FROM apps WHERE id = $1");
    pub const GET_APP_BY_SLUG: &str =
        concat!("SELECT ", app_columns!(), " FROM apps WHERE slug = $1");
    pub const LIST_APPS: &str = concat!(
        "SELECT ",
        app_columns!(),
        " FROM apps WHERE id > $1 ORDER BY id LIMIT $2"
    );
    pub const DELETE_APP: &str = "DELETE FROM apps WHERE id = $1";

    pub const GET_SCRIPT: &str =
        concat!("SELECT ", script_columns!(), " FROM scripts WHERE id = $1");
    pub const LIST_SCRIPTS: &str = concat!(
        "SELECT ",
        script_columns!(),
        " FROM scripts WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    pub const DELETE_SCRIPT: &str = "DELETE FROM scripts WHERE id = $1";

    pub const GET_ROUTE: &str = concat!("SELECT ", route_columns!(), " FROM routes WHERE id = $1");
    pub const LIST_ROUTES: &str = concat!(
        "SELECT ",
        route_columns!(),
        " FROM routes WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    pub const LIST_ROUTES_OF_SCRIPT: &str = concat!(
        "SELECT ",
        route_columns!(),
        " FROM routes WHERE script_id = $1 ORDER BY id"
    );
    pub const DELETE_ROUTE: &str = "DELETE FROM routes WHERE id = $1";
    /// Every route (of the app `$1`, or of all apps when `$1` is NULL) with its app's slug and
    /// error setting and its script's current version, in creation order.
    pub const ROUTING_ENTRIES: &str = "\
        SELECT routes.id, routes.app_id, routes.script_id, routes.method, routes.path, \
               routes.dispatch_mode, routes.keep_headers, routes.created_at, \
               apps.slug AS app_slug, apps.expose_errors AS app_expose_errors, scripts.name AS script_name, scripts.kind AS script_kind, \
               scripts.updated_at AS script_updated_at, scripts.source AS script_source \
        FROM routes \
        JOIN apps ON apps.id = routes.app_id \
        JOIN scripts ON scripts.id = routes.script_id \
        WHERE $1 IS NULL OR routes.app_id = $1 \
        ORDER BY routes.id";

    pub const GET_USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    pub const USER_CREDENTIALS: &str = concat!(
        "SELECT ",
        user_columns!(),
        ", password_hash FROM users WHERE username = $1"
    );
    pub const COUNT_USERS: &str = "SELECT COUNT(*) FROM users";
    pub const SET_USER_DISABLED: &str = concat!(
        "UPDATE users SET disabled = $2 WHERE id = $1 RETURNING ",
        user_columns!()
    );

    pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE token_hash = $1";
    pub const DELETE_SESSIONS_OF_USER: &str = "DELETE FROM sessions WHERE user_id = $1";

    pub const LIST_USERS: &str = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id > $1 ORDER BY id LIMIT $2"
    );
    pub const SET_PASSWORD: &str = concat!(
        "UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING ",
        user_columns!()
    );
    pub const SET_INSTANCE_ADMIN: &str = concat!(
        "UPDATE users SET is_instance_admin = $2 WHERE id = $1 RETURNING ",
        user_columns!()
    );
    pub const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";

    /// Inserts or replaces a membership when both the app and the user exist (no row otherwise).
    pub const UPSERT_MEMBERSHIP: &str = "\
        INSERT INTO memberships (app_id, user_id, role) \
        SELECT apps.id, users.id, $3 FROM apps, users WHERE apps.id = $1 AND users.id = $2 \
        ON CONFLICT (app_id, user_id) DO UPDATE SET role = excluded.role \
        RETURNING app_id";
    pub const GET_MEMBERSHIP: &str = "\
        SELECT memberships.app_id, memberships.user_id, users.username, memberships.role, \
               memberships.created_at \
        FROM memberships JOIN users ON users.id = memberships.user_id \
        WHERE memberships.app_id = $1 AND memberships.user_id = $2";
    pub const LIST_MEMBERS: &str = "\
        SELECT memberships.app_id, memberships.user_id, users.username, memberships.role, \
               memberships.created_at \
        FROM memberships JOIN users ON users.id = memberships.user_id \
        WHERE memberships.app_id = $1 ORDER BY users.username";
    pub const MEMBERSHIPS_OF_USER: &str =
        "SELECT app_id, role FROM memberships WHERE user_id = $1 ORDER BY app_id";
    pub const DELETE_MEMBERSHIP: &str =
        "DELETE FROM memberships WHERE app_id = $1 AND user_id = $2";
    pub const APP_EXISTS: &str = "SELECT COUNT(*) FROM apps WHERE id = $1";

    /// Inserts a key when its user (and its app, when bound) exist; no row otherwise.
    pub const INSERT_API_KEY: &str = concat!(
        "INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, scopes, app_id, expires_at) ",
        "SELECT $1, users.id, $3, $4, $5, $6, $7, $8 FROM users WHERE users.id = $2 ",
        "AND ($7 IS NULL OR EXISTS (SELECT 1 FROM apps WHERE apps.id = $7)) ",
        "RETURNING ",
        api_key_columns!()
    );
    pub const USER_EXISTS: &str = "SELECT COUNT(*) FROM users WHERE id = $1";
    pub const GET_API_KEY: &str = concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE id = $1"
    );
    pub const LIST_API_KEYS: &str = concat!(
        "SELECT ",
        api_key_columns!(),
        " FROM api_keys WHERE $1 IS NULL OR user_id = $1 ORDER BY id"
    );
    pub const REVOKE_API_KEY: &str =
        "UPDATE api_keys SET revoked = TRUE WHERE id = $1 AND revoked = FALSE";

    /// What `delete_script` must refuse for: the routes and the triggers pointing at `$1`.
    pub const COUNT_TARGETS_OF_SCRIPT: &str = "\
        SELECT (SELECT COUNT(*) FROM routes WHERE script_id = $1), \
               (SELECT COUNT(*) FROM triggers WHERE script_id = $1)";
    /// See [`RouteStore::routing_fingerprint`](crate::RouteStore::routing_fingerprint) and
    /// [`super::FingerprintRow`].
    pub const ROUTING_FINGERPRINT: &str = "\
        SELECT (SELECT COUNT(*) FROM apps) AS apps, \
               (SELECT COALESCE(MAX(id), '') FROM apps) AS last_app, \
               (SELECT CAST(COALESCE(SUM(updated_at - created_at), 0) AS BIGINT) FROM apps) \
                   AS app_versions, \
               (SELECT COUNT(*) FROM routes) AS routes, \
               (SELECT COALESCE(MAX(id), '') FROM routes) AS last_route, \
               (SELECT CAST(COALESCE(SUM(updated_at - created_at), 0) AS BIGINT) FROM scripts) \
                   AS script_versions";

    /// The rows that count an app's usage, made with the app.
    pub const INSERT_APP_USAGE: &str = "INSERT INTO app_usage (app_id) VALUES ($1)";
    pub const INSERT_APP_JOB_COUNTS: &str = "INSERT INTO app_job_counts (app_id) VALUES ($1)";
    pub const APP_USAGE: &str = app_usage_sql!();
    /// Counts what a data write of the app `$1` changed: `$2` KV bytes (negative: freed) and `$3`
    /// jobs it enqueued.
    pub const COUNT_WRITE: &str = "UPDATE app_usage \
        SET kv_bytes = kv_bytes + $2, jobs_enqueued = jobs_enqueued + $3 WHERE app_id = $1";
    /// Counts the async jobs of the app `$1` that the outbox's own writes recorded (`$2`) and
    /// removed (`$3`).
    pub const COUNT_JOBS: &str = "UPDATE app_job_counts \
        SET recorded = recorded + $2, removed = removed + $3 WHERE app_id = $1";

    pub const GET_KV: &str = "SELECT CAST(value AS TEXT) FROM kv_entries \
        WHERE app_id = $1 AND collection = $2 AND key = $3";
    pub const COUNT_KV: &str =
        "SELECT COUNT(*) FROM kv_entries WHERE app_id = $1 AND collection = $2 AND key = $3";
    /// Deletes an entry, returning the value it had and its size.
    pub const DELETE_KV: &str = "DELETE FROM kv_entries \
        WHERE app_id = $1 AND collection = $2 AND key = $3 RETURNING CAST(value AS TEXT), size";
    /// The KV triggers of the app `$1` on the collection `$2`; the store matches the key prefix
    /// and the operation.
    pub const KV_TRIGGERS: &str = kv_triggers_sql!();
    /// The scripts of the dead-letter triggers of the app `$1`.
    pub const DEAD_LETTER_TRIGGER_SCRIPTS: &str = "\
        SELECT triggers.script_id \
        FROM triggers \
        JOIN dead_letter_trigger_details ON dead_letter_trigger_details.trigger_id = triggers.id \
        WHERE triggers.app_id = $1 ORDER BY triggers.id";

    pub const INSERT_KV_TRIGGER_DETAILS: &str = "INSERT INTO kv_trigger_details \
        (trigger_id, collection, key_prefix, ops) VALUES ($1, $2, $3, $4)";
    pub const INSERT_DEAD_LETTER_TRIGGER_DETAILS: &str =
        "INSERT INTO dead_letter_trigger_details (trigger_id) VALUES ($1)";
    pub const GET_TRIGGER: &str = concat!(
        "SELECT ",
        trigger_columns!(),
        " FROM triggers LEFT JOIN kv_trigger_details ",
        "ON kv_trigger_details.trigger_id = triggers.id WHERE triggers.id = $1"
    );
    pub const LIST_TRIGGERS: &str = concat!(
        "SELECT ",
        trigger_columns!(),
        " FROM triggers LEFT JOIN kv_trigger_details ",
        "ON kv_trigger_details.trigger_id = triggers.id ",
        "WHERE triggers.app_id = $1 AND triggers.id > $2 ORDER BY triggers.id LIMIT $3"
    );
    pub const DELETE_TRIGGER: &str = "DELETE FROM triggers WHERE id = $1";

    /// Deletes the attempt `($1, $2)` of a job (fenced), returning the row.
    pub const DELETE_JOB: &str = concat!(
        "DELETE FROM outbox WHERE id = $1 AND attempt = $2 RETURNING ",
        job_columns!()
    );
    pub const OUTBOX_DEPTH: &str = "\
        SELECT COUNT(*) FILTER (WHERE status = 'pending'), \
               COUNT(*) FILTER (WHERE status = 'running') \
        FROM outbox";

    pub const GET_DEAD_LETTER: &str = concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters WHERE id = $1"
    );
    /// Dead letters of the app `$1` before the id `$2`, newest first, at most `$3`; only those
    /// of the script `$4` unless it is NULL, and only resolved (`$5` true) or unresolved ones
    /// (false) unless it is NULL.
    pub const LIST_DEAD_LETTERS: &str = concat!(
        "SELECT ",
        dead_letter_columns!(),
        " FROM dead_letters WHERE app_id = $1 AND id < $2 ",
        "AND ($4 IS NULL OR script_id = $4) ",
        "AND ($5 IS NULL OR (resolved_at IS NOT NULL) = $5) ",
        "ORDER BY id DESC LIMIT $3"
    );
    pub const COUNT_UNRESOLVED_DEAD_LETTERS: &str =
        "SELECT COUNT(*) FROM dead_letters WHERE app_id = $1 AND resolved_at IS NULL";
    /// Abandoned executions of the app `$1` before the id `$2`, newest first, at most `$3`.
    pub const LIST_ABANDONED_EXECUTIONS: &str = concat!(
        "SELECT ",
        abandoned_columns!(),
        " FROM abandoned_executions WHERE app_id = $1 AND execution_id < $2 ",
        "ORDER BY execution_id DESC LIMIT $3"
    );
}

/// How far a span of time (a session's lifetime, a lease, a retry delay, a retention) may reach
/// either way (100 years), so that `now + span` cannot overflow a 64-bit integer on either
/// backend.
const MAX_SPAN_MS: i64 = 100 * 365 * 24 * 60 * 60 * 1000;

/// `ms` within ±[`MAX_SPAN_MS`], for `now + span` in SQL.
pub(crate) fn span(ms: i64) -> i64 {
    ms.clamp(-MAX_SPAN_MS, MAX_SPAN_MS)
}

/// `delete_script` refused while `routes` routes and `triggers` triggers point at the script,
/// e.g. "the script is the target of 2 routes and 1 trigger; delete them first".
pub(crate) fn script_is_a_target(routes: u64, triggers: u64) -> StoreError {
    let counted = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let targets = match (routes, triggers) {
        (0, triggers) => counted(triggers, "trigger"),
        (routes, 0) => counted(routes, "route"),
        (routes, triggers) => format!(
            "{} and {}",
            counted(routes, "route"),
            counted(triggers, "trigger")
        ),
    };
    let them = if routes + triggers == 1 { "it" } else { "them" };
    StoreError::Conflict(format!(
        "the script is the target of {targets}; delete {them} first"
    ))
}

/// `replay_dead_letter` and `resolve_dead_letter` refused: the dead letter was closed already.
pub(crate) fn dead_letter_closed(dead_letter: &DeadLetter) -> StoreError {
    let at = dead_letter
        .resolved_at
        .map_or_else(String::new, |at| format!(" at {at}"));
    StoreError::Conflict(match dead_letter.resolution {
        Some(Resolution::Replayed) => format!("the dead letter was already replayed{at}"),
        Some(Resolution::HandlerFailed) => format!(
            "the dead letter was already marked handler_failed{at} (the app's dead-letter \
             handler failed on it)"
        ),
        Some(Resolution::Resolved) | None => format!("the dead letter was already resolved{at}"),
    })
}

/// A value read from `table` that the record types refuse: a bug or a hand-edited database.
fn corrupt<E: Display>(table: &'static str) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::Internal(format!("a corrupt row in {table}: {err}"))
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AppRow {
    id: String,
    slug: String,
    name: String,
    expose_errors: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AppRow> for App {
    type Error = StoreError;

    fn try_from(row: AppRow) -> StoreResult<Self> {
        Ok(Self {
            id: AppId::parse(&row.id).map_err(corrupt("apps"))?,
            slug: AppSlug::parse(&row.slug).map_err(corrupt("apps"))?,
            name: AppName::parse(&row.name).map_err(corrupt("apps"))?,
            expose_errors: row.expose_errors,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ScriptRow {
    id: String,
    app_id: String,
    name: String,
    kind: String,
    source: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ScriptRow> for Script {
    type Error = StoreError;

    fn try_from(row: ScriptRow) -> StoreResult<Self> {
        let kind = ScriptKind::parse(&row.kind).map_err(corrupt("scripts"))?;
        Ok(Self {
            id: ScriptId::parse(&row.id).map_err(corrupt("scripts"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("scripts"))?,
            name: ScriptName::parse(&row.name, kind).map_err(corrupt("scripts"))?,
            kind,
            source: row.source,
            created_at: Timestamp::from_millis(row.created_at),
            updated_at: Timestamp::from_millis(row.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RouteRow {
    id: String,
    app_id: String,
    script_id: String,
    method: String,
    path: String,
    dispatch_mode: String,
    /// Space-separated header names; see [`keep_headers_column`].
    keep_headers: String,
    created_at: i64,
}

impl TryFrom<RouteRow> for Route {
    type Error = StoreError;

    fn try_from(row: RouteRow) -> StoreResult<Self> {
        Ok(Self {
            id: RouteId::parse(&row.id).map_err(corrupt("routes"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("routes"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("routes"))?,
            method: RouteMethod::parse(&row.method).map_err(corrupt("routes"))?,
            path: RoutePath::parse(&row.path).map_err(corrupt("routes"))?,
            dispatch_mode: DispatchMode::parse(&row.dispatch_mode).map_err(corrupt("routes"))?,
            keep_headers: KeptHeaders::parse(
                &row.keep_headers.split_whitespace().collect::<Vec<_>>(),
            )
            .map_err(corrupt("routes"))?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// A route joined with its app's slug and its script's current version.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RoutingRow {
    #[sqlx(flatten)]
    route: RouteRow,
    app_slug: String,
    app_expose_errors: bool,
    script_name: String,
    script_kind: String,
    script_updated_at: i64,
    script_source: String,
}

impl TryFrom<RoutingRow> for RoutingEntry {
    type Error = StoreError;

    fn try_from(row: RoutingRow) -> StoreResult<Self> {
        let kind = ScriptKind::parse(&row.script_kind).map_err(corrupt("scripts"))?;
        Ok(Self {
            route: row.route.try_into()?,
            app_slug: AppSlug::parse(&row.app_slug).map_err(corrupt("apps"))?,
            app_expose_errors: row.app_expose_errors,
            script_name: ScriptName::parse(&row.script_name, kind).map_err(corrupt("scripts"))?,
            script_updated_at: Timestamp::from_millis(row.script_updated_at),
            script_source: row.script_source,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    is_instance_admin: bool,
    disabled: bool,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(Self {
            id: UserId::parse(&row.id).map_err(corrupt("users"))?,
            username: Username::parse(&row.username).map_err(corrupt("users"))?,
            is_instance_admin: row.is_instance_admin,
            disabled: row.disabled,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for UserCredentials {
    type Error = StoreError;

    fn try_from(row: CredentialsRow) -> StoreResult<Self> {
        Ok(Self {
            user: row.user.try_into()?,
            password_hash: row.password_hash,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MembershipRow {
    app_id: String,
    user_id: String,
    username: String,
    role: String,
    created_at: i64,
}

impl TryFrom<MembershipRow> for Membership {
    type Error = StoreError;

    fn try_from(row: MembershipRow) -> StoreResult<Self> {
        Ok(Self {
            app_id: AppId::parse(&row.app_id).map_err(corrupt("memberships"))?,
            user_id: UserId::parse(&row.user_id).map_err(corrupt("memberships"))?,
            username: Username::parse(&row.username).map_err(corrupt("users"))?,
            role: Role::parse(&row.role).map_err(corrupt("memberships"))?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RoleRow {
    app_id: String,
    role: String,
}

impl TryFrom<RoleRow> for (AppId, Role) {
    type Error = StoreError;

    fn try_from(row: RoleRow) -> StoreResult<Self> {
        Ok((
            AppId::parse(&row.app_id).map_err(corrupt("memberships"))?,
            Role::parse(&row.role).map_err(corrupt("memberships"))?,
        ))
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    id: String,
    user_id: String,
    name: String,
    prefix: String,
    scopes: String,
    app_id: Option<String>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    created_at: i64,
    revoked: bool,
}

/// Scopes as the `scopes` column keeps them: names separated by spaces.
/// How a route's kept headers are stored: lower-case names separated by spaces (a header name
/// holds no space), `''` for none.
pub(crate) fn keep_headers_column(kept: &KeptHeaders) -> String {
    kept.names().iter().collect::<Vec<_>>().join(" ")
}

pub(crate) fn scopes_column(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: ApiKeyRow) -> StoreResult<Self> {
        Ok(Self {
            id: ApiKeyId::parse(&row.id).map_err(corrupt("api_keys"))?,
            user_id: UserId::parse(&row.user_id).map_err(corrupt("api_keys"))?,
            name: row.name,
            prefix: row.prefix,
            scopes: row
                .scopes
                .split_whitespace()
                .map(Scope::parse)
                .collect::<Result<_, _>>()
                .map_err(corrupt("api_keys"))?,
            app_id: row
                .app_id
                .as_deref()
                .map(AppId::parse)
                .transpose()
                .map_err(corrupt("api_keys"))?,
            expires_at: row.expires_at.map(Timestamp::from_millis),
            last_used_at: row.last_used_at.map(Timestamp::from_millis),
            created_at: Timestamp::from_millis(row.created_at),
            revoked: row.revoked,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyCredentialsRow {
    #[sqlx(flatten)]
    key: ApiKeyRow,
    secret_hash: Vec<u8>,
}

impl TryFrom<ApiKeyCredentialsRow> for ApiKeyCredentials {
    type Error = StoreError;

    fn try_from(row: ApiKeyCredentialsRow) -> StoreResult<Self> {
        Ok(Self {
            key: row.key.try_into()?,
            secret_hash: row.secret_hash,
        })
    }
}

/// A JSON text the store wrote, read back.
pub(crate) fn json_value(table: &'static str, text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(corrupt(table))
}

/// A job's payload as the outbox and the dead letters keep it: its JSON text.
pub(crate) fn payload_text(payload: &JobPayload) -> StoreResult<String> {
    serde_json::to_string(payload)
        .map_err(|err| StoreError::Internal(format!("a job payload cannot be serialized: {err}")))
}

fn job_mode(mode: &str) -> Result<JobMode, String> {
    match mode {
        "sync" => Ok(JobMode::Sync),
        "async" => Ok(JobMode::Async),
        other => Err(format!("'{other}' is no job mode")),
    }
}

/// A count of attempts or a trigger depth, which both backends keep as a 64-bit integer.
fn small(table: &'static str, value: i64) -> StoreResult<u32> {
    u32::try_from(value).map_err(corrupt(table))
}

/// KV operations as the `ops` column keeps them: names separated by commas, each once, in
/// [`KvOp`] order ("set,delete").
pub(crate) fn ops_column(ops: &[KvOp]) -> String {
    let mut ops = ops.to_vec();
    ops.sort_unstable();
    ops.dedup();
    ops.iter()
        .map(|op| op.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_ops(column: &str) -> StoreResult<Vec<KvOp>> {
    column
        .split(',')
        .filter(|op| !op.is_empty())
        .map(|op| KvOp::parse(op).map_err(corrupt("kv_trigger_details")))
        .collect()
}

/// A trigger with its KV details (NULL for other kinds).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TriggerRow {
    id: String,
    app_id: String,
    script_id: String,
    kind: String,
    created_at: i64,
    collection: Option<String>,
    key_prefix: Option<String>,
    ops: Option<String>,
}

impl TryFrom<TriggerRow> for Trigger {
    type Error = StoreError;

    fn try_from(row: TriggerRow) -> StoreResult<Self> {
        let detail = match (row.kind.as_str(), row.collection, row.ops) {
            ("kv", Some(collection), Some(ops)) => TriggerDetail::Kv {
                collection: CollectionName::parse(&collection)
                    .map_err(corrupt("kv_trigger_details"))?,
                key_prefix: row.key_prefix,
                ops: parse_ops(&ops)?,
            },
            ("dead_letter", _, _) => TriggerDetail::DeadLetter,
            (kind, _, _) => {
                return Err(StoreError::Internal(format!(
                    "a corrupt row in triggers: the '{kind}' trigger {} has no details",
                    row.id
                )))
            }
        };
        Ok(Self {
            id: TriggerId::parse(&row.id).map_err(corrupt("triggers"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("triggers"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("triggers"))?,
            detail,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// What [`sql::APP_USAGE`] reads.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct UsageRow {
    pub kv_bytes: i64,
    pub queued_jobs: i64,
}

impl From<UsageRow> for AppUsage {
    fn from(row: UsageRow) -> Self {
        // The counts never go below zero; should a bug make them, the app is not locked out.
        Self {
            kv_bytes: u64::try_from(row.kv_bytes).unwrap_or(0),
            queued_jobs: u64::try_from(row.queued_jobs).unwrap_or(0),
        }
    }
}

/// What an entry counts against its app's stored bytes (`kv_entries.size`); see
/// [`AppQuotas::stored_bytes`].
pub(crate) fn kv_entry_size(collection: &CollectionName, key: &KvKey, text: &str) -> i64 {
    let bytes = collection.as_str().len() + key.as_str().len() + text.len();
    i64::try_from(bytes as u64 + KV_ENTRY_OVERHEAD).unwrap_or(i64::MAX)
}

/// Whether a KV write that changes its app's bytes by `bytes` and fires `jobs` trigger jobs may
/// go ahead: within what its execution may still enqueue, then within the app's quotas.
pub(crate) fn admit_kv_write(
    writer: Writer,
    usage: AppUsage,
    bytes: i64,
    jobs: usize,
    quotas: &AppQuotas,
) -> Result<(), OverLimit> {
    let jobs = jobs as u64;
    if jobs > u64::from(writer.trigger_jobs_left) {
        return Err(OverLimit::TriggerJobs {
            firing: jobs,
            left: writer.trigger_jobs_left,
        });
    }
    usage.admit(bytes, jobs, quotas)
}

/// Counts what a data write of `app_id` changed ([`sql::COUNT_WRITE`]): `bytes` of KV data
/// (negative: freed) and `jobs` it enqueued, in the caller's transaction on `conn`.
pub(crate) async fn count_write<C, DB>(
    conn: &mut C,
    app_id: AppId,
    bytes: i64,
    jobs: usize,
) -> StoreResult<()>
where
    DB: Database,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(sql::COUNT_WRITE)
        .bind(app_id.to_string())
        .bind(bytes)
        .bind(i64::try_from(jobs).unwrap_or(i64::MAX))
        .execute(conn)
        .await
        .map_err(query_error)?;
    Ok(())
}

/// Applies `counts` to `app_job_counts` ([`sql::COUNT_JOBS`]) in the caller's transaction on
/// `conn`, app by app in their order (see [`JobCounts`]).
pub(crate) async fn count_jobs<C, DB>(conn: &mut C, counts: &JobCounts) -> StoreResult<()>
where
    DB: Database,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    for (app_id, recorded, removed) in counts.by_app() {
        sqlx::query(sql::COUNT_JOBS)
            .bind(app_id.to_owned())
            .bind(recorded)
            .bind(removed)
            .execute(&mut *conn)
            .await
            .map_err(query_error)?;
    }
    Ok(())
}

/// How many jobs a write enqueued, as it reports it.
pub(crate) fn enqueued(jobs: &[NewJob]) -> u32 {
    u32::try_from(jobs.len()).unwrap_or(u32::MAX)
}

/// Changes to `app_job_counts` made in one transaction, per app: async jobs recorded and
/// removed. Applied last and in app order ([`JobCounts::by_app`]), so that transactions that
/// count jobs of several apps (two nodes' group commits) take the rows' locks in one order and
/// never deadlock.
#[derive(Debug, Default)]
pub(crate) struct JobCounts(BTreeMap<String, (i64, i64)>);

impl JobCounts {
    /// Counts the async ones of `jobs` as recorded.
    pub fn recorded(&mut self, jobs: &[JobValues]) {
        for job in jobs
            .iter()
            .filter(|job| job.mode == JobMode::Async.as_str())
        {
            self.0.entry(job.app_id.clone()).or_default().0 += 1;
        }
    }

    /// The count of one job removed, as [`sql::DELETE_JOB`] returned it.
    pub fn removing(job: &JobRow) -> Self {
        let mut counts = Self::default();
        counts.removed(&job.app_id, &job.mode);
        counts
    }

    /// Counts a job of `mode` removed from the outbox, when it is async.
    pub fn removed(&mut self, app_id: &str, mode: &str) {
        if mode == JobMode::Async.as_str() {
            self.0.entry(app_id.to_owned()).or_default().1 += 1;
        }
    }

    /// `(app id, recorded, removed)`, in app order.
    pub fn by_app(&self) -> impl Iterator<Item = (&str, i64, i64)> {
        self.0
            .iter()
            .map(|(app_id, (recorded, removed))| (app_id.as_str(), *recorded, *removed))
    }
}

/// A KV trigger of one collection, as [`sql::KV_TRIGGERS`] finds it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KvTriggerRow {
    id: String,
    script_id: String,
    key_prefix: Option<String>,
    ops: String,
}

/// A KV change that may fire triggers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvChange<'a> {
    pub writer: Writer,
    pub collection: &'a CollectionName,
    pub key: &'a KvKey,
    pub op: KvOp,
    pub value: Option<&'a serde_json::Value>,
    pub prev_value: Option<&'a serde_json::Value>,
}

impl KvChange<'_> {
    /// One async job per trigger of `triggers` (the collection's) whose key prefix and
    /// operations match, one trigger level deeper than the writer.
    pub fn jobs(&self, triggers: Vec<KvTriggerRow>) -> StoreResult<Vec<NewJob>> {
        let mut jobs = Vec::new();
        for trigger in triggers {
            let prefix_matches = trigger
                .key_prefix
                .as_deref()
                .is_none_or(|prefix| self.key.as_str().starts_with(prefix));
            if !prefix_matches || !parse_ops(&trigger.ops)?.contains(&self.op) {
                continue;
            }
            let script_id = ScriptId::parse(&trigger.script_id).map_err(corrupt("triggers"))?;
            tracing::debug!(trigger_id = %trigger.id, %script_id, "a KV trigger fires");
            let event = TriggerEvent::Kv {
                kv: KvEvent {
                    collection: self.collection.to_string(),
                    key: self.key.to_string(),
                    op: self.op,
                    value: self.value.cloned(),
                    prev_value: self.prev_value.cloned(),
                },
            };
            jobs.push(triggered_job(
                self.writer.app_id,
                script_id,
                self.writer.trigger_depth,
                event,
            ));
        }
        Ok(jobs)
    }
}

/// The job a trigger enqueues: async, due now, one level deeper than what fired it.
fn triggered_job(app_id: AppId, script_id: ScriptId, depth: u32, event: TriggerEvent) -> NewJob {
    NewJob {
        id: ExecutionId::new(),
        app_id,
        script_id,
        mode: JobMode::Async,
        payload: JobPayload::Trigger { event },
        trigger_depth: depth.saturating_add(1),
        claimed: None,
    }
}

/// One job per dead-letter trigger script of the app (`scripts`), carrying `dead_letter`.
pub(crate) fn dead_letter_jobs(
    dead_letter: &DeadLetter,
    failed_payload: serde_json::Value,
    scripts: Vec<String>,
) -> StoreResult<Vec<NewJob>> {
    scripts
        .into_iter()
        .map(|script_id| {
            let script_id = ScriptId::parse(&script_id).map_err(corrupt("triggers"))?;
            let event = TriggerEvent::DeadLetter {
                dead_letter: DeadLetterEvent {
                    id: dead_letter.id,
                    script_id: dead_letter.script_id,
                    error: dead_letter.error.clone(),
                    attempts: dead_letter.attempts,
                    payload: failed_payload.clone(),
                },
            };
            Ok(triggered_job(
                dead_letter.app_id,
                script_id,
                dead_letter.trigger_depth,
                event,
            ))
        })
        .collect()
}

/// An outbox row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: String,
    pub app_id: String,
    pub script_id: String,
    pub mode: String,
    pub source_kind: String,
    /// The JSON text of a [`JobPayload`].
    pub payload: String,
    pub trigger_depth: i64,
    pub attempt: i64,
    /// Claims come back in this order.
    pub due_at: i64,
    pub created_at: i64,
}

impl TryFrom<JobRow> for ClaimedJob {
    type Error = StoreError;

    fn try_from(row: JobRow) -> StoreResult<Self> {
        Ok(Self {
            id: ExecutionId::parse(&row.id).map_err(corrupt("outbox"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("outbox"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("outbox"))?,
            mode: job_mode(&row.mode).map_err(corrupt("outbox"))?,
            payload: serde_json::from_str(&row.payload).map_err(corrupt("outbox"))?,
            trigger_depth: small("outbox", row.trigger_depth)?,
            attempt: small("outbox", row.attempt)?,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// Claimed jobs, oldest due first (a database returns updated rows in no particular order).
pub(crate) fn claimed(mut rows: Vec<JobRow>) -> StoreResult<Vec<ClaimedJob>> {
    rows.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    records(rows)
}

/// The jobs a claimer runs now, per app, as the JSON object `{"<app id>": <jobs>}` that
/// [`fair_due_jobs`] reads.
pub(crate) fn running_jobs(running: &[(AppId, u32)]) -> String {
    let pairs: serde_json::Map<String, serde_json::Value> = running
        .iter()
        .map(|(app, jobs)| (app.to_string(), (*jobs).into()))
        .collect();
    serde_json::Value::Object(pairs).to_string()
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeadLetterRow {
    id: String,
    app_id: String,
    script_id: String,
    execution_id: String,
    source_kind: String,
    payload: String,
    error: String,
    attempts: i64,
    trigger_depth: i64,
    created_at: i64,
    resolved_at: Option<i64>,
    resolution: Option<String>,
}

impl TryFrom<DeadLetterRow> for DeadLetter {
    type Error = StoreError;

    fn try_from(row: DeadLetterRow) -> StoreResult<Self> {
        let resolution = match row.resolution.as_deref() {
            None => None,
            Some(text) => Some(Resolution::parse(text).ok_or_else(|| {
                StoreError::Internal(format!(
                    "a corrupt row in dead_letters: '{text}' is no resolution"
                ))
            })?),
        };
        Ok(Self {
            id: DeadLetterId::parse(&row.id).map_err(corrupt("dead_letters"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("dead_letters"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("dead_letters"))?,
            execution_id: ExecutionId::parse(&row.execution_id).map_err(corrupt("dead_letters"))?,
            source: row.source_kind,
            payload: serde_json::from_str(&row.payload).map_err(corrupt("dead_letters"))?,
            error: row.error,
            attempts: small("dead_letters", row.attempts)?,
            trigger_depth: small("dead_letters", row.trigger_depth)?,
            created_at: Timestamp::from_millis(row.created_at),
            resolved_at: row.resolved_at.map(Timestamp::from_millis),
            resolution,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AbandonedRow {
    execution_id: String,
    app_id: String,
    script_id: String,
    reason: String,
    created_at: i64,
}

impl TryFrom<AbandonedRow> for AbandonedExecution {
    type Error = StoreError;

    fn try_from(row: AbandonedRow) -> StoreResult<Self> {
        Ok(Self {
            execution_id: ExecutionId::parse(&row.execution_id)
                .map_err(corrupt("abandoned_executions"))?,
            app_id: AppId::parse(&row.app_id).map_err(corrupt("abandoned_executions"))?,
            script_id: ScriptId::parse(&row.script_id).map_err(corrupt("abandoned_executions"))?,
            reason: row.reason,
            created_at: Timestamp::from_millis(row.created_at),
        })
    }
}

/// What [`sql::ROUTING_FINGERPRINT`] reads. Each part moves when the route index would change:
///
/// - a route added or deleted: `routes` (and `last_route`, the newest id, for a delete and an
///   add between two polls); routes are never updated;
/// - a script's name or source changed: every update moves its `updated_at` forward by at least
///   1 ms, so `script_versions` (the sum of `updated_at - created_at`) grows. Creating a script
///   changes no route, and a script that routes point at cannot be deleted;
/// - an app renamed or its `expose_errors` changed: the same rule for apps (`app_versions`); an app created or deleted: `apps`
///   and `last_app` (deleting an app deletes its routes, which `routes` sees too).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FingerprintRow {
    apps: i64,
    last_app: String,
    app_versions: i64,
    routes: i64,
    last_route: String,
    script_versions: i64,
}

impl FingerprintRow {
    pub fn into_string(self) -> String {
        format!(
            "apps {} {} {}; routes {} {}; scripts {}",
            self.apps,
            self.last_app,
            self.app_versions,
            self.routes,
            self.last_route,
            self.script_versions
        )
    }
}

/// The `$5` of [`sql::LIST_DEAD_LETTERS`]: whether to list resolved dead letters, unresolved
/// ones, or (`None`) all.
pub(crate) fn resolved_filter(status: DeadLetterStatus) -> Option<bool> {
    match status {
        DeadLetterStatus::Unresolved => Some(false),
        DeadLetterStatus::Resolved => Some(true),
        DeadLetterStatus::All => None,
    }
}

/// A [`NewJob`] as the outbox insert binds it.
#[derive(Debug)]
pub(crate) struct JobValues {
    pub(crate) id: String,
    pub(crate) app_id: String,
    pub(crate) script_id: String,
    pub(crate) mode: String,
    pub(crate) source_kind: String,
    pub(crate) payload: String,
    pub(crate) trigger_depth: i64,
    pub(crate) status: String,
    pub(crate) attempt: i64,
    pub(crate) owner: Option<String>,
    pub(crate) lease_ms: Option<i64>,
}

impl JobValues {
    /// Pending and never claimed (attempt 0), or — with `claimed` — running, attempt 1, held by
    /// the lease's owner.
    pub fn new(job: &NewJob) -> StoreResult<Self> {
        let (status, attempt) = match job.claimed {
            Some(_) => ("running", 1),
            None => ("pending", 0),
        };
        Ok(Self {
            id: job.id.to_string(),
            app_id: job.app_id.to_string(),
            script_id: job.script_id.to_string(),
            mode: job.mode.as_str().to_owned(),
            source_kind: job.payload.source().to_owned(),
            payload: payload_text(&job.payload)?,
            trigger_depth: i64::from(job.trigger_depth),
            status: status.to_owned(),
            attempt,
            owner: job.claimed.as_ref().map(|lease| lease.owner.clone()),
            lease_ms: job.claimed.as_ref().map(|lease| span(lease.lease_ms)),
        })
    }

    pub fn all(jobs: &[NewJob]) -> StoreResult<Vec<Self>> {
        jobs.iter().map(Self::new).collect()
    }
}

/// Jobs per insert statement: 11 parameters a row keeps a statement well below SQLite's 32,766
/// and PostgreSQL's 65,535 parameters.
pub(crate) const JOBS_PER_INSERT: usize = 500;

/// `WITH job (…) AS (VALUES (…), …) ` followed by `insert`, the backend's
/// `INSERT INTO outbox … SELECT … FROM job …` (which adds the clock). At most
/// [`JOBS_PER_INSERT`] jobs, at least one.
pub(crate) fn insert_jobs<'a, DB>(jobs: &'a [JobValues], insert: &str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("");
    push_insert_jobs(&mut query, jobs, insert);
    query
}

/// Appends the statement of [`insert_jobs`] to `query`.
pub(crate) fn push_insert_jobs<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    jobs: &'a [JobValues],
    insert: &str,
) where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
{
    debug_assert!(!jobs.is_empty() && jobs.len() <= JOBS_PER_INSERT);
    query.push(concat!("WITH job (", job_value_columns!(), ") AS ("));
    query.push_values(jobs, |mut row, job| {
        row.push_bind(job.id.as_str())
            .push_bind(job.app_id.as_str())
            .push_bind(job.script_id.as_str())
            .push_bind(job.mode.as_str())
            .push_bind(job.source_kind.as_str())
            .push_bind(job.payload.as_str())
            .push_bind(job.trigger_depth)
            .push_bind(job.status.as_str())
            .push_bind(job.attempt)
            .push_bind(job.owner.as_deref())
            .push_bind(job.lease_ms);
    });
    query.push(") ").push(insert);
}

/// Appends `(id, attempt) IN (VALUES (…), …)`: the fence of a write to these attempts.
/// `attempts` must not be empty.
pub(crate) fn push_attempts<'a, DB>(query: &mut QueryBuilder<'a, DB>, attempts: &[JobAttempt])
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    query.push("(id, attempt) IN (");
    query.push_values(attempts, |mut row, attempt| {
        row.push_bind(attempt.id.to_string())
            .push_bind(i64::from(attempt.attempt));
    });
    query.push(")");
}

/// Attempts per fenced statement (2 parameters each).
pub(crate) const ATTEMPTS_PER_STATEMENT: usize = 1_000;

/// The SQL of a KV list and its bounds: keys after the window's cursor and, with a prefix, in
/// the prefix's range — bounds an index walks, never a `LIKE` (whose `%` and `_` a key may hold).
#[derive(Debug)]
pub(crate) struct KvRange {
    /// Binds `$1` app, `$2` collection, `$3` [`KvRange::from`], `$4` the rows to fetch, and
    /// `$5` [`KvRange::to`] when there is one.
    pub sql: &'static str,
    pub from: String,
    pub to: Option<String>,
}

macro_rules! list_kv {
    ($from:literal, $to:literal) => {
        concat!(
            "SELECT key, CAST(value AS TEXT) AS value FROM kv_entries ",
            "WHERE app_id = $1 AND collection = $2 AND key ",
            $from,
            " $3",
            $to,
            " ORDER BY key LIMIT $4"
        )
    };
}

impl KvRange {
    pub fn new(window: &Window, prefix: Option<&str>) -> StoreResult<Self> {
        let prefix = prefix.unwrap_or_default();
        let to = prefix_range(prefix)?;
        // One lower bound, so that both databases walk the index from it: the cursor (exclusive)
        // when it is at or past the prefix, else the prefix (inclusive).
        let (from, inclusive) = if window.after.as_str() >= prefix {
            (window.after.clone(), false)
        } else {
            (prefix.to_owned(), true)
        };
        let sql = match (inclusive, to.is_some()) {
            (false, false) => list_kv!(">", ""),
            (true, false) => list_kv!(">=", ""),
            (false, true) => list_kv!(">", " AND key < $5"),
            (true, true) => list_kv!(">=", " AND key < $5"),
        };
        Ok(Self { sql, from, to })
    }
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn records<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// A count from the database, which both backends return as a signed 64-bit integer.
pub(crate) fn count(value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Internal(format!("a negative count: {value}")))
}

/// The uniqueness rules of the schema. PostgreSQL names the constraint that refused a write;
/// SQLite names its columns in the message ("UNIQUE constraint failed: apps.slug"). Both
/// migrations give the constraints these names, so either clue leads to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UniqueRule {
    AppSlug,
    ScriptName,
    RoutePattern,
    Username,
    ApiKeyPrefix,
}

impl UniqueRule {
    const ALL: [(Self, &'static str, &'static str); 5] = [
        (Self::AppSlug, "apps_slug_key", "apps.slug"),
        (
            Self::ScriptName,
            "scripts_app_id_name_key",
            "scripts.app_id, scripts.name",
        ),
        (
            Self::RoutePattern,
            "routes_app_id_method_path_key",
            "routes.app_id, routes.method, routes.path",
        ),
        (Self::Username, "users_username_key", "users.username"),
        (Self::ApiKeyPrefix, "api_keys_prefix_key", "api_keys.prefix"),
    ];

    fn from_constraint(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, constraint, _)| *constraint == name)
            .map(|(rule, _, _)| *rule)
    }

    fn from_sqlite_message(message: &str) -> Option<Self> {
        let columns = message.strip_prefix("UNIQUE constraint failed: ")?;
        Self::ALL
            .iter()
            .find(|(_, _, cols)| *cols == columns)
            .map(|(rule, _, _)| *rule)
    }
}

/// What a write put into unique columns, so that a refusal can name the field and the value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Written<'a> {
    App {
        slug: Option<&'a AppSlug>,
    },
    Script {
        name: Option<&'a ScriptName>,
    },
    Route {
        method: RouteMethod,
        path: &'a RoutePath,
    },
    User {
        username: &'a Username,
    },
    /// Writes that touch no unique column a user chooses (sessions, deletes).
    Nothing,
}

/// The sentence a user reads when `rule` refused `written`; the same on both backends.
fn conflict_message(rule: UniqueRule, written: Written<'_>) -> String {
    match (rule, written) {
        (UniqueRule::AppSlug, Written::App { slug: Some(slug) }) => {
            format!("an app with the slug '{slug}' already exists")
        }
        (UniqueRule::AppSlug, _) => "an app with this slug already exists".to_owned(),
        (UniqueRule::ScriptName, Written::Script { name: Some(name) }) => {
            format!("a script named '{name}' already exists in this app")
        }
        (UniqueRule::ScriptName, _) => {
            "a script with this name already exists in this app".to_owned()
        }
        (UniqueRule::RoutePattern, Written::Route { method, path }) => {
            format!("this app already has a route {method} {path}")
        }
        (UniqueRule::RoutePattern, _) => {
            "this app already has a route with this method and path".to_owned()
        }
        (UniqueRule::Username, Written::User { username }) => {
            format!("the username '{username}' is taken")
        }
        (UniqueRule::Username, _) => "this username is taken".to_owned(),
        (UniqueRule::ApiKeyPrefix, _) => "an API key with this prefix exists already".to_owned(),
    }
}

/// Translates a database error: a uniqueness refusal becomes `Conflict` (with a sentence about
/// `written`), a lost or unreachable database `Unavailable`, anything else `Internal`.
pub(crate) fn db_error(err: sqlx::Error, written: Written<'_>) -> StoreError {
    match err {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                let rule = db
                    .constraint()
                    .and_then(UniqueRule::from_constraint)
                    .or_else(|| UniqueRule::from_sqlite_message(db.message()));
                return match rule {
                    Some(rule) => StoreError::Conflict(conflict_message(rule, written)),
                    // A primary key collision: ids are random, so this is a bug, not a user error.
                    None => StoreError::Internal(db.to_string()),
                };
            }
            if is_transient(db.as_ref()) {
                StoreError::Unavailable(db.to_string())
            } else {
                StoreError::Internal(db.to_string())
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err.to_string()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// [`db_error`] for reads and for writes that touch no unique column a user chooses.
pub(crate) fn query_error(err: sqlx::Error) -> StoreError {
    db_error(err, Written::Nothing)
}

/// A database error that says the database is out of reach for now, not that the query is wrong.
fn is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        // Class 08: connection exceptions; 57P01-03: shutdown or start-up; 53300: too many
        // connections.
        let code = pg.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The primary result code is the low byte of the extended one: SQLITE_BUSY (5),
        // SQLITE_LOCKED (6), SQLITE_CANTOPEN (14).
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        return matches!(primary, Some(5 | 6 | 14));
    }
    false
}

/// Translates a failed migration.
pub(crate) fn migrate_error(err: sqlx::migrate::MigrateError) -> StoreError {
    match err {
        sqlx::migrate::MigrateError::Execute(err) => db_error(err, Written::Nothing),
        other => StoreError::Internal(format!("the migrations could not be applied: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unique_rule_is_recognised_on_both_backends() {
        for (rule, constraint, columns) in UniqueRule::ALL {
            assert_eq!(
                UniqueRule::from_constraint(constraint),
                Some(rule),
                "the PostgreSQL constraint {constraint}"
            );
            assert_eq!(
                UniqueRule::from_sqlite_message(&format!("UNIQUE constraint failed: {columns}")),
                Some(rule),
                "the SQLite columns {columns}"
            );
        }
        assert_eq!(
            UniqueRule::from_sqlite_message("UNIQUE constraint failed: apps.id"),
            None,
            "a primary key is no user-facing rule"
        );
    }

    #[test]
    fn a_corrupt_row_is_an_internal_error_that_names_the_table() {
        let row = ScriptRow {
            id: ScriptId::new().to_string(),
            app_id: AppId::new().to_string(),
            name: "x".into(),
            kind: "widget".into(),
            source: String::new(),
            created_at: 0,
            updated_at: 0,
        };
        let err = Script::try_from(row).expect_err("'widget' is no script kind");
        let StoreError::Internal(message) = err else {
            panic!("expected Internal, got {err:?}");
        };
        assert!(message.contains("scripts"), "names the table: {message}");
        assert!(message.contains("widget"), "names the value: {message}");
    }
}
