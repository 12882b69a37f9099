//! The SQLite store, PiCloud's embedded default.
//!
//! - WAL mode, so readers never wait for the writer and the writer never waits for readers.
//! - Two pools on one file: a writer pool of exactly one connection, so writes queue in process
//!   instead of failing with "database is locked", and a reader pool of
//!   [`StoreConfig::max_connections`] connections that refuse writes (`query_only`). The outbox's
//!   group commits write through a connection of their own (`committer`), which takes turns with
//!   the writer pool's through a lock in process (`WriterConnection`).
//! - Every write runs in a `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so a
//!   read-then-write never fails half-way when another process (`picloud migrate`, a CLI
//!   command) holds the lock; `busy_timeout` (5 s) waits for that process instead.
//! - `synchronous = FULL`: an admin write is on disk when the call returns.
//! - Scripts' KV writes are group-committed (`group_commit`): the writes that arrive while a
//!   commit is in flight share the next transaction and its fsync.
//! - Timestamps come from SQLite's clock (`unixepoch('now', 'subsec')`, SQLite ≥ 3.42; the
//!   bundled library is newer), which is stable within one statement.
//! - On Unix the data directory and the database file PiCloud creates are private to its user
//!   (`0700`, `0600`, and so the `-wal` and `-shm` files too); `files` says how.

mod group_commit;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use picloud_core::events::kv_value_text;
use picloud_core::services::{KvListRequest, Writer};
use picloud_core::{
    ApiKey, ApiKeyId, App, AppId, AppName, AppSlug, CollectionName, DeadLetter, DeadLetterId,
    ExecutionId, KvKey, KvOp, Membership, Resolution, Role, Route, RouteId, Script, ScriptId,
    Timestamp, Trigger, TriggerDetail, TriggerId, User, UserId, Username,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, FromRow, QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::paging::Window;
use crate::shared::{
    self, admit_kv_write, api_key_columns, app_columns, app_usage_sql, count, count_jobs,
    count_write, db_error, dead_letter_closed, dead_letter_columns, dead_letter_jobs, enqueued,
    fair_due_jobs, job_columns, json_value, keep_headers_column, kv_entry_size, kv_triggers_sql,
    migrate_error, ops_column, push_attempts, query_error, records, resolved_filter, route_columns,
    running_jobs, scopes_column, script_columns, script_is_a_target, span, sql, user_columns,
    AbandonedRow, ApiKeyCredentialsRow, ApiKeyRow, AppRow, CredentialsRow, DeadLetterRow,
    FingerprintRow, JobCounts, JobRow, JobValues, KvChange, KvRange, KvTriggerRow, MembershipRow,
    RoleRow, RouteRow, RoutingRow, ScriptRow, TriggerRow, UsageRow, UserRow, Written,
    ATTEMPTS_PER_STATEMENT, JOBS_PER_INSERT,
};
use crate::{
    AbandonedExecution, ApiKeyCredentials, ApiKeyStore, AppPatch, AppQuotas, AppStore, AppUsage,
    Backend, ClaimedJob, DeadLetterFilter, DeadLetterStore, JobAttempt, KvStore, KvWritten,
    MembershipStore, NewApiKey, NewApp, NewRoute, NewScript, NewTrigger, OutboxBatch,
    OutboxCommitter, OutboxDepth, OutboxStore, Page, PageRequest, RouteStore, RoutingEntry,
    ScriptPatch, ScriptStore, SessionStore, Store, StoreConfig, StoreError, StoreResult,
    TriggerStore, UserCredentials, UserStore,
};

use self::committer::SqliteCommitter;
use self::group_commit::{Applied, KvWrite, KvWriteQueue};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The database's clock in milliseconds, as SQL text for `concat!`.
macro_rules! now {
    () => {
        "CAST(unixepoch('now', 'subsec') * 1000 AS INTEGER)"
    };
}

mod committer;
mod files;

/// PiCloud's stores in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: writes serialize here rather than on SQLite's file lock.
    writer: WriterConnection,
    /// Connections that refuse writes (`query_only`); WAL lets them read while the writer writes.
    reader: SqlitePool,
    /// Scripts' KV writes, on their way to the group-commit task that writes them on `writer`.
    kv_writes: KvWriteQueue,
    path: PathBuf,
    quotas: AppQuotas,
}

impl SqliteStore {
    /// Deletes up to `limit` rows older than `older_than_ms` with `sql` (a sweep).
    async fn sweep(&self, sql: &'static str, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql)
            .bind(span(older_than_ms))
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted)
    }

    /// Opens (creating when missing, private to this user) the database file at `path` and its
    /// directory, and starts the task that group-commits KV writes (on the current tokio runtime;
    /// it ends when the last clone of the store is dropped).
    pub async fn open(path: &Path, config: &StoreConfig) -> StoreResult<Self> {
        files::prepare(path).await?;
        let acquire_timeout = Duration::from_millis(config.acquire_timeout_ms);
        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .synchronous(SqliteSynchronous::Full);
        // The writer comes first: it creates the file and switches it to WAL (a lasting
        // property of the file) before any reader opens it.
        // No ping before each acquire: a connection to a local file does not go stale, and the
        // ping is a round trip to the connection's thread on every query.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout)
            .connect_with(
                common
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal),
            )
            .await
            .map_err(|err| opening(path, err))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout)
            .connect_with(common.pragma("query_only", "ON"))
            .await
            .map_err(|err| opening(path, err))?;
        let writer = WriterConnection {
            pool: writer,
            lock: Arc::new(Mutex::new(())),
        };
        Ok(Self {
            kv_writes: KvWriteQueue::start(writer.clone(), config.quotas),
            writer,
            reader,
            path: path.to_owned(),
            quotas: config.quotas,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer pool's connection, without the writer lock: for tests that look at it.
    #[cfg(test)]
    async fn writer_connection(&self) -> PoolConnection<Sqlite> {
        self.writer
            .pool
            .acquire()
            .await
            .expect("the writer connection")
    }

    /// A write transaction that holds SQLite's write lock from its first statement.
    async fn begin_write(&self) -> StoreResult<WriteTransaction> {
        begin_write(&self.writer).await
    }
}

/// The store's one writer connection (a pool of one) and the lock it shares with the outbox
/// committer's connection, so the two take turns in process and never meet on SQLite's file
/// lock, whose busy handler sleeps in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct WriterConnection {
    pool: SqlitePool,
    lock: Arc<Mutex<()>>,
}

