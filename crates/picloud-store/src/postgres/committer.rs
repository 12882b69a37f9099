//! The outbox's group commits on PostgreSQL: [`PgCommitter`] on the recorder's thread, and the
//! batch they write.

use std::time::{Duration, Instant};

use picloud_core::ExecutionId;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool};
use sqlx::{Connection, Postgres, QueryBuilder};
use tokio::runtime::Runtime;

use crate::commit::commit_runs;
use crate::db::{postgres, DbResult};
use crate::jobs::{
    count_jobs, enqueue, push_attempts, JobCounts, JobValues, ATTEMPTS_PER_STATEMENT,
};
use crate::rows::span;
use crate::{
    AppQuotas, JobAttempt, OutboxBatch, OutboxCommitter, RunVerdict, StoreError, StoreResult,
    SyncRequest,
};

/// A transaction whose commit does not wait for its WAL record to be flushed (in the same round
/// trip as its `BEGIN`).
pub(super) const BEGIN_WITHOUT_FLUSH: &str = "BEGIN; SET LOCAL synchronous_commit = off";

/// A connection of its own for a thread of its own (the recorder's, the records'), driven by a
/// runtime of its own: a call takes no hop through the server's runtime (its reactor would
/// otherwise have to wake this thread for every reply). A connection that failed is dropped and
/// opened again at the next call, and one idle for a while is pinged first (as the pool does
/// before lending one), so a restart of PostgreSQL is survived.
pub(super) struct OwnConnection {
    pub(super) options: PgConnectOptions,
    /// How long opening the connection may take: the pool's acquire timeout.
    pub(super) connect_timeout: Duration,
    // Before `runtime`: fields drop in order, and the socket belongs to that runtime.
    pub(super) conn: Option<PgConnection>,
    /// When `conn` was last used.
    pub(super) used_at: Instant,
    pub(super) runtime: OwnRuntime,
}

/// How long a connection of its own may sit idle before it is pinged before a call.
const IDLE_PING: Duration = Duration::from_secs(1);

impl OwnConnection {
    /// A connection like the pool's, not opened yet.
    pub(super) fn like(pool: &PgPool) -> StoreResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| StoreError::Internal(format!("a connection's own runtime: {err}")))?;
        Ok(Self {
            options: (*pool.connect_options()).clone(),
            connect_timeout: pool.options().get_acquire_timeout(),
            conn: None,
            used_at: Instant::now(),
            runtime: OwnRuntime(Some(runtime)),
        })
    }

    /// Runs `work` on the connection (opened, or pinged, first), blocking this thread.
    pub(super) fn run<T>(
        &mut self,
        work: impl AsyncFnOnce(&mut PgConnection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let Self {
            options,
            connect_timeout,
            conn,
            used_at,
            runtime,
        } = self;
        let idle = used_at.elapsed() >= IDLE_PING;
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
                    conn.insert(connected?)
                }
            };
            let done = work(connection).await;
            if matches!(done, Err(StoreError::Unavailable(_))) {
                *conn = None;
            }
            done
        })
    }
}

/// The outbox's group commits on the recorder's thread, through a connection of its own.
pub(super) struct PgCommitter {
    pub(super) conn: OwnConnection,
    /// What each app may hold, for the batches' runs.
    pub(super) quotas: AppQuotas,
}

/// The runtime of a connection of its own. Dropped, it shuts down in the background: a runtime
/// dropped in async code (a test's, a platform's that failed to start) would panic.
pub(super) struct OwnRuntime(pub(super) Option<Runtime>);

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

impl OutboxCommitter for PgCommitter {
    fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>> {
        let quotas = &self.quotas;
        self.conn
            .run(async |conn| commit_batch(conn, batch, quotas).await)
    }
}

