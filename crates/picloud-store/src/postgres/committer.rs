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
/// trip as its `BEGIN`), on a connection of the pool.
pub(super) const BEGIN_WITHOUT_FLUSH: &str = "BEGIN; SET LOCAL synchronous_commit = off";

/// A transaction whose commit waits for its WAL record to be flushed (on a synchronous standby's
/// disk too, when there is one), on a connection of its own, whose commits otherwise do not.
pub(super) const BEGIN_FLUSHED: &str = "BEGIN; SET LOCAL synchronous_commit = on";

/// A connection of its own for a thread of its own (the recorder's, the records'), driven by a
/// runtime of its own: a call takes no hop through the server's runtime (its reactor would
/// otherwise have to wake this thread for every reply). A connection that failed is dropped and
/// opened again at the next call, and one idle for a while is pinged first (as the pool does
/// before lending one), so a restart of PostgreSQL is survived.
///
/// Its commits do not wait for their WAL records to be flushed (`synchronous_commit = off` for
/// the session) unless a transaction asks ([`BEGIN_FLUSHED`]): what it writes is the outbox's
/// hot rows and execution records, which mostly promise nothing past a crash, and a statement
/// committed on its own then needs no `BEGIN` and `COMMIT` of its own.
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
    /// A connection like the pool's but for its commits, not opened yet.
    pub(super) fn like(pool: &PgPool) -> StoreResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| StoreError::Internal(format!("a connection's own runtime: {err}")))?;
        Ok(Self {
            options: (*pool.connect_options())
                .clone()
                .options([("synchronous_commit", "off")]),
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
/// `app_usage` rows, after the outbox's own rows and counts: see `crate::commit`). A batch of
/// sync requests alone is one statement, its own transaction: without the flush on a connection
/// of its own ([`OwnConnection`]), with the server's default on one of the pool's.
pub(super) async fn commit_batch(
    conn: &mut PgConnection,
    batch: &OutboxBatch,
    quotas: &AppQuotas,
) -> StoreResult<Vec<RunVerdict>> {
    if batch.enqueue.is_empty() && batch.finished.is_empty() && batch.runs.is_empty() {
        // Sync requests alone, the batches of a busy sync endpoint: one statement, committed as
        // it ends, without a transaction's three more round trips.
        write_sync_requests(conn, &batch.serving, &batch.served).await?;
        return Ok(Vec::new());
    }
    let jobs = JobValues::all(&batch.enqueue)?;
    let mut tx = if batch.must_sync() {
        conn.begin_with(BEGIN_FLUSHED).await?
    } else {
        conn.begin().await?
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

/// The records of the sync requests that start (`$2`…`$6`, one array per column), into the
/// partition written now (see `sync_requests` in the migrations), and those of the requests
/// answered (`$1`), out, in one statement: a batch of sync requests alone is one round trip. A
/// request of an app deleted meanwhile is not recorded. The answered are locked in id order, as
/// [`push_attempts_locked_in_order`] says why, and then deleted by key: the partitions are never
/// analyzed, and as `id IN (SELECT …)` the deletion was planned as a join that read a whole
/// partition, dead rows and all (1.1 ms a statement instead of 0.09).
pub(super) const WRITE_SYNC_REQUESTS: &str = postgres!(
    "WITH answered AS (DELETE FROM sync_requests WHERE id = ANY(ARRAY(SELECT id ",
    "FROM sync_requests WHERE id = ANY($1) ORDER BY id FOR UPDATE))) ",
    "INSERT INTO sync_requests (slot, id, app_id, script_id, owner, lease_until) ",
    "SELECT rotation.slot, request.id, request.app_id, request.script_id, request.owner, ",
    "clock.now + request.lease_ms ",
    "FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) ",
    "AS request (id, app_id, script_id, owner, lease_ms) ",
    "JOIN apps ON apps.id = request.app_id CROSS JOIN sync_rotation AS rotation ",
    "CROSS JOIN (SELECT ",
    now!(),
    " AS now) AS clock"
);

/// Writes what `serving` and `served` change of `sync_requests` ([`WRITE_SYNC_REQUESTS`]).
async fn write_sync_requests(
    conn: &mut PgConnection,
    serving: &[SyncRequest],
    served: &[ExecutionId],
) -> DbResult<()> {
    if serving.is_empty() && served.is_empty() {
        return Ok(());
    }
    let answered: Vec<String> = served.iter().map(ToString::to_string).collect();
    sqlx::query(WRITE_SYNC_REQUESTS)
        .bind(answered)
        .bind(column(serving, |request| request.id.to_string()))
        .bind(column(serving, |request| request.app_id.to_string()))
        .bind(column(serving, |request| request.script_id.to_string()))
        .bind(column(serving, |request| request.lease.owner.clone()))
        .bind(column(serving, |request| span(request.lease.lease_ms)))
        .execute(conn)
        .await?;
    Ok(())
}

/// One column of `requests`, as an array to bind.
fn column<T>(requests: &[SyncRequest], value: impl Fn(&SyncRequest) -> T) -> Vec<T> {
    requests.iter().map(value).collect()
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
