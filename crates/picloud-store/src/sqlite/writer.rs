//! The SQLite store's one writer connection, and the write transactions on it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool};
use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::db::{arguments, Arg, DbResult, Row, Sql, WriteTx};
use crate::jobs::{self, JobValues};
use crate::sql::INSERT_FROM_JOB;
use crate::Backend;

/// The store's one writer connection (a pool of one) and the lock it shares with the outbox
/// committer's connection, so the two take turns in process and never meet on SQLite's file
/// lock, whose busy handler sleeps in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct WriterConnection {
    pub(super) pool: SqlitePool,
    pub(super) lock: Arc<Mutex<()>>,
}

impl WriterConnection {
    /// The connection, and the lock until it is dropped.
    pub(super) async fn acquire(&self) -> DbResult<(PoolConnection<Sqlite>, OwnedMutexGuard<()>)> {
        let lock = self.lock.clone().lock_owned().await;
        let conn = self.pool.acquire().await?;
        Ok((conn, lock))
    }

    /// A transaction that holds SQLite's write lock from its first statement.
    pub(super) async fn begin(&self) -> DbResult<WriteTransaction> {
        let lock = self.lock.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTransaction { tx, lock })
    }
}

/// A write transaction on the writer connection, holding the writer lock.
pub struct WriteTransaction {
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

/// `args` bound for SQLite.
pub(super) fn bind<'q>(args: &'q [Arg<'_>]) -> DbResult<SqliteArguments<'q>> {
    arguments::<Sqlite>(args)
}

impl WriteTx for WriteTransaction {
    const BACKEND: Backend = Backend::Sqlite;

    async fn fetch_optional<R: Row>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> DbResult<Option<R>> {
        let query = sqlx::query_as_with(sql.sqlite, bind(args)?);
        Ok(query.fetch_optional(&mut **self).await?)
    }

    async fn fetch_all<R: Row>(&mut self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Vec<R>> {
        let query = sqlx::query_as_with(sql.sqlite, bind(args)?);
        Ok(query.fetch_all(&mut **self).await?)
    }

    async fn execute(&mut self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<u64> {
        let query = sqlx::query_with(sql.sqlite, bind(args)?);
        Ok(query.execute(&mut **self).await?.rows_affected())
    }

    async fn insert_jobs(&mut self, jobs: &[JobValues]) -> DbResult<()> {
        let mut insert = jobs::insert_jobs(jobs, INSERT_FROM_JOB.sqlite);
        insert.build().execute(&mut **self).await?;
        Ok(())
    }

    async fn commit(self) -> DbResult<()> {
        let committed = self.tx.commit().await;
        drop(self.lock);
        Ok(committed?)
    }
}