impl WriterConnection {
    /// The connection, and the lock until it is dropped.
    async fn acquire(&self) -> StoreResult<(PoolConnection<Sqlite>, OwnedMutexGuard<()>)> {
        let lock = self.lock.clone().lock_owned().await;
        let conn = self.pool.acquire().await.map_err(query_error)?;
        Ok((conn, lock))
    }
}

/// A write transaction on the writer connection, holding the writer lock.
pub(crate) struct WriteTransaction {
    // Fields drop in order: an uncommitted transaction queues its rollback on the connection
    // before the lock is released (the committer's busy timeout covers the moment until it runs).
    tx: Transaction<'static, Sqlite>,
    lock: OwnedMutexGuard<()>,
}

impl Deref for WriteTransaction {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// A transaction on `writer` that holds SQLite's write lock from its first statement.
async fn begin_write(writer: &WriterConnection) -> StoreResult<WriteTransaction> {
    let lock = writer.lock.clone().lock_owned().await;
    let tx = writer
        .pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
    Ok(WriteTransaction { tx, lock })
}

fn opening(path: &Path, err: sqlx::Error) -> StoreError {
    match db_error(err, Written::Nothing) {
        StoreError::Unavailable(cause) | StoreError::Internal(cause) => {
            StoreError::Unavailable(format!(
                "the SQLite database {} cannot be opened: {cause}",
                path.display()
            ))
        }
        other => other,
    }
}

async fn commit(write: WriteTransaction) -> StoreResult<()> {
    let committed = write.tx.commit().await;
    drop(write.lock);
    committed.map_err(query_error)
}

/// The writer connection (and the writer lock), lent for claims, which commit without an fsync
/// (`synchronous = NORMAL`): a claim lost to a crash only means the job runs again, which
/// at-least-once allows. While the connection may be at
/// NORMAL the guard is unsettled; unless it was settled again — back at FULL, outside a
/// transaction — because putting it right failed, or the caller stopped waiting and dropped the
/// future, the connection is closed instead of going back to the pool, so no later write runs
/// without its fsync.
struct RelaxedWriter {
    conn: PoolConnection<Sqlite>,
    _lock: OwnedMutexGuard<()>,
    settled: bool,
}

impl RelaxedWriter {
    async fn acquire(writer: &WriterConnection) -> StoreResult<Self> {
        let (conn, lock) = writer.acquire().await?;
        Ok(Self {
            conn,
            _lock: lock,
            settled: true,
        })
    }

    /// Switches to NORMAL until [`RelaxedWriter::restore`].
    async fn relax(&mut self) -> StoreResult<()> {
        self.settled = false;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *self.conn)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn restore(&mut self) -> StoreResult<()> {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *self.conn)
            .await
            .map_err(query_error)?;
        self.settled = true;
        Ok(())
    }
}

impl Drop for RelaxedWriter {
    fn drop(&mut self) {
        if !self.settled {
            self.conn.close_on_drop();
        }
    }
}

