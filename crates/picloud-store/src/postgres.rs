//! The PostgreSQL store, for production and for several PiCloud nodes on one database.
//!
//! One [`PgPool`] of [`StoreConfig::max_connections`] connections; a caller waits at most
//! [`StoreConfig::acquire_timeout_ms`] for one, then gets `Unavailable`. The pool reconnects on
//! its own after a restart of the server. Timestamps come from the database's clock
//! (`clock_timestamp()`, not `now()`, which would stand still for a whole transaction).

use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use picloud_core::events::kv_value_text;
use picloud_core::services::{KvListRequest, Writer};
use picloud_core::{
    ApiKey, ApiKeyId, App, AppId, AppName, AppSlug, CollectionName, DeadLetter, DeadLetterId,
    ExecutionId, KvKey, KvOp, Membership, Resolution, Role, Route, RouteId, Script, ScriptId,
    Timestamp, Trigger, TriggerDetail, TriggerId, User, UserId, Username,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, QueryBuilder};
use tokio::runtime::Runtime;

use crate::paging::Window;
use crate::shared::{
    self, admit_kv_write, api_key_columns, app_columns, app_usage_sql, count, count_jobs,
    count_write, db_error, dead_letter_closed, dead_letter_columns, dead_letter_jobs, enqueued,
    fair_due_jobs, job_columns, json_value, keep_headers_column, kv_entry_size, migrate_error,
    ops_column, push_attempts, query_error, records, resolved_filter, route_columns, running_jobs,
    scopes_column, script_columns, script_is_a_target, span, sql, user_columns, AbandonedRow,
    ApiKeyCredentialsRow, ApiKeyRow, AppRow, CredentialsRow, DeadLetterRow, FingerprintRow,
    JobCounts, JobRow, JobValues, KvChange, KvRange, KvTriggerRow, MembershipRow, RoleRow,
    RouteRow, RoutingRow, ScriptRow, TriggerRow, UsageRow, UserRow, Written,
    ATTEMPTS_PER_STATEMENT, JOBS_PER_INSERT,
};
use crate::{
    AbandonedExecution, ApiKeyCredentials, ApiKeyStore, AppPatch, AppQuotas, AppStore, AppUsage,
    Backend, ClaimedJob, DeadLetterFilter, DeadLetterStore, JobAttempt, KvStore, KvWritten,
    MembershipStore, NewApiKey, NewApp, NewJob, NewRoute, NewScript, NewTrigger, OutboxBatch,
    OutboxCommitter, OutboxDepth, OutboxStore, Page, PageRequest, RouteStore, RoutingEntry,
    ScriptPatch, ScriptStore, SessionStore, Store, StoreConfig, StoreError, StoreResult,
    TriggerStore, UserCredentials, UserStore,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database's clock in milliseconds, as SQL text for `concat!`.
macro_rules! now {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

/// The database's clock read once for a whole statement, as SQL text for `concat!`. Unlike
/// `now!()` (volatile, read row by row) a planner can compare an index against it.
macro_rules! clock {
    () => {
        concat!("(SELECT ", now!(), ")")
    };
}

/// PiCloud's stores in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    quotas: AppQuotas,
}

impl PgStore {
    /// Deletes up to `limit` rows older than `older_than_ms` with `sql`. SKIP LOCKED in the
    /// statements: nodes sweeping at once delete different rows instead of waiting.
    async fn sweep(&self, sql: &'static str, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        if limit == 0 {
            return Ok(0);
        }
        Ok(sqlx::query(sql)
            .bind(span(older_than_ms))
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected())
    }

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
        Ok(Self {
            pool,
            quotas: config.quotas,
        })
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

/// For the statements that find outbox rows by primary key (a group commit, the heartbeat): the
/// planner is told to, because the outbox churns faster than its statistics follow. Each sync
/// request inserts a row and deletes it, autovacuum visits a database at most once a minute, and
/// with ~90 k dead rows between two visits the planner took the table for ~20 rows and its bloated
/// primary-key index for dear: each DELETE of finished attempts became two sequential scans of
/// 7,400 pages (2.5–3 ms instead of 0.06 ms), and hello at 32 connections fell from ~24 k to
/// 4–8 k req/s.
const BEGIN_BY_KEY: &str = "BEGIN; SET LOCAL enable_seqscan = off";
/// [`BEGIN_BY_KEY`] for a transaction whose commit does not wait for its WAL record to be flushed
/// (in the same round trip).
const BEGIN_BY_KEY_WITHOUT_FLUSH: &str =
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL synchronous_commit = off";

async fn commit(tx: sqlx::Transaction<'_, Postgres>) -> StoreResult<()> {
    tx.commit().await.map_err(query_error)
}

/// The outbox insert after the `job` rows of [`shared::insert_jobs`]: a job of an app that no
/// longer exists is skipped.
const INSERT_JOBS: &str = concat!(
    "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, trigger_depth, ",
    "status, attempt, owner, lease_until, due_at, created_at) ",
    "SELECT job.id, job.app_id, job.script_id, job.mode, job.source_kind, job.payload::jsonb, ",
    "job.trigger_depth, job.status, job.attempt, job.owner, clock.now + job.lease_ms, ",
    "clock.now, clock.now ",
    "FROM job JOIN apps ON apps.id = job.app_id CROSS JOIN (SELECT ",
    now!(),
    " AS now) AS clock"
);

/// Puts `jobs` into the outbox, in the caller's transaction.
async fn enqueue(conn: &mut PgConnection, jobs: &[JobValues]) -> StoreResult<()> {
    for chunk in jobs.chunks(JOBS_PER_INSERT) {
        shared::insert_jobs(chunk, INSERT_JOBS)
            .build()
            .execute(&mut *conn)
            .await
            .map_err(query_error)?;
    }
    Ok(())
}

/// The jobs of the KV triggers that `change` fires.
async fn kv_trigger_jobs(
    conn: &mut PgConnection,
    change: KvChange<'_>,
) -> StoreResult<Vec<NewJob>> {
    let triggers: Vec<KvTriggerRow> = sqlx::query_as(sql::KV_TRIGGERS)
        .bind(change.writer.app_id.to_string())
        .bind(change.collection.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error)?;
    change.jobs(triggers)
}

/// What the app holds against its quotas, its `app_usage` row locked until the transaction
/// ends: concurrent writes of one app (on any node) count one after another, so the quotas hold
/// exactly. Taken last before a commit, to hold the lock briefly. `NotFound("app")` when the app
/// is gone.
async fn lock_usage(conn: &mut PgConnection, app_id: AppId) -> StoreResult<AppUsage> {
    let row: Option<UsageRow> = sqlx::query_as(concat!(app_usage_sql!(), " FOR UPDATE"))
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error)?;
    Ok(row.ok_or(StoreError::NotFound("app"))?.into())
}