/// Writes `batch` in one transaction on `conn`: its rows, then its runs (which lock their apps'
/// `app_usage` rows, after the outbox's own rows and counts: see `crate::commit`).
pub(super) async fn commit_batch(
    conn: &mut PgConnection,
    batch: &OutboxBatch,
    quotas: &AppQuotas,
) -> StoreResult<Vec<RunVerdict>> {
    let jobs = JobValues::all(&batch.enqueue)?;
    // Unless durable, the commit returns before its WAL record is flushed; a crash may lose it.
    let mut tx = if batch.must_sync() {
        conn.begin().await?
    } else {
        conn.begin_with(BEGIN_WITHOUT_FLUSH).await?
    };
    write_batch(&mut tx, &jobs, &batch.finished).await?;
    write_sync_requests(&mut tx, &batch.serving, &batch.served).await?;
    let verdicts = commit_runs(&mut tx, quotas, &batch.runs).await?;
    tx.commit().await?;
    Ok(verdicts)
}

/// One group commit: new jobs in, finished attempts out (fenced by attempt).
async fn write_batch(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    jobs: &[JobValues],
    finished: &[JobAttempt],
) -> DbResult<()> {
    enqueue(tx, jobs).await?;
    let mut counts = JobCounts::default();
    counts.recorded(jobs);
    for chunk in finished.chunks(ATTEMPTS_PER_STATEMENT) {
        let mut query = QueryBuilder::new("DELETE FROM outbox WHERE ");
        push_attempts_locked_in_order(&mut query, chunk);
        query.push(" RETURNING app_id");
        let removed: Vec<(String,)> = query.build_query_as().fetch_all(&mut **tx).await?;
        for (app_id,) in &removed {
            counts.removed(app_id);
        }
    }
    count_jobs(tx, &counts).await
}

/// Sync requests per insert statement (5 parameters each).
const SYNC_REQUESTS_PER_INSERT: usize = 1_000;

/// The end of an insert into `sync_requests`, after its `request` rows.
const INSERT_SYNC_REQUESTS_FROM: &str = postgres!(
    ") AS request (id, app_id, script_id, owner, lease_ms) ",
    "JOIN apps ON apps.id = request.app_id CROSS JOIN sync_rotation AS rotation ",
    "CROSS JOIN (SELECT ",
    now!(),
    " AS now) AS clock"
);

/// The records of the sync requests that start, into the partition written now (see
/// `sync_requests` in the migrations), and those of the requests answered, out. A request of an
/// app deleted meanwhile is not recorded.
async fn write_sync_requests(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    serving: &[SyncRequest],
    served: &[ExecutionId],
) -> DbResult<()> {
    for chunk in serving.chunks(SYNC_REQUESTS_PER_INSERT) {
        let mut query = QueryBuilder::new(
            "INSERT INTO sync_requests (slot, id, app_id, script_id, owner, lease_until) \
             SELECT rotation.slot, request.id, request.app_id, request.script_id, request.owner, \
             clock.now + request.lease_ms FROM (",
        );
        query.push_values(chunk, |mut row, request| {
            row.push_bind(request.id.to_string())
                .push_bind(request.app_id.to_string())
                .push_bind(request.script_id.to_string())
                .push_bind(request.lease.owner.as_str())
                .push_bind(span(request.lease.lease_ms));
        });
        query.push(INSERT_SYNC_REQUESTS_FROM);
        query.build().execute(&mut **tx).await?;
    }
    if !served.is_empty() {
        let ids: Vec<String> = served.iter().map(ToString::to_string).collect();
        sqlx::query(concat!(
            "DELETE FROM sync_requests WHERE id IN (SELECT id FROM sync_requests ",
            "WHERE id = ANY($1) ORDER BY id FOR UPDATE)"
        ))
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Appends `id IN (SELECT id … ORDER BY id FOR UPDATE)` with the fence of
/// [`push_attempts`]: a write to several attempts' rows that takes their locks in id order. The
/// heartbeat's lease extension and a group commit's deletions (two connections of one node) both
/// do, so they never wait for each other in a cycle; in any order they deadlocked now and then,
/// and PostgreSQL aborted one of them.
pub(super) fn push_attempts_locked_in_order(
    query: &mut QueryBuilder<'_, Postgres>,
    attempts: &[JobAttempt],
) {
    query.push("id IN (SELECT id FROM outbox WHERE ");
    push_attempts(query, attempts);
    query.push(" ORDER BY id FOR UPDATE)");
}
