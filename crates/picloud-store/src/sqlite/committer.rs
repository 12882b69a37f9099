//! The outbox's group commits on SQLite, on the thread that calls them (the recorder's own)
//! through a connection of its own: prepared statements bound row by row, no round trip to
//! another thread. `notes/outbox.md` measured this shape as the one that reaches half the bare
//! server; through sqlx's connection thread a commit also waited for two thread wake-ups.
//!
//! The runs of a batch (their KV writes, trigger jobs, dead-letter actions and job completions)
//! are committed here too, by `crate::commit` over this connection's transaction ([`Rusqlite`]):
//! each statement a call on this thread, where the sqlx writer cost two thread wake-ups.
//!
//! SQLite allows one writer at a time. While it commits, the committer holds the store's writer
//! lock (see [`super::WriterConnection`]).

use std::future::{self, Future};
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rusqlite::{
    named_params, params, Connection, OpenFlags, OptionalExtension, Transaction,
    TransactionBehavior,
};
use tokio::sync::Mutex;

use super::direct::{self, sqlite_error};
use crate::commit::{commit_runs, AnyRow, CommitTx};
use crate::db::{sqlite, Arg, Sql};
use crate::jobs::{JobCounts, JobValues};
use crate::rows::span;
use crate::sql::{self, insert_into_outbox};
use crate::{
    AppQuotas, Backend, OutboxBatch, OutboxCommitter, RunVerdict, StoreError, StoreResult,
};

/// One job, bound by rusqlite's numbered parameters in the order of
/// [`crate::sql::job_value_columns`]: a job of an app that no longer exists inserts nothing.
/// Row by row from the app's row rather than [`crate::sql::INSERT_FROM_JOB`]'s `job` rows: a
/// one-row `WITH job (…) AS (VALUES …)` costs SQLite two materialized tables per insert.
const INSERT_JOB: &str = sqlite!(
    insert_into_outbox!(),
    "SELECT ?1, app.id, ?3, ?4, ?5, ?6, 'async', 'pending', 0, app.now, app.now ",
    "FROM (SELECT id, ",
    now!(),
    " AS now FROM apps WHERE id = ?2) AS app"
);

/// Fenced by attempt: a row claimed again meanwhile stays. Returns what the app's count of
/// queued jobs needs.
const DELETE_FINISHED: &str = "DELETE FROM outbox WHERE id = ?1 AND attempt = ?2 RETURNING app_id";

/// A sync request's record (`?1` id, `?2` app, `?3` script, `?4` owner, `?5` lease): nothing for
/// an app that no longer exists.
const INSERT_SYNC_REQUEST: &str = sqlite!(
    "INSERT INTO sync_requests (id, app_id, script_id, owner, lease_until) ",
    "SELECT ?1, id, ?3, ?4, ",
    now!(),
    " + ?5 FROM apps WHERE id = ?2"
);
const DELETE_SYNC_REQUEST: &str = "DELETE FROM sync_requests WHERE id = ?1";

pub(crate) struct SqliteCommitter {
    conn: Connection,
    /// The store's writer lock, held during each commit.
    writer_lock: Arc<Mutex<()>>,
    /// Whether `conn` is at `synchronous = FULL` (else NORMAL).
    full: bool,
    /// What each app may hold, for the batches' runs.
    quotas: AppQuotas,
}

impl SqliteCommitter {
    /// Opens a connection to the store's (migrated) file at `path`.
    pub(crate) fn open(
        path: &Path,
        writer_lock: Arc<Mutex<()>>,
        quotas: AppQuotas,
    ) -> StoreResult<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite_error)?;
        Ok(Self {
            conn,
            writer_lock,
            full: true,
            quotas,
        })
    }

    /// The connection's `synchronous` setting (2: FULL, 1: NORMAL).
    #[cfg(test)]
    pub(crate) fn synchronous(&self) -> rusqlite::Result<i64> {
        self.conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
    }

    fn write(&mut self, batch: &OutboxBatch, jobs: &[JobValues]) -> StoreResult<Vec<RunVerdict>> {
        // Runs that write are durable. Set outside the transaction: a FULL commit syncs the WAL,
        // earlier NORMAL ones with it.
        let durable = batch.must_sync();
        if self.full != durable {
            let level = if durable { "FULL" } else { "NORMAL" };
            self.conn
                .pragma_update(None, "synchronous", level)
                .map_err(sqlite_error)?;
            self.full = durable;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        write_rows(&tx, batch, jobs).map_err(sqlite_error)?;
        let verdicts = ready(commit_runs(&mut Rusqlite(&tx), &self.quotas, &batch.runs))?;
        // Dropped without a commit, the transaction rolls back.
        tx.commit().map_err(sqlite_error)?;
        Ok(verdicts)
    }
}