/// Checks a KV write of `bytes` that fires `jobs` against the writer's limit and its app's
/// quotas, then enqueues the jobs and counts the write; `OverLimit` (the caller's transaction
/// is to be dropped, rolling the write back) when it may not go ahead.
async fn finish_kv_write(
    conn: &mut PgConnection,
    quotas: &AppQuotas,
    writer: Writer,
    bytes: i64,
    jobs: &[NewJob],
) -> StoreResult<()> {
    enqueue(conn, &JobValues::all(jobs)?).await?;
    let usage = lock_usage(conn, writer.app_id).await?;
    admit_kv_write(writer, usage, bytes, jobs.len(), quotas).map_err(StoreError::OverLimit)?;
    count_write(conn, writer.app_id, bytes, jobs.len()).await
}

/// How often [`upsert_kv`] tries when other transactions keep inserting and deleting the key.
const UPSERT_TRIES: usize = 5;

/// Stores `value` (JSON text) of `size` under the key and returns the value and size it
/// replaces, read under the row's lock: the previous value is exactly the one this write
/// replaced, even when another transaction writes the same key at the same time.
async fn upsert_kv(
    conn: &mut PgConnection,
    app_id: AppId,
    collection: &CollectionName,
    key: &KvKey,
    value: &str,
    size: i64,
) -> StoreResult<Option<(String, i64)>> {
    for _ in 0..UPSERT_TRIES {
        let prev: Option<(String, i64)> = sqlx::query_as(
            "SELECT CAST(value AS TEXT), size FROM kv_entries \
             WHERE app_id = $1 AND collection = $2 AND key = $3 FOR UPDATE",
        )
        .bind(app_id.to_string())
        .bind(collection.as_str())
        .bind(key.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error)?;
        if let Some(prev) = prev {
            sqlx::query(concat!(
                "UPDATE kv_entries SET value = $4::jsonb, size = $5, updated_at = GREATEST(",
                now!(),
                ", updated_at) WHERE app_id = $1 AND collection = $2 AND key = $3"
            ))
            .bind(app_id.to_string())
            .bind(collection.as_str())
            .bind(key.as_str())
            .bind(value)
            .bind(size)
            .execute(&mut *conn)
            .await
            .map_err(query_error)?;
            return Ok(Some(prev));
        }
        // A conflicting insert waits for the other transaction; once it committed, the next
        // round finds its row and locks it.
        let inserted = sqlx::query(concat!(
            "INSERT INTO kv_entries (app_id, collection, key, value, size, created_at, ",
            "updated_at) ",
            "SELECT apps.id, $2, $3, $4::jsonb, $5, clock.now, clock.now ",
            "FROM apps, (SELECT ",
            now!(),
            " AS now) AS clock WHERE apps.id = $1 ",
            "ON CONFLICT (app_id, collection, key) DO NOTHING"
        ))
        .bind(app_id.to_string())
        .bind(collection.as_str())
        .bind(key.as_str())
        .bind(value)
        .bind(size)
        .execute(&mut *conn)
        .await
        .map_err(query_error)?
        .rows_affected();
        if inserted > 0 {
            return Ok(None);
        }
        let apps: i64 = sqlx::query_scalar(sql::APP_EXISTS)
            .bind(app_id.to_string())
            .fetch_one(&mut *conn)
            .await
            .map_err(query_error)?;
        if apps == 0 {
            return Err(StoreError::NotFound("app"));
        }
    }
    Err(StoreError::Unavailable(format!(
        "the KV entry '{key}' was inserted and deleted by others during {UPSERT_TRIES} tries"
    )))
}

