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
//! - The platform's runs commit with the outbox's group commits, on the committer's own
//!   rusqlite connection (`committer`); a store's own `commit_run` (an admin replay, `kv_set`)
//!   is group-committed on the writer pool (`group_commit`). Scripts' KV reads run on the
//!   reading thread's own read-only rusqlite connection (`direct`): no hop to sqlx's thread.
//! - Timestamps come from SQLite's clock (`unixepoch('now', 'subsec')`, SQLite ≥ 3.42; the
//!   bundled library is newer), which is stable within one statement.
//! - On Unix the data directory and the database file PiCloud creates are private to its user
//!   (`0700`, `0600`, and so the `-wal` and `-shm` files too); `files` says how.
//!
//! What is written once for both backends is in the crate's domain modules; this module holds
//! the [`Engine`] primitives on these pools and the hooks where SQLite differs.

mod committer;
mod direct;
mod files;
mod group_commit;
mod records;
mod writer;

/// SQLite's plan of `sql` with `args`, a line per step (`EXPLAIN QUERY PLAN`): for tests that
/// hold a statement to the index it must use.
#[cfg(test)]
pub(crate) fn explain(conn: &rusqlite::Connection, sql: &str, args: &[Arg<'_>]) -> Vec<String> {
    let text = format!("EXPLAIN QUERY PLAN {sql}");
    let mut statement = direct::statement(conn, Sql::same(&text), args).expect("the plan");
    let mut rows = statement.raw_query();
    let mut plan = Vec::new();
    while let Some(row) = rows.next().expect("a step") {
        plan.push(row.get::<_, String>(3).expect("its detail"));
    }
    plan
}

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use picloud_core::{AppId, ExecutionId};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::commit::AnyRow;
use crate::db::{pool_usage, sqlite, Arg, DbResult, Engine, Row, Sql, WriteTx};
use crate::errors::{migrate_error, unreachable};
use crate::jobs::{self, push_attempts, running_jobs, ATTEMPTS_PER_STATEMENT};
use crate::rows::{span, JobRow};
use crate::sql::{self, fair_due_jobs, job_columns};
use crate::{
    AppQuotas, Backend, ClaimedJob, ExecutionWriter, JobAttempt, Notices, OutboxBatch,
    OutboxCommitter, PoolUsage, RunCommit, RunVerdict, StoreConfig, StoreError, StoreResult,
};

use self::committer::SqliteCommitter;
use self::direct::Readers;
use self::group_commit::RunQueue;
use self::records::SqliteRecords;
use self::writer::{bind, WriteTransaction, WriterConnection};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// PiCloud's stores in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: writes serialize here rather than on SQLite's file lock.
    writer: WriterConnection,
    /// Connections that refuse writes (`query_only`); WAL lets them read while the writer writes.
    reader: SqlitePool,
    /// Runs' commits, on their way to the group-commit task that writes them on `writer`.
    runs: RunQueue,
    /// Scripts' KV reads, on the reading thread's own connection.
    readers: Readers,
    /// Execution records, in a file of their own (`records`).
    records: SqliteRecords,
    path: PathBuf,
    quotas: AppQuotas,
}

