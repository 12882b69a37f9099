//! The PostgreSQL store, for production and for several PiCloud nodes on one database.
//!
//! One [`PgPool`] of [`StoreConfig::max_connections`] connections; a caller waits at most
//! [`StoreConfig::acquire_timeout_ms`] for one, then gets `Unavailable`. The pool reconnects on
//! its own after a restart of the server. Timestamps come from the database's clock
//! (`clock_timestamp()`, not `now()`, which would stand still for a whole transaction).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use picloud_core::{
    ApiKey, ApiKeyId, App, AppId, AppName, AppSlug, Membership, Role, Route, RouteId, Script,
    ScriptId, Timestamp, User, UserId, Username,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::paging::Window;
use crate::shared::{
    api_key_columns, app_columns, count, db_error, migrate_error, records, route_columns,
    scopes_column, script_columns, script_has_routes, sql, user_columns, ApiKeyCredentialsRow,
    ApiKeyRow, AppRow, CredentialsRow, MembershipRow, RoleRow, RouteRow, RoutingRow, ScriptRow,
    UserRow, Written, MAX_SESSION_TTL_MS,
};
use crate::{
    ApiKeyCredentials, ApiKeyStore, AppPatch, AppStore, Backend, MembershipStore, NewApiKey,
    NewRoute, NewScript, Page, PageRequest, RouteStore, RoutingEntry, ScriptPatch, ScriptStore,
    SessionStore, Store, StoreConfig, StoreError, StoreResult, UserCredentials, UserStore,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database's clock in milliseconds, as SQL text for `concat!`.
macro_rules! now {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// PiCloud's stores in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (a `postgres://` or `postgresql://` URL); `Unavailable` when the server
    /// cannot be reached.
    pub async fn open(url: &str, config: &StoreConfig) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|err| {
            StoreError::InvalidInput(format!(
                "PICLOUD_DATABASE_URL is not a PostgreSQL URL this server understands: {err}"
            ))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_with(options)
            .await
            .map_err(|err| match db_error(err, Written::Nothing) {
                StoreError::Unavailable(cause) | StoreError::Internal(cause) => {
                    StoreError::Unavailable(format!("PostgreSQL cannot be reached: {cause}"))
                }
                other => other,
            })?;
        Ok(Self { pool })
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool
            .begin()
            .await
            .map_err(|err| db_error(err, Written::Nothing))
    }

    /// The pool, for stores added later that share it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl AppStore for PgStore {
    async fn create_app(&self, slug: &AppSlug, name: &AppName) -> StoreResult<App> {
        // One reading of the clock for both timestamps.
        let row: AppRow = sqlx::query_as(concat!(
            "INSERT INTO apps (id, slug, name, created_at, updated_at) ",
            "SELECT $1, $2, $3, clock.now, clock.now FROM (SELECT ",
            now!(),
            " AS now) AS clock ",
            "RETURNING ",
            app_columns!()
        ))
        .bind(AppId::new().to_string())
        .bind(slug.as_str())
        .bind(name.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|err| db_error(err, Written::App { slug: Some(slug) }))?;
        row.try_into()
    }

    async fn get_app(&self, id: AppId) -> StoreResult<Option<App>> {
        let row: Option<AppRow> = sqlx::query_as(sql::GET_APP)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(App::try_from).transpose()
    }

    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<Option<App>> {
        let row: Option<AppRow> = sqlx::query_as(sql::GET_APP_BY_SLUG)
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(App::try_from).transpose()
    }

    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>> {
        let window = Window::new(page)?;
        let rows: Vec<AppRow> = sqlx::query_as(sql::LIST_APPS)
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |app: &App| app.id.to_string()))
    }

    async fn update_app(&self, id: AppId, patch: &AppPatch) -> StoreResult<App> {
        let row: Option<AppRow> = sqlx::query_as(concat!(
            "UPDATE apps SET slug = COALESCE($2, slug), name = COALESCE($3, name), ",
            "updated_at = GREATEST(",
            now!(),
            ", updated_at) WHERE id = $1 ",
            "RETURNING ",
            app_columns!()
        ))
        .bind(id.to_string())
        .bind(patch.slug.as_ref().map(AppSlug::as_str))
        .bind(patch.name.as_ref().map(AppName::as_str))
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            db_error(
                err,
                Written::App {
                    slug: patch.slug.as_ref(),
                },
            )
        })?;
        row.ok_or(StoreError::NotFound("app"))?.try_into()
    }

    async fn delete_app(&self, id: AppId) -> StoreResult<bool> {
        let deleted = sqlx::query(sql::DELETE_APP)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        Ok(deleted > 0)
    }
}