/// One group commit: new jobs in, finished attempts out (fenced by attempt).
/// Appends `id IN (SELECT id … ORDER BY id FOR UPDATE)` with the fence of
/// [`push_attempts`]: a write to several attempts' rows that takes their locks in id order. The
/// heartbeat's lease extension and a group commit's deletions (two connections of one node) both
/// do, so they never wait for each other in a cycle; in any order they deadlocked now and then,
/// and PostgreSQL aborted one of them.
fn push_attempts_locked_in_order(query: &mut QueryBuilder<'_, Postgres>, attempts: &[JobAttempt]) {
    query.push("id IN (SELECT id FROM outbox WHERE ");
    push_attempts(query, attempts);
    query.push(" ORDER BY id FOR UPDATE)");
}

async fn write_batch(
    conn: &mut PgConnection,
    jobs: &[JobValues],
    finished: &[JobAttempt],
) -> StoreResult<()> {
    enqueue(conn, jobs).await?;
    let mut counts = JobCounts::default();
    counts.recorded(jobs);
    for chunk in finished.chunks(ATTEMPTS_PER_STATEMENT) {
        let mut query = QueryBuilder::new("DELETE FROM outbox WHERE ");
        push_attempts_locked_in_order(&mut query, chunk);
        query.push(" RETURNING app_id, mode");
        let removed: Vec<(String, String)> = query
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(query_error)?;
        for (app_id, mode) in &removed {
            counts.removed(app_id, mode);
        }
    }
    count_jobs(conn, &counts).await
}

#[async_trait]
impl AppStore for PgStore {
    async fn create_app(&self, app: &NewApp) -> StoreResult<App> {
        let id = AppId::new();
        let mut tx = self.begin().await?;
        // One reading of the clock for both timestamps.
        let row: AppRow = sqlx::query_as(concat!(
            "INSERT INTO apps (id, slug, name, expose_errors, created_at, updated_at) ",
            "SELECT $1, $2, $3, $4, clock.now, clock.now FROM (SELECT ",
            now!(),
            " AS now) AS clock ",
            "RETURNING ",
            app_columns!()
        ))
        .bind(id.to_string())
        .bind(app.slug.as_str())
        .bind(app.name.as_str())
        .bind(app.expose_errors)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| {
            db_error(
                err,
                Written::App {
                    slug: Some(&app.slug),
                },
            )
        })?;
        for usage in [sql::INSERT_APP_USAGE, sql::INSERT_APP_JOB_COUNTS] {
            sqlx::query(usage)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(query_error)?;
        }
        commit(tx).await?;
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
        // `updated_at + 1`: every change is a new version, which the routing fingerprint sees.
        let row: Option<AppRow> = sqlx::query_as(concat!(
            "UPDATE apps SET slug = COALESCE($2, slug), name = COALESCE($3, name), ",
            "expose_errors = COALESCE($4, expose_errors), updated_at = GREATEST(",
            now!(),
            ", updated_at + 1) WHERE id = $1 ",
            "RETURNING ",
            app_columns!()
        ))
        .bind(id.to_string())
        .bind(patch.slug.as_ref().map(AppSlug::as_str))
        .bind(patch.name.as_ref().map(AppName::as_str))
        .bind(patch.expose_errors)
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