/// The batch's new jobs, finished attempts and sync requests, and the counts of queued jobs they
/// change.
fn write_rows(
    tx: &Transaction<'_>,
    batch: &OutboxBatch,
    jobs: &[JobValues],
) -> rusqlite::Result<()> {
    insert_jobs(tx, jobs)?;
    let mut counts = JobCounts::default();
    counts.recorded(jobs);
    let mut delete = tx.prepare_cached(DELETE_FINISHED)?;
    for finished in &batch.finished {
        let removed = delete
            .query_row(params![finished.id.to_string(), finished.attempt], |row| {
                row.get::<_, String>(0)
            })
            .optional()?;
        if let Some(app_id) = removed {
            counts.removed(&app_id);
        }
    }
    write_sync_requests(tx, batch)?;
    for (app_id, recorded, removed) in counts.by_app() {
        tx.prepare_cached(sql::COUNT_JOBS.sqlite)?
            .execute(named_params! {"$1": app_id, "$2": recorded, "$3": removed})?;
    }
    Ok(())
}

/// The records of the batch's sync requests that start, in, and of those answered, out.
fn write_sync_requests(tx: &Transaction<'_>, batch: &OutboxBatch) -> rusqlite::Result<()> {
    if !batch.serving.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_SYNC_REQUEST)?;
        for request in &batch.serving {
            insert.execute(params![
                request.id.to_string(),
                request.app_id.to_string(),
                request.script_id.to_string(),
                request.lease.owner,
                span(request.lease.lease_ms),
            ])?;
        }
    }
    if !batch.served.is_empty() {
        let mut delete = tx.prepare_cached(DELETE_SYNC_REQUEST)?;
        for id in &batch.served {
            delete.execute(params![id.to_string()])?;
        }
    }
    Ok(())
}

/// `jobs` into the outbox, row by row (see [`INSERT_JOB`]).
fn insert_jobs(tx: &Transaction<'_>, jobs: &[JobValues]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(INSERT_JOB)?;
    for job in jobs {
        insert.execute(params![
            job.id,
            job.app_id,
            job.script_id,
            job.source_kind,
            job.payload,
            job.trigger_depth,
        ])?;
    }
    Ok(())
}

/// The committer's transaction as a run's commit sees it: every call runs at once on this thread,
/// so every future it answers is ready.
pub(super) struct Rusqlite<'t>(pub(super) &'t Transaction<'t>);

impl CommitTx for Rusqlite<'_> {
    const BACKEND: Backend = Backend::Sqlite;

    fn fetch_optional<R: AnyRow>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Option<R>>> + Send {
        let rows = direct::rows(self.0, sql, args).map_err(sqlite_error);
        future::ready(rows.map(|rows| rows.into_iter().next()))
    }

    fn fetch_all<R: AnyRow>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<Vec<R>>> + Send {
        future::ready(direct::rows(self.0, sql, args).map_err(sqlite_error))
    }

    fn execute(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> impl Future<Output = StoreResult<u64>> + Send {
        let affected = direct::statement(self.0, sql, args)
            .and_then(|mut statement| statement.raw_execute())
            .map_err(sqlite_error);
        future::ready(affected.map(|n| n as u64))
    }

    fn insert_jobs(&mut self, jobs: &[JobValues]) -> impl Future<Output = StoreResult<()>> + Send {
        future::ready(insert_jobs(self.0, jobs).map_err(sqlite_error))
    }
}

/// The output of `future`, whose every await is ready at once ([`Rusqlite`]'s).
pub(super) fn ready<T>(future: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => Err(StoreError::Internal(
            "a transaction on an SQLite connection of its own waited, which it never should"
                .to_owned(),
        )),
    }
}

impl OutboxCommitter for SqliteCommitter {
    fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>> {
        let jobs = JobValues::all(&batch.enqueue)?;
        let writer_lock = self.writer_lock.clone();
        let _writer = writer_lock.blocking_lock();
        self.write(batch, &jobs)
    }
}