/// Claims up to `limit` due jobs for `owner`, who runs `running` and may run `per_app` of one
/// app (see [`OutboxStore::claim_jobs`]), in a transaction of their own on `conn`.
async fn claim(
    conn: &mut SqliteConnection,
    owner: &str,
    limit: u32,
    per_app: u32,
    running: &[(AppId, u32)],
    lease_ms: i64,
) -> StoreResult<Vec<JobRow>> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
    // One writer: no other claim runs meanwhile, so nothing to skip. Expired leases come first,
    // so a backlog of new jobs cannot hold back the recovery of a dead process's work.
    let rows = sqlx::query_as(concat!(
        fair_due_jobs!("SELECT key, value FROM json_each($5)", now!()),
        ", expired (id) AS (SELECT id FROM outbox WHERE status = 'running' AND lease_until <= ",
        now!(),
        " ORDER BY lease_until LIMIT $2), ",
        "pending (id) AS (SELECT id FROM fair ORDER BY turn, due_at, id LIMIT $2) ",
        "UPDATE outbox SET status = 'running', owner = $1, attempt = attempt + 1, ",
        "lease_until = ",
        now!(),
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
    tx.commit().await.map_err(query_error)?;
    Ok(rows)
}

/// The outbox insert after the `job` rows of [`shared::insert_jobs`]: a job of an app that no
/// longer exists is skipped.
const INSERT_JOBS: &str = concat!(
    "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, trigger_depth, ",
    "status, attempt, owner, lease_until, due_at, created_at) ",
    "SELECT job.id, job.app_id, job.script_id, job.mode, job.source_kind, job.payload, ",
    "job.trigger_depth, job.status, job.attempt, job.owner, clock.now + job.lease_ms, ",
    "clock.now, clock.now ",
    "FROM job JOIN apps ON apps.id = job.app_id CROSS JOIN (SELECT ",
    now!(),
    " AS now) AS clock"
);

/// Puts `jobs` into the outbox, in the caller's transaction.
async fn enqueue(conn: &mut SqliteConnection, jobs: &[JobValues]) -> StoreResult<()> {
    for chunk in jobs.chunks(JOBS_PER_INSERT) {
        shared::insert_jobs(chunk, INSERT_JOBS)
            .build()
            .execute(&mut *conn)
            .await
            .map_err(query_error)?;
    }
    Ok(())
}

/// What a KV write needs to know before it writes: the entry under the key (its value and
/// size), the collection's KV triggers and what the app holds against its quotas, read in one
/// statement (one round trip to SQLite's thread rather than three). Read in the write's
/// transaction, whose lock keeps all of it as it is until the transaction ends: with one writer,
/// the quotas are checked exactly.
struct BeforeKvWrite {
    prev: Option<String>,
    prev_size: i64,
    /// `None` when the app is gone.
    usage: Option<AppUsage>,
    triggers: Vec<KvTriggerRow>,
}

impl BeforeKvWrite {
    async fn read(
        conn: &mut SqliteConnection,
        writer: Writer,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<Self> {
        let rows = sqlx::query(concat!(
            "SELECT CAST(entry.value AS TEXT) AS prev, entry.size AS prev_size, ",
            "usage.kv_bytes, usage.queued_jobs, kv_trigger.* ",
            "FROM (SELECT 1) ",
            "LEFT JOIN kv_entries AS entry ",
            "ON entry.app_id = $1 AND entry.collection = $2 AND entry.key = $3 ",
            "LEFT JOIN (",
            app_usage_sql!(),
            ") AS usage ON TRUE ",
            "LEFT JOIN (",
            kv_triggers_sql!(),
            ") AS kv_trigger ON TRUE"
        ))
        .bind(writer.app_id.to_string())
        .bind(collection.as_str())
        .bind(key.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error)?;
        let mut before = Self {
            prev: None,
            prev_size: 0,
            usage: None,
            triggers: Vec::new(),
        };
        // One row per trigger, or one row of NULLs beside the entry and the usage when there is
        // none.
        for row in rows {
            before.prev = row.try_get("prev").map_err(query_error)?;
            before.prev_size = row
                .try_get::<Option<i64>, _>("prev_size")
                .map_err(query_error)?
                .unwrap_or(0);
            let kv_bytes: Option<i64> = row.try_get("kv_bytes").map_err(query_error)?;
            let queued_jobs: Option<i64> = row.try_get("queued_jobs").map_err(query_error)?;
            before.usage = kv_bytes.map(|kv_bytes| {
                AppUsage::from(UsageRow {
                    kv_bytes,
                    queued_jobs: queued_jobs.unwrap_or(0),
                })
            });
            let trigger: Option<String> = row.try_get("id").map_err(query_error)?;
            if trigger.is_some() {
                before
                    .triggers
                    .push(KvTriggerRow::from_row(&row).map_err(query_error)?);
            }
        }
        Ok(before)
    }
}

/// Stores `text` (`value`, checked by the caller) under the key, enqueues the jobs of the KV
/// triggers the set fires and counts both, in the caller's write transaction. Refused before it
/// writes anything when the writer's app is gone or a quota or limit would be passed.
async fn set_kv_entry(
    conn: &mut SqliteConnection,
    quotas: &AppQuotas,
    writer: Writer,
    collection: &CollectionName,
    key: &KvKey,
    value: &serde_json::Value,
    text: &str,
) -> StoreResult<Applied> {
    let before = BeforeKvWrite::read(conn, writer, collection, key).await?;
    let Some(usage) = before.usage else {
        return Ok(Applied::Refused(StoreError::NotFound("app")));
    };
    let prev_value = before
        .prev
        .map(|text| json_value("kv_entries", &text))
        .transpose()?;
    let change = KvChange {
        writer,
        collection,
        key,
        op: KvOp::Set,
        value: Some(value),
        prev_value: prev_value.as_ref(),
    };
    let jobs = change.jobs(before.triggers)?;
    let size = kv_entry_size(collection, key, text);
    let bytes = size - before.prev_size;
    if let Err(over) = admit_kv_write(writer, usage, bytes, jobs.len(), quotas) {
        return Ok(Applied::Refused(StoreError::OverLimit(over)));
    }
    sqlx::query(concat!(
        "INSERT INTO kv_entries (app_id, collection, key, value, size, created_at, updated_at) ",
        "VALUES ($1, $2, $3, $4, $5, ",
        now!(),
        ", ",
        now!(),
        ") ON CONFLICT (app_id, collection, key) DO UPDATE SET value = excluded.value, ",
        "size = excluded.size, updated_at = MAX(excluded.updated_at, kv_entries.updated_at)"
    ))
    .bind(writer.app_id.to_string())
    .bind(collection.as_str())
    .bind(key.as_str())
    .bind(text)
    .bind(size)
    .execute(&mut *conn)
    .await
    .map_err(query_error)?;
    enqueue(conn, &JobValues::all(&jobs)?).await?;
    count_write(conn, writer.app_id, bytes, jobs.len()).await?;
    Ok(Applied::Written(KvWritten {
        prev_value,
        jobs_enqueued: enqueued(&jobs),
    }))
}

/// Deletes the entry, enqueues the jobs of the KV triggers the delete fires and counts both, in
/// the caller's write transaction. Deleting a missing entry writes nothing and fires nothing;
/// a delete whose jobs would pass a quota or limit is refused before it writes anything.
async fn delete_kv_entry(
    conn: &mut SqliteConnection,
    quotas: &AppQuotas,
    writer: Writer,
    collection: &CollectionName,
    key: &KvKey,
) -> StoreResult<Applied> {
    let before = BeforeKvWrite::read(conn, writer, collection, key).await?;
    let (Some(prev), Some(usage)) = (before.prev, before.usage) else {
        return Ok(Applied::Written(KvWritten {
            prev_value: None,
            jobs_enqueued: 0,
        }));
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
    let jobs = change.jobs(before.triggers)?;
    let bytes = -before.prev_size;
    if let Err(over) = admit_kv_write(writer, usage, bytes, jobs.len(), quotas) {
        return Ok(Applied::Refused(StoreError::OverLimit(over)));
    }
    sqlx::query(sql::DELETE_KV)
        .bind(writer.app_id.to_string())
        .bind(collection.as_str())
        .bind(key.as_str())
        .execute(&mut *conn)
        .await
        .map_err(query_error)?;
    enqueue(conn, &JobValues::all(&jobs)?).await?;
    count_write(conn, writer.app_id, bytes, jobs.len()).await?;
    Ok(Applied::Written(KvWritten {
        prev_value: Some(prev_value),
        jobs_enqueued: enqueued(&jobs),
    }))
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn create_app(&self, app: &NewApp) -> StoreResult<App> {
        let id = AppId::new();
        let written = Written::App {
            slug: Some(&app.slug),
        };
        let mut tx = self.begin_write().await?;
        let row: AppRow = sqlx::query_as(concat!(
            "INSERT INTO apps (id, slug, name, expose_errors, created_at, updated_at) ",
            "VALUES ($1, $2, $3, $4, ",
            now!(),
            ", ",
            now!(),
            ") RETURNING ",
            app_columns!()
        ))
        .bind(id.to_string())
        .bind(app.slug.as_str())
        .bind(app.name.as_str())
        .bind(app.expose_errors)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| db_error(err, written))?;
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
            .fetch_optional(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(App::try_from).transpose()
    }

    async fn get_app_by_slug(&self, slug: &str) -> StoreResult<Option<App>> {
        let row: Option<AppRow> = sqlx::query_as(sql::GET_APP_BY_SLUG)
            .bind(slug)
            .fetch_optional(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(App::try_from).transpose()
    }

    async fn list_apps(&self, page: &PageRequest) -> StoreResult<Page<App>> {
        let window = Window::new(page)?;
        let rows: Vec<AppRow> = sqlx::query_as(sql::LIST_APPS)
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |app: &App| app.id.to_string()))
    }

    async fn update_app(&self, id: AppId, patch: &AppPatch) -> StoreResult<App> {
        let written = Written::App {
            slug: patch.slug.as_ref(),
        };
        let mut tx = self.begin_write().await?;
        // `updated_at + 1`: every change is a new version, which the routing fingerprint sees.
        let row: Option<AppRow> = sqlx::query_as(concat!(
            "UPDATE apps SET slug = COALESCE($2, slug), name = COALESCE($3, name), ",
            "expose_errors = COALESCE($4, expose_errors), updated_at = MAX(",
            now!(),
            ", updated_at + 1) WHERE id = $1 RETURNING ",
            app_columns!()
        ))
        .bind(id.to_string())
        .bind(patch.slug.as_ref().map(AppSlug::as_str))
        .bind(patch.name.as_ref().map(AppName::as_str))
        .bind(patch.expose_errors)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| db_error(err, written))?;
        let row = row.ok_or(StoreError::NotFound("app"))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn delete_app(&self, id: AppId) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_APP)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted > 0)
    }

    async fn app_usage(&self, id: AppId) -> StoreResult<Option<AppUsage>> {
        let row: Option<UsageRow> = sqlx::query_as(sql::APP_USAGE)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(query_error)?;
        Ok(row.map(AppUsage::from))
    }
}