    async fn app_usage(&self, id: AppId) -> StoreResult<Option<AppUsage>> {
        let row: Option<UsageRow> = sqlx::query_as(sql::APP_USAGE)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(row.map(AppUsage::from))
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
        // The row lock conflicts with the key-share lock a new route or trigger takes on its
        // script, so none can appear between the count and the delete.
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM scripts WHERE id = $1 FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|err| db_error(err, Written::Nothing))?;
        if exists.is_none() {
            return Ok(false);
        }
        let (routes, triggers): (i64, i64) = sqlx::query_as(sql::COUNT_TARGETS_OF_SCRIPT)
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        if routes > 0 || triggers > 0 {
            return Err(script_is_a_target(count(routes)?, count(triggers)?));
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
            "INSERT INTO routes (id, app_id, script_id, method, path, dispatch_mode, keep_headers, ",
            "created_at) SELECT $1, scripts.app_id, scripts.id, $4, $5, $6, $7, ", now!(), " ",
            "FROM scripts WHERE scripts.id = $3 AND scripts.app_id = $2 ",
            "RETURNING ", route_columns!()
        ))
            .bind(RouteId::new().to_string())
            .bind(route.app_id.to_string())
            .bind(route.script_id.to_string())
            .bind(route.method.as_str())
            .bind(route.path.as_str())
            .bind(route.dispatch_mode.as_str())
            .bind(keep_headers_column(&route.keep_headers))
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

    async fn routing_fingerprint(&self) -> StoreResult<String> {
        let row: FingerprintRow = sqlx::query_as(sql::ROUTING_FINGERPRINT)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(row.into_string())
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
            .bind(key.name.as_str())
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
        .bind(span(ttl_ms))
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
impl KvStore for PgStore {
    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Option<serde_json::Value>> {
        let value: Option<String> = sqlx::query_scalar(sql::GET_KV)
            .bind(app_id.to_string())
            .bind(collection.as_str())
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        value
            .map(|text| json_value("kv_entries", &text))
            .transpose()
    }

    async fn kv_has(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<bool> {
        let entries: i64 = sqlx::query_scalar(sql::COUNT_KV)
            .bind(app_id.to_string())
            .bind(collection.as_str())
            .bind(key.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(entries > 0)
    }

    async fn kv_set(
        &self,
        writer: Writer,
        collection: &CollectionName,
        key: &KvKey,
        value: &serde_json::Value,
    ) -> StoreResult<KvWritten> {
        let text = kv_value_text(value).map_err(|err| StoreError::InvalidInput(err.message))?;
        let size = kv_entry_size(collection, key, &text);
        let mut tx = self.begin().await?;
        let prev = upsert_kv(&mut tx, writer.app_id, collection, key, &text, size).await?;
        let prev_size = prev.as_ref().map_or(0, |(_, size)| *size);
        let prev_value = prev
            .map(|(text, _)| json_value("kv_entries", &text))
            .transpose()?;
        let change = KvChange {
            writer,
            collection,
            key,
            op: KvOp::Set,
            value: Some(value),
            prev_value: prev_value.as_ref(),
        };
        let jobs = kv_trigger_jobs(&mut tx, change).await?;
        finish_kv_write(&mut tx, &self.quotas, writer, size - prev_size, &jobs).await?;
        commit(tx).await?;
        Ok(KvWritten {
            prev_value,
            jobs_enqueued: enqueued(&jobs),
        })
    }

    async fn kv_delete(
        &self,
        writer: Writer,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<KvWritten> {
        let mut tx = self.begin().await?;
        let prev: Option<(String, i64)> = sqlx::query_as(sql::DELETE_KV)
            .bind(writer.app_id.to_string())
            .bind(collection.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let Some((prev, prev_size)) = prev else {
            return Ok(KvWritten {
                prev_value: None,
                jobs_enqueued: 0,
            });
        };
        let prev_value = json_value("kv_entries", &prev)?;
        let change = KvChange {
            writer,
            collection,
            key,
            op: KvOp::Delete,
            value: None,
            prev_value: Some(&prev_value),
        };
        let jobs = kv_trigger_jobs(&mut tx, change).await?;
        finish_kv_write(&mut tx, &self.quotas, writer, -prev_size, &jobs).await?;
        commit(tx).await?;
        Ok(KvWritten {
            prev_value: Some(prev_value),
            jobs_enqueued: enqueued(&jobs),
        })
    }

    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> StoreResult<Page<(String, serde_json::Value)>> {
        let window = Window::of_keys(request)?;
        let range = KvRange::new(&window, request.prefix.as_deref())?;
        let mut query = sqlx::query_as::<_, (String, String)>(range.sql)
            .bind(app_id.to_string())
            .bind(collection.as_str())
            .bind(&range.from)
            .bind(window.fetch());
        if let Some(to) = &range.to {
            query = query.bind(to);
        }
        let rows = query.fetch_all(&self.pool).await.map_err(query_error)?;
        let items = rows
            .into_iter()
            .map(|(key, value)| Ok((key, json_value("kv_entries", &value)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(window.page(items, |(key, _)| key.clone()))
    }
}

#[async_trait]
impl TriggerStore for PgStore {
    async fn create_trigger(&self, trigger: &NewTrigger) -> StoreResult<Trigger> {
        let id = TriggerId::new().to_string();
        let mut tx = self.begin().await?;
        // The script must exist in the trigger's app: a trigger never crosses apps.
        let inserted = sqlx::query(concat!(
            "INSERT INTO triggers (id, app_id, script_id, kind, created_at) ",
            "SELECT $1, scripts.app_id, scripts.id, $4, ",
            now!(),
            " FROM scripts WHERE scripts.id = $3 AND scripts.app_id = $2"
        ))
        .bind(&id)
        .bind(trigger.app_id.to_string())
        .bind(trigger.script_id.to_string())
        .bind(trigger.detail.kind())
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::NotFound("script"));
        }
        let details = match &trigger.detail {
            TriggerDetail::Kv {
                collection,
                key_prefix,
                ops,
            } => sqlx::query(sql::INSERT_KV_TRIGGER_DETAILS)
                .bind(&id)
                .bind(collection.as_str())
                .bind(key_prefix.as_deref())
                .bind(ops_column(ops)),
            TriggerDetail::DeadLetter => {
                sqlx::query(sql::INSERT_DEAD_LETTER_TRIGGER_DETAILS).bind(&id)
            }
        };
        details.execute(&mut *tx).await.map_err(query_error)?;
        let row: TriggerRow = sqlx::query_as(sql::GET_TRIGGER)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
        commit(tx).await?;
        row.try_into()
    }

    async fn get_trigger(&self, id: TriggerId) -> StoreResult<Option<Trigger>> {
        let row: Option<TriggerRow> = sqlx::query_as(sql::GET_TRIGGER)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        row.map(Trigger::try_from).transpose()
    }

    async fn list_triggers(&self, app_id: AppId, page: &PageRequest) -> StoreResult<Page<Trigger>> {
        let window = Window::new(page)?;
        let rows: Vec<TriggerRow> = sqlx::query_as(sql::LIST_TRIGGERS)
            .bind(app_id.to_string())
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(window.page(records(rows)?, |trigger: &Trigger| trigger.id.to_string()))
    }

    async fn delete_trigger(&self, id: TriggerId) -> StoreResult<bool> {
        let deleted = sqlx::query(sql::DELETE_TRIGGER)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected();
        Ok(deleted > 0)
    }
}

/// The outbox's group commits on the recorder's thread, through a connection of its own that a
/// runtime of its own drives: a commit takes no hop through the server's runtime (its reactor
/// would otherwise have to wake this thread for every reply). A connection that failed is
/// dropped and opened again at the next commit, and one idle for a while is pinged first (as
/// the pool does before lending one), so a restart of PostgreSQL is survived.
struct PgCommitter {
    options: PgConnectOptions,
    /// How long opening the connection may take: the pool's acquire timeout.
    connect_timeout: Duration,
    // Before `runtime`: fields drop in order, and the socket belongs to that runtime.
    conn: Option<PgConnection>,
    /// When `conn` was last used.
    used_at: Instant,
    runtime: OwnRuntime,
}

/// The committer's runtime. Dropped, it shuts down in the background: a runtime dropped in async
/// code (a test's, a platform's that failed to start) would panic.
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.0
            .as_ref()
            .expect("the runtime is taken only when dropped")
            .block_on(future)
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// How long the committer's connection may sit idle before it is pinged before a commit.
const COMMITTER_IDLE_PING: Duration = Duration::from_secs(1);

impl OutboxCommitter for PgCommitter {
    fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<()> {
        let Self {
            options,
            connect_timeout,
            conn,
            used_at,
            runtime,
        } = self;
        let idle = used_at.elapsed() >= COMMITTER_IDLE_PING;
        *used_at = Instant::now();
        runtime.block_on(async {
            if let Some(connection) = conn.as_mut().filter(|_| idle) {
                if connection.ping().await.is_err() {
                    *conn = None;
                }
            }
            let connection = match conn {
                Some(connection) => connection,
                None => {
                    let connect = PgConnection::connect_with(options);
                    let connected = tokio::time::timeout(*connect_timeout, connect)
                        .await
                        .map_err(|_| {
                            StoreError::Unavailable(format!(
                                "no connection within {} ms",
                                connect_timeout.as_millis()
                            ))
                        })?;
                    conn.insert(connected.map_err(query_error)?)
                }
            };
            let committed = commit_batch(connection, batch).await;
            if matches!(committed, Err(StoreError::Unavailable(_))) {
                *conn = None;
            }
            committed
        })
    }
}

/// Writes `batch` in one transaction on `conn`.
async fn commit_batch(conn: &mut PgConnection, batch: &OutboxBatch) -> StoreResult<()> {
    let jobs = JobValues::all(&batch.enqueue)?;
    // Unless durable, the commit returns before its WAL record is flushed; a crash may lose it.
    let begin = if batch.durable {
        conn.begin_with(BEGIN_BY_KEY).await
    } else {
        conn.begin_with(BEGIN_BY_KEY_WITHOUT_FLUSH).await
    };
    let mut tx = begin.map_err(|err| db_error(err, Written::Nothing))?;
    write_batch(&mut tx, &jobs, &batch.finished).await?;
    commit(tx).await
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn commit_outbox(&self, batch: &OutboxBatch) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await.map_err(query_error)?;
        commit_batch(&mut conn, batch).await
    }

    fn outbox_committer(&self) -> StoreResult<Box<dyn OutboxCommitter>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| {
                StoreError::Internal(format!("the outbox committer's runtime: {err}"))
            })?;
        Ok(Box::new(PgCommitter {
            options: (*self.pool.connect_options()).clone(),
            connect_timeout: self.pool.options().get_acquire_timeout(),
            conn: None,
            used_at: Instant::now(),
            runtime: OwnRuntime(Some(runtime)),
        }))
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        limit: u32,
        per_app: u32,
        running: &[(AppId, u32)],
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Rows are locked under FOR UPDATE SKIP LOCKED: two nodes claiming at once never wait
        // for, nor take, each other's rows. Each kind of due row is read on its own, at most
        // `limit` of each: an OR of the two made PostgreSQL fetch and sort every due row before
        // the LIMIT (23.7 ms with 66,000 pending jobs, against 0.25 ms read apart). Expired
        // leases come first, in the order of their partial index, so a backlog of new jobs
        // cannot hold back the recovery of a dead node's work. The fair pick of pending rows is
        // read first (a recursive walk, which FOR UPDATE may not lock), then its rows are locked
        // in turn order: one another node holds is skipped for the next, so a claim that comes
        // back short means nothing more is due for this node.
        // The commit does not wait for the WAL flush (an fsync: 1–3 ms here, and claims run one
        // after another): a claim lost to a crash only means the job is claimed again, which
        // at-least-once allows. Each claim is planned for its own limit and the table as it is
        // now: the prepared statement's cached generic plan, made while the outbox was small,
        // took 100–350 ms per claim with 65 k jobs pending (a backlog drained at ~200 jobs/s).
        let mut tx = self
            .pool
            .begin_with(concat!(
                "BEGIN; SET LOCAL synchronous_commit = off; ",
                "SET LOCAL plan_cache_mode = force_custom_plan"
            ))
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let rows: Vec<JobRow> = sqlx::query_as(concat!(
            fair_due_jobs!(
                "SELECT key, CAST(value AS BIGINT) FROM jsonb_each_text(CAST($5 AS JSONB))",
                clock!()
            ),
            ", expired AS (SELECT id FROM outbox WHERE status = 'running' AND lease_until <= ",
            clock!(),
            " ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED), ",
            "pending AS (SELECT outbox.id FROM fair JOIN outbox ON outbox.id = fair.id ",
            "WHERE outbox.status = 'pending' AND outbox.due_at <= ",
            clock!(),
            " ORDER BY fair.turn, fair.due_at, fair.id LIMIT $2 FOR UPDATE OF outbox SKIP LOCKED) ",
            "UPDATE outbox SET status = 'running', owner = $1, attempt = attempt + 1, ",
            "lease_until = ",
            clock!(),
            " + $3 ",
            "WHERE id IN (SELECT id FROM expired UNION ALL SELECT id FROM pending LIMIT $2) ",
            "RETURNING ",
            job_columns!()
        ))
        .bind(owner)
        .bind(i64::from(limit))
        .bind(span(lease_ms))
        .bind(i64::from(per_app))
        .bind(running_jobs(running))
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error)?;
        commit(tx).await?;
        shared::claimed(rows)
    }

    async fn extend_leases(
        &self,
        owner: &str,
        jobs: &[JobAttempt],
        lease_ms: i64,
    ) -> StoreResult<u64> {
        if jobs.is_empty() {
            return Ok(0);
        }
        // A lost extension only matters if this process died, and then its leases should lapse.
        let mut tx = self
            .pool
            .begin_with(BEGIN_BY_KEY_WITHOUT_FLUSH)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let mut extended = 0;
        for chunk in jobs.chunks(ATTEMPTS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::new(concat!("UPDATE outbox SET lease_until = ", now!(), " + "));
            query
                .push_bind(span(lease_ms))
                .push(" WHERE status = 'running' AND owner = ")
                .push_bind(owner)
                .push(" AND ");
            push_attempts_locked_in_order(&mut query, chunk);
            extended += query
                .build()
                .execute(&mut *tx)
                .await
                .map_err(query_error)?
                .rows_affected();
        }
        commit(tx).await?;
        Ok(extended)
    }

    async fn retry_job(&self, job: JobAttempt, delay_ms: i64, error: &str) -> StoreResult<bool> {
        let retried = sqlx::query(concat!(
            "UPDATE outbox SET status = 'pending', owner = NULL, lease_until = NULL, ",
            "due_at = ",
            now!(),
            " + $3, last_error = $4 WHERE id = $1 AND attempt = $2"
        ))
        .bind(job.id.to_string())
        .bind(i64::from(job.attempt))
        .bind(span(delay_ms))
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(query_error)?
        .rows_affected();
        Ok(retried > 0)
    }

    async fn dead_letter_job(
        &self,
        job: JobAttempt,
        error: &str,
    ) -> StoreResult<Option<DeadLetter>> {
        let mut tx = self.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(sql::DELETE_JOB)
            .bind(job.id.to_string())
            .bind(i64::from(job.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let Some(failed) = row else {
            return Ok(None);
        };
        let row: DeadLetterRow = sqlx::query_as(concat!(
            "INSERT INTO dead_letters (id, app_id, script_id, execution_id, source_kind, mode, ",
            "payload, error, attempts, trigger_depth, created_at) ",
            "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, ",
            now!(),
            ") RETURNING ",
            dead_letter_columns!()
        ))
        .bind(DeadLetterId::new().to_string())
        .bind(&failed.app_id)
        .bind(&failed.script_id)
        .bind(&failed.id)
        .bind(&failed.source_kind)
        .bind(&failed.mode)
        .bind(&failed.payload)
        .bind(error)
        .bind(failed.attempt)
        .bind(failed.trigger_depth)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error)?;
        let dead_letter = DeadLetter::try_from(row)?;
        let scripts: Vec<String> = sqlx::query_scalar(sql::DEAD_LETTER_TRIGGER_SCRIPTS)
            .bind(&failed.app_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error)?;
        let payload = json_value("outbox", &failed.payload)?;
        let jobs = JobValues::all(&dead_letter_jobs(&dead_letter, payload, scripts)?)?;
        enqueue(&mut tx, &jobs).await?;
        let mut counts = JobCounts::default();
        counts.removed(&failed.app_id, &failed.mode);
        counts.recorded(&jobs);
        count_jobs(&mut *tx, &counts).await?;
        commit(tx).await?;
        Ok(Some(dead_letter))
    }

    async fn fail_dead_letter_handler(
        &self,
        job: JobAttempt,
        dead_letter: DeadLetterId,
        error: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(sql::DELETE_JOB)
            .bind(job.id.to_string())
            .bind(i64::from(job.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let Some(handler) = row else {
            return Ok(false);
        };
        sqlx::query(concat!(
            "UPDATE dead_letters SET resolution = 'handler_failed', resolved_at = ",
            now!(),
            ", handler_error = $2 WHERE id = $1 AND resolved_at IS NULL"
        ))
        .bind(dead_letter.to_string())
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        count_jobs(&mut *tx, &JobCounts::removing(&handler)).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn abandon_job(&self, job: JobAttempt, reason: &str) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(sql::DELETE_JOB)
            .bind(job.id.to_string())
            .bind(i64::from(job.attempt))
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let Some(abandoned) = row else {
            return Ok(false);
        };
        sqlx::query(concat!(
            "INSERT INTO abandoned_executions (execution_id, app_id, script_id, reason, created_at) ",
            "VALUES ($1, $2, $3, $4, ",
            now!(),
            ")"
        ))
        .bind(&abandoned.id)
        .bind(&abandoned.app_id)
        .bind(&abandoned.script_id)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        count_jobs(&mut *tx, &JobCounts::removing(&abandoned)).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn release_jobs(&self, owner: &str) -> StoreResult<u64> {
        let released = sqlx::query(concat!(
            "UPDATE outbox SET status = 'pending', owner = NULL, lease_until = NULL, due_at = ",
            now!(),
            " WHERE status = 'running' AND owner = $1"
        ))
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_error)?
        .rows_affected();
        Ok(released)
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let (pending, running): (i64, i64) = sqlx::query_as(sql::OUTBOX_DEPTH)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(OutboxDepth {
            pending: count(pending)?,
            running: count(running)?,
        })
    }
}

/// Closes an open dead letter as `$2`, returning it; no row when it is closed already.
const CLOSE_DEAD_LETTER: &str = concat!(
    "UPDATE dead_letters SET resolution = $2, resolved_at = ",
    now!(),
    " WHERE id = $1 AND resolved_at IS NULL RETURNING ",
    dead_letter_columns!()
);

#[async_trait]
impl DeadLetterStore for PgStore {
    async fn get_dead_letter(&self, id: DeadLetterId) -> StoreResult<Option<DeadLetter>> {
        let row: Option<DeadLetterRow> = sqlx::query_as(sql::GET_DEAD_LETTER)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        row.map(DeadLetter::try_from).transpose()
    }

    async fn list_dead_letters(
        &self,
        app_id: AppId,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        let window = Window::new(page)?;
        let rows: Vec<DeadLetterRow> = sqlx::query_as(sql::LIST_DEAD_LETTERS)
            .bind(app_id.to_string())
            .bind(window.before())
            .bind(window.fetch())
            .bind(filter.script_id.map(|id| id.to_string()))
            .bind(resolved_filter(filter.status))
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(window.page(records(rows)?, |dead_letter: &DeadLetter| {
            dead_letter.id.to_string()
        }))
    }

    async fn count_unresolved_dead_letters(&self, app_id: AppId) -> StoreResult<u64> {
        let unresolved: i64 = sqlx::query_scalar(sql::COUNT_UNRESOLVED_DEAD_LETTERS)
            .bind(app_id.to_string())
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        count(unresolved)
    }

    async fn replay_dead_letter(
        &self,
        id: DeadLetterId,
        execution_id: ExecutionId,
    ) -> StoreResult<DeadLetter> {
        let mut tx = self.begin().await?;
        // The row lock makes a concurrent replay or resolve wait, then find it closed.
        let row: Option<DeadLetterRow> = sqlx::query_as(concat!(
            "SELECT ",
            dead_letter_columns!(),
            " FROM dead_letters WHERE id = $1 FOR UPDATE"
        ))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error)?;
        let dead_letter = DeadLetter::try_from(row.ok_or(StoreError::NotFound("dead letter"))?)?;
        if dead_letter.resolution.is_some() {
            return Err(dead_letter_closed(&dead_letter));
        }
        sqlx::query(concat!(
            "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, ",
            "trigger_depth, status, attempt, due_at, created_at) ",
            "SELECT $2, app_id, script_id, 'async', source_kind, payload, trigger_depth, ",
            "'pending', 0, clock.now, clock.now ",
            "FROM dead_letters, (SELECT ",
            now!(),
            " AS now) AS clock WHERE id = $1"
        ))
        .bind(id.to_string())
        .bind(execution_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        let row: DeadLetterRow = sqlx::query_as(CLOSE_DEAD_LETTER)
            .bind(id.to_string())
            .bind(Resolution::Replayed.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
        // Last, like every count: the lock on the app's usage is held only through the commit.
        lock_usage(&mut tx, dead_letter.app_id)
            .await?
            .admit(0, 1, &self.quotas)
            .map_err(StoreError::OverLimit)?;
        count_write(&mut *tx, dead_letter.app_id, 0, 1).await?;
        commit(tx).await?;
        row.try_into()
    }

    async fn resolve_dead_letter(&self, id: DeadLetterId) -> StoreResult<DeadLetter> {
        let row: Option<DeadLetterRow> = sqlx::query_as(CLOSE_DEAD_LETTER)
            .bind(id.to_string())
            .bind(Resolution::Resolved.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error)?;
        if let Some(row) = row {
            return row.try_into();
        }
        // Closed already (or never there): a closed dead letter never opens again.
        let closed = self
            .get_dead_letter(id)
            .await?
            .ok_or(StoreError::NotFound("dead letter"))?;
        Err(dead_letter_closed(&closed))
    }

    async fn sweep_dead_letters(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        let sql = concat!(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ",
            "WHERE created_at < ",
            clock!(),
            " - $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        self.sweep(sql, older_than_ms, limit).await
    }

    async fn sweep_abandoned_executions(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        let sql = concat!(
            "DELETE FROM abandoned_executions WHERE execution_id IN (SELECT execution_id ",
            "FROM abandoned_executions WHERE created_at < ",
            clock!(),
            " - $1 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        );
        self.sweep(sql, older_than_ms, limit).await
    }

    async fn list_abandoned_executions(
        &self,
        app_id: AppId,
        page: &PageRequest,
    ) -> StoreResult<Page<AbandonedExecution>> {
        let window = Window::new(page)?;
        let rows: Vec<AbandonedRow> = sqlx::query_as(sql::LIST_ABANDONED_EXECUTIONS)
            .bind(app_id.to_string())
            .bind(window.before())
            .bind(window.fetch())
            .fetch_all(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(
            window.page(records(rows)?, |abandoned: &AbandonedExecution| {
                abandoned.execution_id.to_string()
            }),
        )
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn quotas(&self) -> &AppQuotas {
        &self.quotas
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
