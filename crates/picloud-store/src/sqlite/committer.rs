//! The outbox's group commits on SQLite, on the thread that calls them (the recorder's own)
//! through a connection of its own: prepared statements bound row by row, no round trip to
//! another thread. `notes/outbox.md` measured this shape as the one that reaches half the bare
//! server; through sqlx's connection thread a commit also waited for two thread wake-ups.
//!
//! SQLite allows one writer at a time. While it commits, the committer holds the store's writer
//! lock (see [`super::WriterConnection`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{
    named_params, params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior,
};
use tokio::sync::Mutex;

use crate::db::sqlite;
use crate::jobs::{JobCounts, JobValues};
use crate::sql::{self, insert_into_outbox};
use crate::{OutboxBatch, OutboxCommitter, StoreError, StoreResult};

/// One job, bound by rusqlite's numbered parameters in the order of
/// [`crate::sql::job_value_columns`]: a job of an app that no longer exists inserts nothing.
/// Row by row from the app's row rather than [`crate::sql::INSERT_FROM_JOB`]'s `job` rows: a
/// one-row `WITH job (…) AS (VALUES …)` costs SQLite two materialized tables per insert.
const INSERT_JOB: &str = sqlite!(
    insert_into_outbox!(),
    "SELECT ?1, app.id, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, app.now + ?11, app.now, app.now ",
    "FROM (SELECT id, ",
    now!(),
    " AS now FROM apps WHERE id = ?2) AS app"
);

/// Fenced by attempt: a row claimed again meanwhile stays. Returns what the app's count of
/// queued jobs needs.
const DELETE_FINISHED: &str =
    "DELETE FROM outbox WHERE id = ?1 AND attempt = ?2 RETURNING app_id, mode";

pub(crate) struct SqliteCommitter {
    conn: Connection,
    /// The store's writer lock, held during each commit.
    writer_lock: Arc<Mutex<()>>,
    /// Whether `conn` is at `synchronous = FULL` (else NORMAL).
    full: bool,
}

impl SqliteCommitter {
    /// Opens a connection to the store's (migrated) file at `path`.
    pub(crate) fn open(path: &Path, writer_lock: Arc<Mutex<()>>) -> StoreResult<Self> {
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
        })
    }

    /// The connection's `synchronous` setting (2: FULL, 1: NORMAL).
    #[cfg(test)]
    pub(crate) fn synchronous(&self) -> rusqlite::Result<i64> {
        self.conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
    }

    fn write(&mut self, batch: &OutboxBatch, jobs: &[JobValues]) -> rusqlite::Result<()> {
        // Set outside the transaction. A FULL commit syncs the WAL, earlier NORMAL ones with it.
        if self.full != batch.durable {
            let level = if batch.durable { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", level)?;
            self.full = batch.durable;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(INSERT_JOB)?;
            for job in jobs {
                insert.execute(params![
                    job.id,
                    job.app_id,
                    job.script_id,
                    job.mode,
                    job.source_kind,
                    job.payload,
                    job.trigger_depth,
                    job.status,
                    job.attempt,
                    job.owner,
                    job.lease_ms,
                ])?;
            }
            let mut counts = JobCounts::default();
            counts.recorded(jobs);
            let mut delete = tx.prepare_cached(DELETE_FINISHED)?;
            for finished in &batch.finished {
                let removed = delete
                    .query_row(params![finished.id.to_string(), finished.attempt], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()?;
                if let Some((app_id, mode)) = removed {
                    counts.removed(&app_id, &mode);
                }
            }
            for (app_id, recorded, removed) in counts.by_app() {
                tx.prepare_cached(sql::COUNT_JOBS.sqlite)?
                    .execute(named_params! {"$1": app_id, "$2": recorded, "$3": removed})?;
            }
        }
        // Dropped without a commit, the transaction rolls back.
        tx.commit()
    }
}

impl OutboxCommitter for SqliteCommitter {
    fn commit(&mut self, batch: &OutboxBatch) -> StoreResult<()> {
        let jobs = JobValues::all(&batch.enqueue)?;
        let writer_lock = self.writer_lock.clone();
        let _writer = writer_lock.blocking_lock();
        self.write(batch, &jobs).map_err(sqlite_error)
    }
}

/// Busy, locked or unopenable files are the database being out of reach for now.
fn sqlite_error(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}