#[async_trait]
impl ScriptStore for SqliteStore {
    async fn create_script(&self, script: &NewScript) -> StoreResult<Script> {
        let written = Written::Script {
            name: Some(&script.name),
        };
        let mut tx = self.begin_write().await?;
        // Selecting from apps makes a missing app "no row" rather than a foreign-key error.
        let row: Option<ScriptRow> = sqlx::query_as(concat!(
            "INSERT INTO scripts (id, app_id, name, kind, source, created_at, updated_at) ",
            "SELECT $1, apps.id, $3, $4, $5, ",
            now!(),
            ", ",
            now!(),
            " ",
            "FROM apps WHERE apps.id = $2 RETURNING ",
            script_columns!()
        ))
        .bind(ScriptId::new().to_string())
        .bind(script.app_id.to_string())
        .bind(script.name.as_str())
        .bind(script.kind.as_str())
        .bind(&script.source)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| db_error(err, written))?;
        let row = row.ok_or(StoreError::NotFound("app"))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn get_script(&self, id: ScriptId) -> StoreResult<Option<Script>> {
        let row: Option<ScriptRow> = sqlx::query_as(sql::GET_SCRIPT)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |script: &Script| script.id.to_string()))
    }

    async fn update_script(&self, id: ScriptId, patch: &ScriptPatch) -> StoreResult<Script> {
        let written = Written::Script {
            name: patch.name.as_ref(),
        };
        let mut tx = self.begin_write().await?;
        // `updated_at + 1`: two updates within one millisecond still get distinct versions.
        let row: Option<ScriptRow> = sqlx::query_as(concat!(
            "UPDATE scripts SET name = COALESCE($2, name), kind = COALESCE($3, kind), ",
            "source = COALESCE($4, source), updated_at = MAX(",
            now!(),
            ", updated_at + 1) ",
            "WHERE id = $1 RETURNING ",
            script_columns!()
        ))
        .bind(id.to_string())
        .bind(patch.name.as_ref().map(|name| name.as_str()))
        .bind(patch.kind.map(|kind| kind.as_str()))
        .bind(patch.source.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| db_error(err, written))?;
        let row = row.ok_or(StoreError::NotFound("script"))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn delete_script(&self, id: ScriptId) -> StoreResult<bool> {
        // BEGIN IMMEDIATE holds the write lock, so no route or trigger can appear between count
        // and delete.
        let mut tx = self.begin_write().await?;
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
        commit(tx).await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl RouteStore for SqliteStore {
    async fn create_route(&self, route: &NewRoute) -> StoreResult<Route> {
        let written = Written::Route {
            method: route.method,
            path: &route.path,
        };
        let mut tx = self.begin_write().await?;
        // The script must exist in the route's app: a route never crosses apps.
        let row: Option<RouteRow> = sqlx::query_as(concat!(
            "INSERT INTO routes (id, app_id, script_id, method, path, dispatch_mode, keep_headers, ",
            "created_at) SELECT $1, scripts.app_id, scripts.id, $4, $5, $6, $7, ",
            now!(),
            " ",
            "FROM scripts WHERE scripts.id = $3 AND scripts.app_id = $2 RETURNING ",
            route_columns!()
        ))
        .bind(RouteId::new().to_string())
        .bind(route.app_id.to_string())
        .bind(route.script_id.to_string())
        .bind(route.method.as_str())
        .bind(route.path.as_str())
        .bind(route.dispatch_mode.as_str())
        .bind(keep_headers_column(&route.keep_headers))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| db_error(err, written))?;
        let row = row.ok_or(StoreError::NotFound("script"))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn get_route(&self, id: RouteId) -> StoreResult<Option<Route>> {
        let row: Option<RouteRow> = sqlx::query_as(sql::GET_ROUTE)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |route: &Route| route.id.to_string()))
    }

    async fn list_routes_of_script(&self, script_id: ScriptId) -> StoreResult<Vec<Route>> {
        let rows: Vec<RouteRow> = sqlx::query_as(sql::LIST_ROUTES_OF_SCRIPT)
            .bind(script_id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn delete_route(&self, id: RouteId) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_ROUTE)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted > 0)
    }

    async fn routing_entries(&self, app_id: Option<AppId>) -> StoreResult<Vec<RoutingEntry>> {
        let rows: Vec<RoutingRow> = sqlx::query_as(sql::ROUTING_ENTRIES)
            .bind(app_id.map(|id| id.to_string()))
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn routing_fingerprint(&self) -> StoreResult<String> {
        let row: FingerprintRow = sqlx::query_as(sql::ROUTING_FINGERPRINT)
            .fetch_one(&self.reader)
            .await
            .map_err(query_error)?;
        Ok(row.into_string())
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        username: &Username,
        password_hash: &str,
        is_instance_admin: bool,
    ) -> StoreResult<User> {
        let written = Written::User { username };
        let mut tx = self.begin_write().await?;
        let row: UserRow = sqlx::query_as(concat!(
                "INSERT INTO users (id, username, password_hash, is_instance_admin, disabled, created_at) ",
                "VALUES ($1, $2, $3, $4, FALSE, ", now!(), ") RETURNING ", user_columns!()
            ))
        .bind(UserId::new().to_string())
        .bind(username.as_str())
        .bind(password_hash)
        .bind(is_instance_admin)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| db_error(err, written))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(sql::GET_USER)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(User::try_from).transpose()
    }

    async fn user_credentials(&self, username: &Username) -> StoreResult<Option<UserCredentials>> {
        let row: Option<CredentialsRow> = sqlx::query_as(sql::USER_CREDENTIALS)
            .bind(username.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(UserCredentials::try_from).transpose()
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let users: i64 = sqlx::query_scalar(sql::COUNT_USERS)
            .fetch_one(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        count(users)
    }

    async fn set_user_disabled(&self, id: UserId, disabled: bool) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let row: Option<UserRow> = sqlx::query_as(sql::SET_USER_DISABLED)
            .bind(id.to_string())
            .bind(disabled)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let row = row.ok_or(StoreError::NotFound("user"))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn list_users(&self, page: &PageRequest) -> StoreResult<Page<User>> {
        let window = Window::new(page)?;
        let rows: Vec<UserRow> = sqlx::query_as(sql::LIST_USERS)
            .bind(&window.after)
            .bind(window.fetch())
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(window.page(records(rows)?, |user: &User| user.id.to_string()))
    }

    async fn set_password(&self, id: UserId, password_hash: &str) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
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
        commit(tx).await?;
        row.try_into()
    }

    async fn set_instance_admin(&self, id: UserId, is_instance_admin: bool) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let row: Option<UserRow> = sqlx::query_as(sql::SET_INSTANCE_ADMIN)
            .bind(id.to_string())
            .bind(is_instance_admin)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        let row = row.ok_or(StoreError::NotFound("user"))?;
        commit(tx).await?;
        row.try_into()
    }

    async fn delete_user(&self, id: UserId) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_USER)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted > 0)
    }

    async fn delete_sessions_of_user(&self, id: UserId) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_SESSIONS_OF_USER)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted)
    }
}

