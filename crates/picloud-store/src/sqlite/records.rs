//! Execution records on SQLite, in a database file of their own beside the main one
//! (`picloud-executions.db` beside `picloud.db`, [`path_of`]), with migrations of their own.
//!
//! SQLite has one writer per file. In the main file, every record would wait for the outbox's
//! group commits and they for it: with records written on the outbox's thread, `hello` at 32
//! connections lost 19 % (bench/RESULTS.md, #18). In a file of their own, the platform's records
//! thread ([`SqliteExecutionWriter`]) writes beside the outbox's writer, each on its own lock.
//! Records are committed at `synchronous = NORMAL`: a crash may lose the last ones, never the
//! file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use picloud_core::AppId;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::committer::{ready, Rusqlite};
use super::direct::sqlite_error;
use super::files;
use super::writer::bind;
use crate::db::{pool_usage, Arg, DbResult, Records, Row, Sql};
use crate::errors::{migrate_error, unreachable};
use crate::executions::{record_executions, trim_executions};
use crate::{ExecutionRecord, ExecutionWriter, PoolUsage, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite-executions");

/// The records' file beside the main file `main`: its stem with `-executions`, same extension.
pub(crate) fn path_of(main: &Path) -> PathBuf {
    let stem = main
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match main.extension() {
        Some(extension) => format!("{stem}-executions.{}", extension.to_string_lossy()),
        None => format!("{stem}-executions"),
    };
    main.with_file_name(name)
}

/// The records' file through a small pool: the admin API's reads and the sweep's deletes.
#[derive(Debug, Clone)]
pub struct SqliteRecords {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteRecords {
    /// Opens (creating when missing, private to this user) the records' file beside `main`.
    pub(super) async fn open(main: &Path, acquire_timeout: Duration) -> StoreResult<Self> {
        let path = path_of(main);
        files::prepare(&path).await?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .test_before_acquire(false)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|err| {
                unreachable(
                    &format!(
                        "the SQLite database of execution records {} cannot be opened",
                        path.display()
                    ),
                    err,
                )
            })?;
        Ok(Self { pool, path })
    }

    pub(super) async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(migrate_error)
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// How full the records' pool is (the records thread's own connection is apart).
    pub(super) fn pool_usage(&self) -> PoolUsage {
        pool_usage("records", &self.pool)
    }

    /// A writer on a connection of its own.
    pub(super) fn writer(&self) -> StoreResult<SqliteExecutionWriter> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(sqlite_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite_error)?;
        Ok(SqliteExecutionWriter { conn })
    }
}

impl Records for SqliteRecords {
    async fn fetch_all<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Vec<R>> {
        let query = sqlx::query_as_with(sql.sqlite, bind(args)?);
        Ok(query.fetch_all(&self.pool).await?)
    }

    async fn write(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<u64> {
        let query = sqlx::query_with(sql.sqlite, bind(args)?);
        Ok(query.execute(&self.pool).await?.rows_affected())
    }
}

/// The platform's records thread's writer: a rusqlite connection of its own, each call a
/// transaction on the calling thread.
pub(super) struct SqliteExecutionWriter {
    conn: Connection,
}

impl ExecutionWriter for SqliteExecutionWriter {
    fn write(&mut self, records: &[ExecutionRecord]) -> StoreResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        ready(record_executions(&mut Rusqlite(&tx), records))?;
        tx.commit().map_err(sqlite_error)
    }

    fn trim(&mut self, app_id: AppId, keep: u64, limit: u32) -> StoreResult<u64> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error)?;
        let trimmed = ready(trim_executions(&mut Rusqlite(&tx), app_id, keep, limit))?;
        tx.commit().map_err(sqlite_error)?;
        Ok(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_file_sits_beside_the_main_one() {
        assert_eq!(
            path_of(Path::new("/srv/picloud-data/picloud.db")),
            Path::new("/srv/picloud-data/picloud-executions.db")
        );
        assert_eq!(path_of(Path::new("data")), Path::new("data-executions"));
        assert_eq!(
            path_of(Path::new("./pc.sqlite3")),
            Path::new("./pc-executions.sqlite3")
        );
    }
}