impl SqliteStore {
    /// Opens (creating when missing, private to this user) the database file at `path` and its
    /// directory, and starts the task that group-commits runs (on the current tokio runtime;
    /// it ends when the last clone of the store is dropped).
    pub async fn open(path: &Path, config: &StoreConfig) -> StoreResult<Self> {
        files::prepare(path).await?;
        let acquire_timeout = Duration::from_millis(config.acquire_timeout_ms);
        let common = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .synchronous(SqliteSynchronous::Full);
        let opening = |err| {
            unreachable(
                &format!("the SQLite database {} cannot be opened", path.display()),
                err,
            )
        };
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
            .map_err(opening)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout)
            .connect_with(common.pragma("query_only", "ON"))
            .await
            .map_err(opening)?;
        let writer = WriterConnection {
            pool: writer,
            lock: Arc::new(Mutex::new(())),
        };
        let records = SqliteRecords::open(path, acquire_timeout).await?;
        Ok(Self {
            runs: RunQueue::start(writer.clone(), config.quotas),
            readers: Readers::new(path.to_owned()),
            records,
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
}

impl Engine for SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;

    type Write = WriteTransaction;

    fn app_quotas(&self) -> &AppQuotas {
        &self.quotas
    }

    async fn fetch_optional<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Option<R>> {
        let query = sqlx::query_as_with(sql.sqlite, bind(args)?);
        Ok(query.fetch_optional(&self.reader).await?)
    }

    async fn fetch_all<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Vec<R>> {
        let query = sqlx::query_as_with(sql.sqlite, bind(args)?);
        Ok(query.fetch_all(&self.reader).await?)
    }

    /// On the writer, in a `BEGIN IMMEDIATE` transaction, like every write.
    async fn write_optional<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Option<R>> {
        let mut tx = self.writer.begin().await?;
        let row = tx.fetch_optional(sql, args).await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn write(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<u64> {
        let mut tx = self.writer.begin().await?;
        let affected = tx.execute(sql, args).await?;
        tx.commit().await?;
        Ok(affected)
    }

    async fn begin_write(&self) -> DbResult<WriteTransaction> {
        self.writer.begin().await
    }

    /// On this thread, through its own connection (`direct`): the read is done when this returns.
    fn read_rows<R: AnyRow>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Vec<R>>> + Send {
        std::future::ready(self.readers.rows(sql, args))
    }

    fn read_rows_within<R: AnyRow>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        max_bytes: usize,
    ) -> impl Future<Output = StoreResult<Option<Vec<R>>>> + Send {
        std::future::ready(self.readers.rows_within(sql, args, max_bytes))
    }

    /// Group-committed (see `group_commit`).
    async fn commit(&self, run: RunCommit) -> StoreResult<RunVerdict> {
        self.runs.commit(run).await
    }

    /// A connection for this one commit: the platform's commits go through the recorder's
    /// committer; this serves one-off writes (and tests).
    async fn write_outbox(&self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>> {
        let mut committer = self.committer()?;
        let batch = batch.clone();
        tokio::task::spawn_blocking(move || committer.commit(&batch))
            .await
            .map_err(|err| StoreError::Internal(format!("an outbox commit panicked: {err}")))?
    }

    fn committer(&self) -> StoreResult<Box<dyn OutboxCommitter>> {
        Ok(Box::new(SqliteCommitter::open(
            &self.path,
            self.writer.lock.clone(),
            self.quotas,
        )?))
    }

    type Records = SqliteRecords;

    fn records(&self) -> &SqliteRecords {
        &self.records
    }

    /// On the records' own file: see `records`. There is no other node to tell.
    fn execution_writer(&self, _origin: &str) -> StoreResult<Box<dyn ExecutionWriter>> {
        Ok(Box::new(self.records.writer()?))
    }

    /// One process writes the file: it knows what it changed.
    async fn listen(&self) -> StoreResult<Option<Notices>> {
        Ok(None)
    }

    /// Without an fsync: a claim lost to a crash only means the job is claimed again.
    async fn claim(
        &self,
        owner: &str,
        limit: u32,
        per_app: u32,
        running: &[(AppId, u32)],
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let mut writer = RelaxedWriter::acquire(&self.writer).await?;
        writer.relax().await?;
        let claimed = claim(&mut writer.conn, owner, limit, per_app, running, lease_ms).await;
        let restored = writer.restore().await;
        let rows = claimed?;
        restored?;
        jobs::claimed(rows)
    }

    async fn extend(
        &self,
        owner: &str,
        jobs: &[JobAttempt],
        serving: &[ExecutionId],
        lease_ms: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let mut extended = 0;
        for chunk in serving.chunks(ATTEMPTS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(EXTEND_SYNC_LEASES);
            query
                .push_bind(span(lease_ms))
                .push(" WHERE owner = ")
                .push_bind(owner)
                .push(" AND id IN (");
            let mut ids = query.separated(", ");
            for id in chunk {
                ids.push_bind(id.to_string());
            }
            query.push(")");
            extended += query.build().execute(&mut *tx).await?.rows_affected();
        }
        for chunk in jobs.chunks(ATTEMPTS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(EXTEND_LEASES);
            query
                .push_bind(span(lease_ms))
                .push(" WHERE status = 'running' AND owner = ")
                .push_bind(owner)
                .push(" AND ");
            push_attempts(&mut query, chunk);
            extended += query.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(extended)
    }

    /// Nothing to rotate: SQLite reuses a deleted row's space. The lapsed requests are found by
    /// their lease's index and recorded abandoned, in one transaction.
    async fn sweep_sync(&self, _rotate_after_ms: i64) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let lapsed: Vec<(String, String, String)> = sqlx::query_as(DELETE_LAPSED_SYNC)
            .fetch_all(&mut *tx)
            .await?;
        let mut abandoned = 0;
        for (id, app_id, script_id) in lapsed {
            let args: [Arg<'_>; 4] = [
                id.into(),
                app_id.into(),
                script_id.into(),
                sql::LAPSED_SYNC_REASON.into(),
            ];
            abandoned += tx.execute(sql::INSERT_ABANDONED, &args).await?;
        }
        tx.commit().await?;
        Ok(abandoned)
    }

    async fn run_migrations(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.writer.pool)
            .await
            .map_err(migrate_error)?;
        self.records.migrate().await
    }

    /// Waits for a group commit in flight; the runs queued after it find the writer closed
    /// and are answered `Unavailable`, like every other call.
    async fn close_pools(&self) {
        self.readers.close();
        self.writer.pool.close().await;
        self.reader.close().await;
        self.records.close().await;
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        vec![
            pool_usage("reader", &self.reader),
            pool_usage("writer", &self.writer.pool),
            self.records.pool_usage(),
        ]
    }
}

/// The head of a lease extension, before the new lease and the fence.
const EXTEND_LEASES: &str = sqlite!("UPDATE outbox SET lease_until = ", now!(), " + ");
/// [`EXTEND_LEASES`] for sync requests.
const EXTEND_SYNC_LEASES: &str = sqlite!("UPDATE sync_requests SET lease_until = ", now!(), " + ");
/// Deletes the sync requests whose lease lapsed, returning their ids, apps and scripts.
const DELETE_LAPSED_SYNC: &str = sqlite!(
    "DELETE FROM sync_requests WHERE lease_until <= ",
    now!(),
    " RETURNING id, app_id, script_id"
);

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
    async fn acquire(writer: &WriterConnection) -> DbResult<Self> {
        let (conn, lock) = writer.acquire().await?;
        Ok(Self {
            conn,
            _lock: lock,
            settled: true,
        })
    }

    /// Switches to NORMAL until [`RelaxedWriter::restore`].
    async fn relax(&mut self) -> DbResult<()> {
        self.settled = false;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn restore(&mut self) -> DbResult<()> {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *self.conn)
            .await?;
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

/// One writer: no other claim runs meanwhile, so nothing to skip. Expired leases come first,
/// so a backlog of new jobs cannot hold back the recovery of a dead process's work.
const CLAIM: &str = sqlite!(
    fair_due_jobs!(
        // SQLite has no `LATERAL`: the row a correlated subquery finds, looked up by its key.
        (
            "JOIN outbox ON outbox.id = (SELECT queued.id FROM outbox AS queued ",
            " LIMIT 1) "
        ),
        "SELECT key, value FROM json_each($5)",
        now!()
    ),
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
);

/// Claims up to `limit` due jobs for `owner`, who runs `running` and may run `per_app` of one
/// app (see [`crate::OutboxStore::claim_jobs`]), in a transaction of their own on `conn`.
async fn claim(
    conn: &mut SqliteConnection,
    owner: &str,
    limit: u32,
    per_app: u32,
    running: &[(AppId, u32)],
    lease_ms: i64,
) -> DbResult<Vec<JobRow>> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let rows = sqlx::query_as(CLAIM)
        .bind(owner)
        .bind(i64::from(limit))
        .bind(span(lease_ms))
        .bind(i64::from(per_app))
        .bind(running_jobs(running))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    use picloud_core::exec::HttpRequest;
    use picloud_core::{AppName, AppSlug, ExecutionId, JobPayload, ScriptId};

    use crate::{AppStore, NewJob, OutboxStore, Store};

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
        let job = new_app_job(&store).await;
        // Written with the columns of 0005: the committer counts jobs in a table of 0010.
        sqlx::query(
            "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, status, \
             due_at) VALUES ($1, $2, $3, 'async', 'http', '{}', 'pending', 0)",
        )
        .bind(job.id.to_string())
        .bind(job.app_id.to_string())
        .bind(job.script_id.to_string())
        .execute(&store.writer.pool)
        .await
        .expect("a job waits in the outbox");

        store.migrate().await.expect("0008 applies");
        let kept: (String, String, String) = sqlx::query_as("SELECT id, mode, status FROM outbox")
            .fetch_one(&store.writer.pool)
            .await
            .expect("the job is still there");
        assert_eq!(
            kept,
            (job.id.to_string(), "async".to_owned(), "pending".to_owned())
        );
        let rowid = sqlx::query("SELECT rowid FROM outbox")
            .fetch_all(&store.writer.pool)
            .await
            .map(|rows| rows.len());
        assert!(rowid.is_err(), "a table WITHOUT ROWID has none: {rowid:?}");
        store.close().await;
    }

    // Scripts' reads go through the reading thread's own connection (`direct`): they see what
    // the writer committed, and stop with the store like the pools do.
    #[tokio::test]
    async fn reads_on_the_threads_own_connection_see_commits_and_stop_at_close() {
        use picloud_core::services::WriteOrigin;
        use picloud_core::{CollectionName, KvKey};

        use crate::KvStore;

        let (_dir, store) = migrated_store().await;
        let app = store
            .create_app(&crate::NewApp {
                slug: AppSlug::parse("shop").expect("a slug"),
                name: AppName::parse("Shop").expect("a name"),
                expose_errors: false,
            })
            .await
            .expect("the app");
        let (c, k) = (
            CollectionName::parse("c").expect("a collection"),
            KvKey::parse("k").expect("a key"),
        );
        for n in 1..=3 {
            let origin = WriteOrigin {
                app_id: app.id,
                trigger_depth: 0,
                trigger_jobs_left: 0,
            };
            store
                .kv_set(origin, &c, &k, &serde_json::json!(n))
                .await
                .expect("a write");
            let (value, _) = store
                .kv_read(app.id, &c, &k)
                .await
                .expect("a read")
                .expect("the entry");
            assert_eq!(value, serde_json::json!(n), "the read sees the last commit");
        }
        store.close().await;
        assert!(
            matches!(
                store.kv_read(app.id, &c, &k).await,
                Err(StoreError::Unavailable(_))
            ),
            "a closed store refuses reads"
        );
    }

    async fn migrated_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open(&dir.path().join("t.db"), &StoreConfig::default())
            .await
            .expect("the store opens");
        store.migrate().await.expect("the store migrates");
        (dir, store)
    }

    /// A job of a new app. The app is written with the columns of the first migration, so
    /// this works on a schema that later migrations have not reached yet.
    async fn new_app_job(store: &SqliteStore) -> NewJob {
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
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            trigger_depth: 0,
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
        let job = new_app_job(&store).await;
        let path = store.path().to_owned();
        let lock = store.writer.lock.clone();
        tokio::task::spawn_blocking(move || {
            let mut committer =
                SqliteCommitter::open(&path, lock, AppQuotas::default()).expect("a committer");
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
        let job = new_app_job(&store).await;
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