#[async_trait]
impl MembershipStore for SqliteStore {
    async fn set_membership(
        &self,
        app_id: AppId,
        user_id: UserId,
        role: Role,
    ) -> StoreResult<Membership> {
        let mut tx = self.begin_write().await?;
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
        commit(tx).await?;
        row.try_into()
    }

    async fn remove_membership(&self, app_id: AppId, user_id: UserId) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_MEMBERSHIP)
            .bind(app_id.to_string())
            .bind(user_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted > 0)
    }

    async fn list_members(&self, app_id: AppId) -> StoreResult<Vec<Membership>> {
        let rows: Vec<MembershipRow> = sqlx::query_as(sql::LIST_MEMBERS)
            .bind(app_id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn memberships_of_user(&self, user_id: UserId) -> StoreResult<Vec<(AppId, Role)>> {
        let rows: Vec<RoleRow> = sqlx::query_as(sql::MEMBERSHIPS_OF_USER)
            .bind(user_id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }
}

#[async_trait]
impl ApiKeyStore for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<ApiKey> {
        let mut tx = self.begin_write().await?;
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
        commit(tx).await?;
        row.try_into()
    }

    async fn get_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        let row: Option<ApiKeyRow> = sqlx::query_as(sql::GET_API_KEY)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
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
        .fetch_optional(&self.reader)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(ApiKeyCredentials::try_from).transpose()
    }

    async fn touch_api_key(&self, id: ApiKeyId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "UPDATE api_keys SET last_used_at = ",
            now!(),
            " WHERE id = $1"
        ))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        commit(tx).await?;
        Ok(())
    }

    async fn list_api_keys(&self, user_id: Option<UserId>) -> StoreResult<Vec<ApiKey>> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(sql::LIST_API_KEYS)
            .bind(user_id.map(|id| id.to_string()))
            .fetch_all(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        records(rows)
    }

    async fn revoke_api_key(&self, id: ApiKeyId) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(sql::REVOKE_API_KEY)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(revoked > 0)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: UserId,
        ttl_ms: i64,
    ) -> StoreResult<Timestamp> {
        let mut tx = self.begin_write().await?;
        let expires_at: Option<i64> = sqlx::query_scalar(concat!(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) ",
            "SELECT $1, users.id, ",
            now!(),
            ", ",
            now!(),
            " + $3 ",
            "FROM users WHERE users.id = $2 RETURNING expires_at"
        ))
        .bind(token_hash)
        .bind(user_id.to_string())
        .bind(span(ttl_ms))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        let expires_at = expires_at.ok_or(StoreError::NotFound("user"))?;
        commit(tx).await?;
        Ok(Timestamp::from_millis(expires_at))
    }

    async fn session_user(&self, token_hash: &[u8]) -> StoreResult<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT users.id, users.username, users.is_instance_admin, users.disabled, users.created_at ",
            "FROM sessions JOIN users ON users.id = sessions.user_id ",
            "WHERE sessions.token_hash = $1 AND sessions.expires_at > ", now!(), " ",
            "AND users.disabled = FALSE"
        ))
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await
        .map_err(|err| db_error(err, Written::Nothing))?;
        row.map(User::try_from).transpose()
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_SESSION)
            .bind(token_hash)
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted > 0)
    }

    async fn delete_expired_sessions(&self) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(concat!("DELETE FROM sessions WHERE expires_at <= ", now!()))
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted)
    }
}