#[async_trait]
impl ScriptStore for PgStore {
    async fn create_script(&self, script: &NewScript) -> StoreResult<Script> {
        // Selecting from apps makes a missing app "no row" rather than a foreign-key error.
        let row: Option<ScriptRow> = sqlx::query_as(concat!(
            "INSERT INTO scripts (id, app_id, name, kind, source, created_at, updated_at) ",
            "SELECT $1, apps.id, $3, $4, $5, clock.now, clock.now ",
            "FROM apps, (SELECT ",
            now!(),
            " AS now) AS clock WHERE apps.id = $2 ",
            "RETURNING ",
            script_columns!()
        ))
        .bind(ScriptId::new().to_string())
        .bind(script.app_id.to_string())
        .bind(script.name.as_str())
        .bind(script.kind.as_str())
        .bind(&script.source)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            db_error(
                err,
                Written::Script {
                    name: Some(&script.name),
                },
            )
        })?;
        row.ok_or(StoreError::NotFound("app"))?.try_into()
    }

    async fn get_script(&self, id: ScriptId) -> StoreResult<Option<Script>> {
        let row: Option<ScriptRow> = sqlx::query_as(sql::GET_SCRIPT)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(Script::try_from).transpose()
    }

    async fn list_scripts(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Script>> {
        let window = Window::new(page)?;
        let rows: Vec<ScriptRow> = sqlx::query_as(sql::LIST_SCRIPTS)
            .bind(app_id.to_string())
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |script: &Script| script.id.to_string()))
    }

    async fn update_script(&self, id: ScriptId, patch: &ScriptPatch) -> StoreResult<Script> {
        // `updated_at + 1`: two updates within one millisecond still get distinct versions.
        let row: Option<ScriptRow> = sqlx::query_as(concat!(
            "UPDATE scripts SET name = COALESCE($2, name), kind = COALESCE($3, kind), ",
            "source = COALESCE($4, source), updated_at = GREATEST(",
            now!(),
            ", updated_at + 1) ",
            "WHERE id = $1 RETURNING ",
            script_columns!()
        ))
        .bind(id.to_string())
        .bind(patch.name.as_ref().map(|name| name.as_str()))
        .bind(patch.kind.map(|kind| kind.as_str()))
        .bind(patch.source.as_deref())
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| {
            db_error(
                err,
                Written::Script {
                    name: patch.name.as_ref(),
                },
            )
        })?;
        row.ok_or(StoreError::NotFound("script"))?.try_into()
    }

    async fn delete_script(&self, id: ScriptId) -> StoreResult<bool> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        // The row lock conflicts with the key-share lock a new route takes on its script, so no
        // route can appear between the count and the delete.
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM scripts WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| db_error(err, Written::Nothing))?;
        if exists.is_none() {
            return Ok(false);
        }
        let routes: i64 = sqlx::query_scalar(sql::COUNT_ROUTES_OF_SCRIPT)
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        if routes > 0 {
            return Err(script_has_routes(count(routes)?));
        }
        let deleted = sqlx::query(sql::DELETE_SCRIPT)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl RouteStore for PgStore {
    async fn create_route(&self, route: &NewRoute) -> StoreResult<Route> {
        // The script must exist in the route's app: a route never crosses apps.
        let row: Option<RouteRow> =
            sqlx::query_as(concat!(
            "INSERT INTO routes (id, app_id, script_id, method, path, dispatch_mode, created_at) ",
            "SELECT $1, scripts.app_id, scripts.id, $4, $5, $6, ", now!(), " ",
            "FROM scripts WHERE scripts.id = $3 AND scripts.app_id = $2 ",
            "RETURNING ", route_columns!()
        ))
            .bind(RouteId::new().to_string())
            .bind(route.app_id.to_string())
            .bind(route.script_id.to_string())
            .bind(route.method.as_str())
            .bind(route.path.as_str())
            .bind(route.dispatch_mode.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| {
                db_error(
                    err,
                    Written::Route {
                        method: route.method,
                        path: &route.path,
                    },
                )
            })?;
        row.ok_or(StoreError::NotFound("script"))?.try_into()
    }

    async fn get_route(&self, id: RouteId) -> StoreResult<Option<Route>> {
        let row: Option<RouteRow> = sqlx::query_as(sql::GET_ROUTE)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(Route::try_from).transpose()
    }

    async fn list_routes(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Route>> {
        let window = Window::new(page)?;
        let rows: Vec<RouteRow> = sqlx::query_as(sql::LIST_ROUTES)
            .bind(app_id.to_string())
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |route: &Route| route.id.to_string()))
    }

    async fn list_routes_of_script(&self, script_id: ScriptId) -> StoreResult<Vec<Route>> {
        let rows: Vec<RouteRow> = sqlx::query_as(sql::LIST_ROUTES_OF_SCRIPT)
            .bind(script_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn delete_route(&self, id: RouteId) -> StoreResult<bool> {
        let deleted = sqlx::query(sql::DELETE_ROUTE)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn routing_entries(&self, app_id: Option<AppId>) -> StoreResult<Vec<RoutingEntry>> {
        let rows: Vec<RoutingRow> = sqlx::query_as(sql::ROUTING_ENTRIES)
            .bind(app_id.map(|id| id.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
        is_instance_admin: bool,
    ) -> StoreResult<User> {
        let row: UserRow = sqlx::query_as(concat!(
            "INSERT INTO users (id, username, password_hash, is_instance_admin, disabled, created_at) ",
            "VALUES ($1, $2, $3, $4, FALSE, ", now!(), ") RETURNING ", user_columns!()
        ))
        .bind(UserId::new().to_string())
        .bind(username.as_str())
        .bind(password_hash)
        .bind(is_instance_admin)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| db_error(err, Written::User { username }))?;
        row.try_into()
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(sql::GET_USER)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(User::try_from).transpose()
    }

    async fn user_credentials(&self, username: &Username) -> StoreResult<Option<UserCredentials>> {
        let row: Option<CredentialsRow> = sqlx::query_as(sql::USER_CREDENTIALS)
            .bind(username.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(UserCredentials::try_from).transpose()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let users: i64 = sqlx::query_scalar(sql::COUNT_USERS)
            .fetch_one(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        count(users)
    }

    async fn set_user_disabled(&self, id: UserId, disabled: bool) -> StoreResult<User> {
        let row: Option<UserRow> = sqlx::query_as(sql::SET_USER_DISABLED)
            .bind(id.to_string())
            .bind(disabled)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.ok_or(StoreError::NotFound("user"))?.try_into()
    }

    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>> {
        let window = Window::new(page)?;
        let rows: Vec<UserRow> = sqlx::query_as(sql::LIST_USERS)
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |user: &User| user.id.to_string()))
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(sql::SET_PASSWORD)
            .bind(id.to_string())
            .bind(password_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let row = row.ok_or(StoreError::NotFound("user"))?;
        sqlx::query(sql::DELETE_SESSIONS_OF_USER)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.try_into()
    }

    async fn set_instance_admin(&self, id: UserId, is_instance_admin: bool) -> StoreResult<User> {
        let mut tx = self.begin().await?;
        let row: Option<UserRow> = sqlx::query_as(sql::SET_INSTANCE_ADMIN)
            .bind(id.to_string())
            .bind(is_instance_admin)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let row = row.ok_or(StoreError::NotFound("user"))?;
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.try_into()
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(sql::DELETE_USER)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(deleted > 0)
    }

    async fn delete_sessions_of_user(&self, id: UserId) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(sql::DELETE_SESSIONS_OF_USER)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(deleted)
    }
}

#[async_trait]
impl MembershipStore for PgStore {
    async fn set_membership(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Membership> {
        let mut tx = self.begin().await?;
        let upserted: Option<String> = sqlx::query_scalar(sql::UPSERT_MEMBERSHIP)
            .bind(app_id.to_string())
            .bind(user_id.to_string())
            .bind(role.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        if upserted.is_none() {
            let apps: i64 = sqlx::query_scalar(sql::APP_EXISTS)
                .bind(app_id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| db_error(err, Written::Nothing))?;
            return Err(StoreError::NotFound(if apps == 0 { "app" } else { "user" }));
        }
        let row: MembershipRow = sqlx::query_as(sql::GET_MEMBERSHIP)
            .bind(app_id.to_string())
            .bind(user_id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.try_into()
    }

    async fn remove_membership(&self, app_id: AppId, user_id: UserId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(sql::DELETE_MEMBERSHIP)
            .bind(app_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(deleted > 0)
    }

    async fn list_members(&self, app_id: AppId) -> StoreResult<Vec<Membership>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(sql::LIST_MEMBERS)
            .bind(app_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn memberships_of_user(&self, user_id: UserId) -> StoreResult<Vec<(AppId, Role)>> {
        let rows: Vec<RoleRow> = sqlx::query_as(sql::MEMBERSHIPS_OF_USER)
            .bind(user_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }
}

#[async_trait]
impl ApiKeyStore for PgStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let mut tx = self.begin().await?;
        let row: Option<ApiKeyRow> = sqlx::query_as(sql::INSERT_API_KEY)
            .bind(ApiKeyId::new().to_string())
            .bind(key.user_id.to_string())
            .bind(&key.name)
            .bind(&key.prefix)
            .bind(&key.secret_hash)
            .bind(scopes_column(&key.scopes))
            .bind(key.app_id.map(|id| id.to_string()))
            .bind(key.expires_at.map(Timestamp::as_millis))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let Some(row) = row else {
            let users: i64 = sqlx::query_scalar(sql::USER_EXISTS)
                .bind(key.user_id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| db_error(err, Written::Nothing))?;
            return Err(StoreError::NotFound(if users == 0 {
                "user"
            } else {
                "app"
            }));
        };
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.try_into()
    }

    async fn get_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(sql::GET_API_KEY)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn api_key_credentials(&self, prefix: &str) -> StoreResult<Option<ApiKeyCredentials>> {
        let row: Option<ApiKeyCredentialsRow> = sqlx::query_as(concat!(
            "SELECT ",
            api_key_columns!(),
            ", secret_hash FROM api_keys WHERE prefix = $1 AND revoked = FALSE ",
            "AND (expires_at IS NULL OR expires_at > ",
            now!(),
            ")"
        ))
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(ApiKeyCredentials::try_from).transpose()
    }

    async fn touch_api_key(&self, id: ApiKeyId) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query(concat!(
            "UPDATE api_keys SET last_used_at = ",
            now!(),
            " WHERE id = $1"
        ))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: Option<UserId>) -> StoreResult<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(sql::LIST_API_KEYS)
            .bind(user_id.map(|id| id.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn revoke_api_key(&self, id: ApiKeyId) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let revoked = sqlx::query(sql::REVOKE_API_KEY)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        tx.commit()
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(revoked > 0)
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        ttl_ms: i64,
    ) -> StoreResult<Timestamp> {
        let expires_at: Option<i64> = sqlx::query_scalar(concat!(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) ",
            "SELECT $1, users.id, clock.now, clock.now + $3 ",
            "FROM users, (SELECT ",
            now!(),
            " AS now) AS clock WHERE users.id = $2 ",
            "RETURNING expires_at"
        ))
        .bind(token_hash)
        .bind(user_id.to_string())
        .bind(ttl_ms.clamp(-MAX_SESSION_TTL_MS, MAX_SESSION_TTL_MS))
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        expires_at
            .map(Timestamp::from_millis)
            .ok_or(StoreError::NotFound("user"))
    }

    async fn session_user(&self, token_hash: &[u8]) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT users.id, users.username, users.is_instance_admin, users.disabled, users.created_at ",
            "FROM sessions JOIN users ON users.id = sessions.user_id ",
            "WHERE sessions.token_hash = $1 AND sessions.expires_at > ", now!(), " ",
            "AND NOT users.disabled"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(User::try_from).transpose()
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<bool> {
        let deleted = sqlx::query(sql::DELETE_SESSION)
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn delete_expired_sessions(&self) -> StoreResult<u64> {
        let deleted = sqlx::query(concat!("DELETE FROM sessions WHERE expires_at <= ", now!()))
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        Ok(deleted)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so nodes starting together apply each migration once.
        MIGRATOR.run(&self.pool).await.map_err(migrate_error)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
