//! What the two backends share, written once: the column lists and the queries that read the
//! same on both, rows as they come out of either database and their conversion into records,
//! and the translation of database errors into [`StoreError`]s — including the sentences a user
//! reads when a uniqueness rule refuses a write, which must be identical on both backends.
//!
//! The row structs derive `sqlx::FromRow` generically, so one definition decodes SQLite and
//! PostgreSQL rows alike: both schemas use TEXT ids, BIGINT milliseconds and booleans. Both
//! backends accept `$1`-style parameters, so queries without a clock read the same too.

use std::fmt::Display;

use picloud_core::{
    ApiKey, ApiKeyId, App, AppId, AppName, AppSlug, DispatchMode, Membership, Role, Route, RouteId,
    RouteMethod, RoutePath, Scope, Script, ScriptId, ScriptKind, ScriptName, Timestamp, User,
    UserId, Username,
};

use crate::{ApiKeyCredentials, RoutingEntry, StoreError, StoreResult, UserCredentials};

/// The columns of [`AppRow`], for `concat!`.
macro_rules! app_columns {
    () => {
        "id, slug, name, created_at, updated_at"
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
        "id, app_id, script_id, method, path, dispatch_mode, created_at"
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
pub(crate) use {api_key_columns, app_columns, route_columns, script_columns, user_columns};

/// The queries that read the same on both backends (no clock, no locking). Lists take the id
/// to start after and the number of rows to fetch (see [`crate::paging::Window`]).
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
    pub const COUNT_ROUTES_OF_SCRIPT: &str = "SELECT COUNT(*) FROM routes WHERE script_id = $1";
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
    /// its script's current version, in creation order.
    pub const ROUTING_ENTRIES: &str = "\
        SELECT routes.id, routes.app_id, routes.script_id, routes.method, routes.path, \
               routes.dispatch_mode, routes.created_at, \
               apps.slug AS app_slug, scripts.name AS script_name, scripts.kind AS script_kind, \
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
}

/// How far a session's lifetime may reach either way (100 years), so that `now + ttl` cannot
/// overflow a 64-bit integer on either backend.
pub(crate) const MAX_SESSION_TTL_MS: i64 = 100 * 365 * 24 * 60 * 60 * 1000;

/// `delete_script` refused while `routes` routes point at the script.
pub(crate) fn script_has_routes(routes: u64) -> StoreError {
    StoreError::Conflict(format!(
        "the script is the target of {routes} route(s); delete them first"
    ))
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