#[async_trait]
impl KvStore for SqliteStore {
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
            .fetch_optional(&self.reader)
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
            .fetch_one(&self.reader)
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
        self.kv_writes
            .write(KvWrite::Set {
                writer,
                collection: collection.clone(),
                key: key.clone(),
                value: value.clone(),
                text,
            })
            .await
    }

    async fn kv_delete(
        &self,
        writer: Writer,
        collection: &CollectionName,
        key: &KvKey,
    ) -> StoreResult<KvWritten> {
        self.kv_writes
            .write(KvWrite::Delete {
                writer,
                collection: collection.clone(),
                key: key.clone(),
            })
            .await
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
        let rows = query.fetch_all(&self.reader).await.map_err(query_error)?;
        let items = rows
            .into_iter()
            .map(|(key, value)| Ok((key, json_value("kv_entries", &value)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(window.page(items, |(key, _)| key.clone()))
    }
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn create_trigger(&self, trigger: &NewTrigger) -> StoreResult<Trigger> {
        let id = TriggerId::new().to_string();
        let mut tx = self.begin_write().await?;
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
            .fetch_optional(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(query_error)?;
        Ok(window.page(records(rows)?, |trigger: &Trigger| trigger.id.to_string()))
    }

    async fn delete_trigger(&self, id: TriggerId) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query(sql::DELETE_TRIGGER)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(query_error)?
            .rows_affected();
        commit(tx).await?;
        Ok(deleted > 0)
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn commit_outbox(&self, batch: &OutboxBatch) -> StoreResult<()> {
        // A connection for this one commit: the platform's commits go through the recorder's
        // committer; this serves one-off writes (and tests).
        let mut committer = self.outbox_committer()?;
        let batch = batch.clone();
        tokio::task::spawn_blocking(move || committer.commit(&batch))
            .await
            .map_err(|err| StoreError::Internal(format!("an outbox commit panicked: {err}")))?
    }

    fn outbox_committer(&self) -> StoreResult<Box<dyn OutboxCommitter>> {
        Ok(Box::new(SqliteCommitter::open(
            &self.path,
            self.writer.lock.clone(),
        )?))
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
        // Without an fsync: a claim lost to a crash only means the job is claimed again.
        let mut writer = RelaxedWriter::acquire(&self.writer).await?;
        writer.relax().await?;
        let claimed = claim(&mut writer.conn, owner, limit, per_app, running, lease_ms).await;
        let restored = writer.restore().await;
        let rows = claimed?;
        restored?;
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
        let mut tx = self.begin_write().await?;
        let mut extended = 0;
        for chunk in jobs.chunks(ATTEMPTS_PER_STATEMENT) {
            let mut query =
                QueryBuilder::new(concat!("UPDATE outbox SET lease_until = ", now!(), " + "));
            query
                .push_bind(span(lease_ms))
                .push(" WHERE status = 'running' AND owner = ")
                .push_bind(owner)
                .push(" AND ");
            push_attempts(&mut query, chunk);
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
        let mut tx = self.begin_write().await?;
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
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        commit(tx).await?;
        Ok(retried > 0)
    }

    async fn dead_letter_job(
        &self,
        job: JobAttempt,
        error: &str,
    ) -> StoreResult<Option<DeadLetter>> {
        let mut tx = self.begin_write().await?;
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
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ",
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
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
        let released = sqlx::query(concat!(
            "UPDATE outbox SET status = 'pending', owner = NULL, lease_until = NULL, due_at = ",
            now!(),
            " WHERE status = 'running' AND owner = $1"
        ))
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(query_error)?
        .rows_affected();
        commit(tx).await?;
        Ok(released)
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let (pending, running): (i64, i64) = sqlx::query_as(sql::OUTBOX_DEPTH)
            .fetch_one(&self.reader)
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
impl DeadLetterStore for SqliteStore {
    async fn get_dead_letter(&self, id: DeadLetterId) -> StoreResult<Option<DeadLetter>> {
        let row: Option<DeadLetterRow> = sqlx::query_as(sql::GET_DEAD_LETTER)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(query_error)?;
        Ok(window.page(records(rows)?, |dead_letter: &DeadLetter| {
            dead_letter.id.to_string()
        }))
    }

    async fn count_unresolved_dead_letters(&self, app_id: AppId) -> StoreResult<u64> {
        let unresolved: i64 = sqlx::query_scalar(sql::COUNT_UNRESOLVED_DEAD_LETTERS)
            .bind(app_id.to_string())
            .fetch_one(&self.reader)
            .await
            .map_err(query_error)?;
        count(unresolved)
    }

    async fn replay_dead_letter(
        &self,
        id: DeadLetterId,
        execution_id: ExecutionId,
    ) -> StoreResult<DeadLetter> {
        let mut tx = self.begin_write().await?;
        let row: Option<DeadLetterRow> = sqlx::query_as(sql::GET_DEAD_LETTER)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let dead_letter = DeadLetter::try_from(row.ok_or(StoreError::NotFound("dead letter"))?)?;
        if dead_letter.resolution.is_some() {
            return Err(dead_letter_closed(&dead_letter));
        }
        let usage: Option<UsageRow> = sqlx::query_as(sql::APP_USAGE)
            .bind(dead_letter.app_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        AppUsage::from(usage.ok_or(StoreError::NotFound("app"))?)
            .admit(0, 1, &self.quotas)
            .map_err(StoreError::OverLimit)?;
        sqlx::query(concat!(
            "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, ",
            "trigger_depth, status, attempt, due_at, created_at) ",
            "SELECT $2, app_id, script_id, 'async', source_kind, payload, trigger_depth, ",
            "'pending', 0, ",
            now!(),
            ", ",
            now!(),
            " FROM dead_letters WHERE id = $1"
        ))
        .bind(id.to_string())
        .bind(execution_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(query_error)?;
        count_write(&mut *tx, dead_letter.app_id, 0, 1).await?;
        let row: DeadLetterRow = sqlx::query_as(CLOSE_DEAD_LETTER)
            .bind(id.to_string())
            .bind(Resolution::Replayed.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(query_error)?;
        commit(tx).await?;
        row.try_into()
    }

    async fn resolve_dead_letter(&self, id: DeadLetterId) -> StoreResult<DeadLetter> {
        let mut tx = self.begin_write().await?;
        let row: Option<DeadLetterRow> = sqlx::query_as(CLOSE_DEAD_LETTER)
            .bind(id.to_string())
            .bind(Resolution::Resolved.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        if let Some(row) = row {
            commit(tx).await?;
            return row.try_into();
        }
        let row: Option<DeadLetterRow> = sqlx::query_as(sql::GET_DEAD_LETTER)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error)?;
        let closed = DeadLetter::try_from(row.ok_or(StoreError::NotFound("dead letter"))?)?;
        Err(dead_letter_closed(&closed))
    }

    async fn sweep_dead_letters(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        let sql = concat!(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ",
            "WHERE created_at < ",
            now!(),
            " - $1 ORDER BY created_at LIMIT $2)"
        );
        self.sweep(sql, older_than_ms, limit).await
    }

    async fn sweep_abandoned_executions(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        let sql = concat!(
            "DELETE FROM abandoned_executions WHERE execution_id IN (SELECT execution_id ",
            "FROM abandoned_executions WHERE created_at < ",
            now!(),
            " - $1 ORDER BY created_at LIMIT $2)"
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
            .fetch_all(&self.reader)
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
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn quotas(&self) -> &AppQuotas {
        &self.quotas
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.writer.pool).await.map_err(migrate_error)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(|err| db_error(err, Written::Nothing))?;
        Ok(())
    }

    async fn close(&self) {
        // Waits for a group commit in flight; the KV writes queued after it find the writer
        // closed and are answered `Unavailable`, like every other call.
        self.writer.pool.close().await;
        self.reader.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use picloud_core::exec::HttpRequest;
    use picloud_core::{JobMode, JobPayload};

    use crate::NewJob;

    /// The writer connection's `synchronous` setting: 2 is FULL, 1 NORMAL.
    async fn synchronous(store: &SqliteStore) -> i64 {
        let mut conn = store.writer_connection().await;
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .expect("the setting")
    }

    // A commit without an fsync must not leave the writer without fsyncs for the writes after
    // it, even when its caller stops waiting half-way.
    #[tokio::test]
    async fn a_claim_leaves_the_writer_at_full() {
        let (_dir, store) = migrated_store().await;
        assert_eq!(synchronous(&store).await, 2, "FULL from the start");
        store
            .claim_jobs("owner", 10, 10, &[], 1_000)
            .await
            .expect("a claim, without an fsync");
        assert_eq!(synchronous(&store).await, 2, "FULL again after a claim");

        let mut writer = RelaxedWriter::acquire(&store.writer)
            .await
            .expect("the writer");
        writer.relax().await.expect("relaxed");
        drop(writer);
        assert_eq!(
            synchronous(&store).await,
            2,
            "a relaxed connection dropped before it was settled is closed, not reused"
        );
        store.close().await;
    }

    // The database holds password hashes, session hashes and the apps' data: a file created
    // world-readable (0644, the umask's usual result) let every local user read them.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_files_it_creates_are_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt as _;

        let root = tempfile::tempdir().expect("a temporary directory");
        let data_dir = root.path().join("picloud-data").join("nested");
        let db = data_dir.join("picloud.db");
        let store = SqliteStore::open(&db, &StoreConfig::default())
            .await
            .expect("the store opens in a directory it creates");
        store.migrate().await.expect("the store migrates");
        store
            .create_app(&crate::NewApp {
                slug: AppSlug::parse("shop").expect("a slug"),
                name: AppName::parse("Shop").expect("a name"),
                expose_errors: false,
            })
            .await
            .expect("a write, so the WAL holds something");

        let wal = data_dir.join("picloud.db-wal");
        let shm = data_dir.join("picloud.db-shm");
        for (path, expected) in [
            (root.path().join("picloud-data"), 0o700),
            (data_dir.clone(), 0o700),
            (db.clone(), 0o600),
            (wal, 0o600),
            (shm, 0o600),
        ] {
            let mode = std::fs::metadata(&path)
                .unwrap_or_else(|err| panic!("{} exists: {err}", path.display()))
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(
                mode,
                expected,
                "{} is {mode:04o}, not {expected:04o}",
                path.display()
            );
        }
        store.close().await;
    }

    // 0008 rebuilds the outbox WITHOUT ROWID: the jobs waiting in it must come through.
    #[tokio::test]
    async fn the_outbox_keeps_its_jobs_when_it_loses_its_rowid() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let earlier = dir.path().join("migrations");
        std::fs::create_dir(&earlier).expect("a directory");
        let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        for entry in std::fs::read_dir(&ours).expect("the migrations") {
            let path = entry.expect("a migration").path();
            let name = path.file_name().expect("a name").to_owned();
            if name.to_string_lossy().as_ref() < "0008" {
                std::fs::copy(&path, earlier.join(name)).expect("copied");
            }
        }
        let store = SqliteStore::open(&dir.path().join("t.db"), &StoreConfig::default())
            .await
            .expect("the store opens");
        sqlx::migrate::Migrator::new(earlier.as_path())
            .await
            .expect("the migrations before 0008")
            .run(&store.writer.pool)
            .await
            .expect("applied");
        let job = sync_job(&store).await;
        store
            .commit_outbox(&OutboxBatch {
                enqueue: vec![job.clone()],
                ..OutboxBatch::default()
            })
            .await
            .expect("a job waits in the outbox");

        store.migrate().await.expect("0008 applies");
        let kept: (String, String, String) = sqlx::query_as("SELECT id, mode, status FROM outbox")
            .fetch_one(&store.writer.pool)
            .await
            .expect("the job is still there");
        assert_eq!(
            kept,
            (job.id.to_string(), "sync".to_owned(), "pending".to_owned())
        );
        let rowid = sqlx::query("SELECT rowid FROM outbox")
            .fetch_all(&store.writer.pool)
            .await
            .map(|rows| rows.len());
        assert!(rowid.is_err(), "a table WITHOUT ROWID has none: {rowid:?}");
        store.close().await;
    }

    async fn migrated_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("t.db"), &StoreConfig::default())
            .await
            .expect("the store opens");
        store.migrate().await.expect("the store migrates");
        (dir, store)
    }

    /// A sync job of a new app. The app is written with the columns of the first migration, so
    /// this works on a schema that later migrations have not reached yet.
    async fn sync_job(store: &SqliteStore) -> NewJob {
        let app_id = AppId::new();
        sqlx::query("INSERT INTO apps (id, slug, name) VALUES ($1, 'shop', 'Shop')")
            .bind(app_id.to_string())
            .execute(&store.writer.pool)
            .await
            .expect("an app");
        NewJob {
            id: ExecutionId::new(),
            app_id,
            script_id: ScriptId::new(),
            mode: JobMode::Sync,
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            trigger_depth: 0,
            claimed: None,
        }
    }

    /// The committer's connection's `synchronous` setting: 2 is FULL, 1 NORMAL.
    fn committer_synchronous(committer: &SqliteCommitter) -> i64 {
        committer.synchronous().expect("the setting")
    }

    // The committer's connection follows each batch's promise, and a batch that fails half-way
    // leaves it usable.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_committer_syncs_durable_batches_and_survives_a_failed_one() {
        let (_dir, store) = migrated_store().await;
        let job = sync_job(&store).await;
        let path = store.path().to_owned();
        let lock = store.writer.lock.clone();
        tokio::task::spawn_blocking(move || {
            let mut committer = SqliteCommitter::open(&path, lock).expect("a committer");
            let relaxed = OutboxBatch {
                durable: false,
                ..OutboxBatch::default()
            };
            committer.commit(&relaxed).expect("a relaxed commit");
            assert_eq!(
                committer_synchronous(&committer),
                1,
                "NORMAL for a relaxed batch"
            );

            // The second job repeats the first's id: nothing of the batch is committed.
            let failing = OutboxBatch {
                enqueue: vec![job.clone(), job.clone()],
                durable: false,
                ..OutboxBatch::default()
            };
            committer
                .commit(&failing)
                .expect_err("a repeated id is refused");
            let good = OutboxBatch {
                enqueue: vec![job],
                durable: true,
                ..OutboxBatch::default()
            };
            committer
                .commit(&good)
                .expect("the committer is usable: no transaction was left open");
            assert_eq!(
                committer_synchronous(&committer),
                2,
                "FULL for a durable batch"
            );
        })
        .await
        .expect("the committer's thread");
        assert_eq!(
            store.outbox_depth().await.expect("the depth").pending,
            1,
            "the failed batch left nothing behind"
        );
        assert_eq!(
            synchronous(&store).await,
            2,
            "the writer connection stays FULL"
        );
        store.close().await;
    }

    // The committer's connection and the writer connection take turns through the writer lock,
    // not through SQLite's busy handler.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_committer_waits_for_the_writer_lock() {
        let (_dir, store) = migrated_store().await;
        let job = sync_job(&store).await;
        let mut committer = store.outbox_committer().expect("a committer");
        let held = store.writer.lock.clone().lock_owned().await;
        let commit = tokio::task::spawn_blocking(move || {
            committer.commit(&OutboxBatch {
                enqueue: vec![job],
                durable: true,
                ..OutboxBatch::default()
            })
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !commit.is_finished(),
            "the commit waits while the lock is held"
        );
        drop(held);
        commit
            .await
            .expect("the committer's thread")
            .expect("the commit, once the lock is free");
        assert_eq!(store.outbox_depth().await.expect("the depth").pending, 1);
        store.close().await;
    }
}
