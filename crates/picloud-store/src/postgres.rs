//! The PostgreSQL store, for production and for several PiCloud nodes on one database.
//!
//! One [`PgPool`] of [`StoreConfig::max_connections`] connections; a caller waits at most
//! [`StoreConfig::acquire_timeout_ms`] for one, then gets `Unavailable`. The pool reconnects on
//! its own after a restart of the server. Timestamps come from the database's clock
//! (`clock_timestamp()`, not `now()`, which would stand still for a whole transaction).
//!
//! What is written once for both backends is in the crate's domain modules; this module holds
//! the [`Engine`] primitives on the pool and the hooks where PostgreSQL differs: runs' commits
//! (each in a transaction of its own), the outbox's committer on a connection of its own (`committer`), the claim under
//! `FOR UPDATE SKIP LOCKED`.

mod committer;
mod notices;
mod records;

use std::str::FromStr;
use std::time::Duration;

use picloud_core::{AppId, ExecutionId};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Transaction};

use self::committer::{
    commit_batch, push_attempts_locked_in_order, OwnConnection, PgCommitter, BEGIN_WITHOUT_FLUSH,
};
pub(crate) use self::notices::Listener;
use self::records::PgExecutionWriter;
use crate::commit::{commit_runs, AnyRow};
use crate::db::{arguments, pool_usage, postgres, Arg, DbResult, Engine, Row, Sql, WriteTx};
use crate::errors::{migrate_error, unreachable};
use crate::jobs::{self, running_jobs, JobValues, ATTEMPTS_PER_STATEMENT};
use crate::rows::{span, JobRow};
use crate::sql::{self, fair_due_jobs, job_columns, INSERT_FROM_JOB};
use crate::{
    AppQuotas, Backend, ClaimedJob, ExecutionWriter, JobAttempt, Notices, OutboxBatch,
    OutboxCommitter, PoolUsage, RunCommit, RunVerdict, StoreConfig, StoreError, StoreResult,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// PiCloud's stores in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    quotas: AppQuotas,
}

impl PgStore {
    /// Connects to `url` (a `postgres://` or `postgresql://` URL); `Unavailable` when the server
    /// cannot be reached.
    ///
    /// Without JIT compilation: every statement of ours reads a few rows, and one whose cost the
    /// planner overestimates (the claim's walk, while `apps` is taken for 570 rows) was compiled
    /// at every run — 34 ms of a 57 ms claim, ~90 jobs/s on a fresh database's first backlog.
    pub async fn open(url: &str, config: &StoreConfig) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| {
                StoreError::InvalidInput(format!(
                    "PICLOUD_DATABASE_URL is not a PostgreSQL URL this server understands: {err}"
                ))
            })?
            .options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
            .connect_with(options)
            .await
            .map_err(|err| unreachable("PostgreSQL cannot be reached", err))?;
        Ok(Self {
            pool,
            quotas: config.quotas,
        })
    }
}

/// `args` bound for PostgreSQL.
fn bind(args: &[Arg<'_>]) -> DbResult<PgArguments> {
    arguments::<Postgres>(args)
}

impl WriteTx for Transaction<'_, Postgres> {
    const BACKEND: Backend = Backend::Postgres;

    async fn fetch_optional<R: Row>(
        &mut self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
    ) -> DbResult<Option<R>> {
        let query = sqlx::query_as_with(sql.postgres, bind(args)?);
        Ok(query.fetch_optional(&mut **self).await?)
    }

    async fn fetch_all<R: Row>(&mut self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Vec<R>> {
        let query = sqlx::query_as_with(sql.postgres, bind(args)?);
        Ok(query.fetch_all(&mut **self).await?)
    }

    async fn execute(&mut self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<u64> {
        let query = sqlx::query_with(sql.postgres, bind(args)?);
        Ok(query.execute(&mut **self).await?.rows_affected())
    }

    async fn insert_jobs(&mut self, jobs: &[JobValues]) -> DbResult<()> {
        let mut insert = jobs::insert_jobs(jobs, INSERT_FROM_JOB.postgres);
        insert.build().execute(&mut **self).await?;
        Ok(())
    }

    async fn commit(self) -> DbResult<()> {
        Ok(Transaction::commit(self).await?)
    }
}

impl Engine for PgStore {
    const BACKEND: Backend = Backend::Postgres;

    type Write = Transaction<'static, Postgres>;

    fn app_quotas(&self) -> &AppQuotas {
        &self.quotas
    }

    async fn fetch_optional<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Option<R>> {
        let query = sqlx::query_as_with(sql.postgres, bind(args)?);
        Ok(query.fetch_optional(&self.pool).await?)
    }

    async fn fetch_all<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Vec<R>> {
        let query = sqlx::query_as_with(sql.postgres, bind(args)?);
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// On the pool: one statement is a transaction of its own.
    async fn write_optional<R: Row>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<Option<R>> {
        self.fetch_optional(sql, args).await
    }

    async fn write(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> DbResult<u64> {
        let query = sqlx::query_with(sql.postgres, bind(args)?);
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    async fn begin_write(&self) -> DbResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    async fn read_rows<R: AnyRow>(&self, sql: Sql<'_>, args: &[Arg<'_>]) -> StoreResult<Vec<R>> {
        Ok(self.fetch_all(sql, args).await?)
    }

    /// Streams the rows, and stops reading (dropping the rest) once they hold too much.
    async fn read_rows_within<R: AnyRow>(
        &self,
        sql: Sql<'_>,
        args: &[Arg<'_>],
        max_bytes: usize,
    ) -> StoreResult<Option<Vec<R>>> {
        use futures_util::TryStreamExt as _;
        let query = sqlx::query_as_with::<_, R, _>(sql.postgres, bind(args)?);
        let mut rows = query.fetch(&self.pool);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while let Some(row) = rows.try_next().await.map_err(crate::db::DbError)? {
            bytes = bytes.saturating_add(row.bytes());
            if bytes > max_bytes {
                return Ok(None);
            }
            out.push(row);
        }
        Ok(Some(out))
    }

    /// Each run in a transaction of its own: concurrent commits share WAL flushes already.
    async fn commit(&self, run: RunCommit) -> StoreResult<RunVerdict> {
        let mut tx = self.pool.begin().await?;
        let verdicts = commit_runs(&mut tx, &self.quotas, std::slice::from_ref(&run)).await?;
        tx.commit().await?;
        verdicts
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Internal("a run's commit gave no verdict".to_owned()))
    }

    async fn write_outbox(&self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>> {
        let mut conn = self.pool.acquire().await?;
        commit_batch(&mut conn, batch, &self.quotas).await
    }

    fn committer(&self) -> StoreResult<Box<dyn OutboxCommitter>> {
        Ok(Box::new(PgCommitter {
            conn: OwnConnection::like(&self.pool)?,
            quotas: self.quotas,
        }))
    }

    type Records = Self;

    fn records(&self) -> &Self {
        self
    }

    fn execution_writer(&self, origin: &str) -> StoreResult<Box<dyn ExecutionWriter>> {
        Ok(Box::new(PgExecutionWriter {
            conn: OwnConnection::like(&self.pool)?,
            origin: origin.to_owned(),
        }))
    }

    async fn listen(&self) -> StoreResult<Option<Notices>> {
        Ok(Some(Notices(Listener::start(&self.pool).await?)))
    }

    /// Rows are locked under FOR UPDATE SKIP LOCKED: two nodes claiming at once never wait for,
    /// nor take, each other's rows. Each kind of due row is read on its own, at most `limit` of
    /// each: an OR of the two made PostgreSQL fetch and sort every due row before the LIMIT.
    /// Expired leases come first, in the order of their partial index, so a backlog of new jobs
    /// cannot hold back the recovery of a dead node's work. The fair pick of pending rows is
    /// read first (a recursive walk, which FOR UPDATE may not lock), then its rows are locked in
    /// turn order: one another node holds is skipped for the next, so a claim that comes back
    /// short means nothing more is due for this node.
    ///
    /// The commit does not wait for the WAL flush (claims run one after another): a claim lost
    /// to a crash only means the job is claimed again, which at-least-once allows. Each claim is
    /// planned for its own limit and the table as it is now: the prepared statement's cached
    /// generic plan, made while the outbox was small, was slow on a backlog. The figures are in
    /// bench/RESULTS.md.
    async fn claim(
        &self,
        owner: &str,
        limit: u32,
        per_app: u32,
        running: &[(AppId, u32)],
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        let mut tx = self
            .pool
            .begin_with(concat!(
                "BEGIN; SET LOCAL synchronous_commit = off; ",
                "SET LOCAL plan_cache_mode = force_custom_plan"
            ))
            .await?;
        let rows: Vec<JobRow> = sqlx::query_as(CLAIM)
            .bind(owner)
            .bind(i64::from(limit))
            .bind(span(lease_ms))
            .bind(i64::from(per_app))
            .bind(running_jobs(running))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        jobs::claimed(rows)
    }

    /// A lost extension only matters if this process died, and then its leases should lapse.
    async fn extend(
        &self,
        owner: &str,
        jobs: &[JobAttempt],
        serving: &[ExecutionId],
        lease_ms: i64,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN_WITHOUT_FLUSH).await?;
        let mut extended = 0;
        if !serving.is_empty() {
            let ids: Vec<String> = serving.iter().map(ToString::to_string).collect();
            extended += sqlx::query(EXTEND_SYNC_LEASES)
                .bind(span(lease_ms))
                .bind(owner)
                .bind(ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        for chunk in jobs.chunks(ATTEMPTS_PER_STATEMENT) {
            let mut query = QueryBuilder::new(EXTEND_LEASES);
            query
                .push_bind(span(lease_ms))
                .push(" WHERE status = 'running' AND owner = ")
                .push_bind(owner)
                .push(" AND ");
            push_attempts_locked_in_order(&mut query, chunk);
            extended += query.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(extended)
    }

    /// Rotates the partitions of `sync_requests` (see the migration that made them) when the
    /// last rotation, by any node, is at least `rotate_after_ms` old: in one transaction, the
    /// partition not written now is locked (a group commit that deletes from it waits), its
    /// lapsed requests are recorded abandoned, those still held move to the written one, it is
    /// emptied by `TRUNCATE`, and written from then on. An insert that read the old slot before
    /// the switch lands in the partition it read, which the next rotation looks through again.
    async fn sweep_sync(&self, rotate_after_ms: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let rotated: Option<(i16, i64)> = sqlx::query_as(ROTATE_SYNC_SLOT)
            .bind(rotate_after_ms)
            .fetch_optional(&mut *tx)
            .await?;
        // `now` parts the lapsed from the held: one clock reading for both.
        let Some((emptied, now)) = rotated else {
            return Ok(0);
        };
        let (emptied, written): (&str, i16) = match emptied {
            0 => ("sync_requests_0", 1),
            _ => ("sync_requests_1", 0),
        };
        sqlx::query(&format!("LOCK TABLE {emptied} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await?;
        let abandoned = sqlx::query(&format!("{RECORD_LAPSED_SYNC} FROM {emptied} {LAPSED}"))
            .bind(sql::LAPSED_SYNC_REASON)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(&format!("{KEEP_HELD_SYNC} FROM {emptied} {HELD}"))
            .bind(written)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("TRUNCATE {emptied}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(abandoned)
    }

    /// sqlx takes an advisory lock, so nodes starting together apply each migration once.
    async fn run_migrations(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(migrate_error)
    }

    async fn close_pools(&self) {
        self.pool.close().await;
    }

    fn pool_usage(&self) -> Vec<PoolUsage> {
        vec![pool_usage("main", &self.pool)]
    }
}

/// The head of a lease extension, before the new lease and the fence.
const EXTEND_LEASES: &str = postgres!("UPDATE outbox SET lease_until = ", now!(), " + ");

/// Extends the leases (by `$1`) of the sync requests `$3` that `$2` holds, taking their rows'
/// locks in id order (see [`push_attempts_locked_in_order`]), then updating them by key (as the
/// group commit deletes them: see its `WRITE_SYNC_REQUESTS`).
const EXTEND_SYNC_LEASES: &str = postgres!(
    "UPDATE sync_requests SET lease_until = ",
    now!(),
    " + $1 WHERE owner = $2 AND id = ANY(ARRAY(SELECT id FROM sync_requests ",
    "WHERE id = ANY($3) ORDER BY id FOR UPDATE))"
);

/// Switches the partition written to the other one when the last switch is `$1` ms old or
/// older; returns the slot written from now on (the one to empty first) and the time.
const ROTATE_SYNC_SLOT: &str = postgres!(
    "UPDATE sync_rotation SET slot = 1 - slot, rotated_at = ",
    clock!(),
    " WHERE rotated_at <= ",
    clock!(),
    " - $1 RETURNING slot, rotated_at"
);
/// The head of the rotation's record of a partition's requests lapsed by `$2` (`$1` the
/// reason), before `FROM <partition>` and [`LAPSED`].
const RECORD_LAPSED_SYNC: &str = postgres!(
    "INSERT INTO abandoned_executions (execution_id, app_id, script_id, reason, created_at) ",
    "SELECT request.id, request.app_id, request.script_id, $1, ",
    now!(),
);
const LAPSED: &str = "AS request JOIN apps ON apps.id = request.app_id \
     WHERE request.lease_until <= $2 ON CONFLICT (execution_id) DO NOTHING";
/// The head of the rotation's move of a partition's requests held past `$2` to the slot `$1`,
/// before `FROM <partition>` and [`HELD`].
const KEEP_HELD_SYNC: &str = "INSERT INTO sync_requests (slot, id, app_id, script_id, owner, \
     lease_until) SELECT $1, id, app_id, script_id, owner, lease_until";
const HELD: &str = "WHERE lease_until > $2";

/// See [`PgStore::claim`](Engine::claim). Its plan must not depend on the planner's estimate of
/// the apps (a table of a few rows that autovacuum may never analyze, so taken for hundreds):
/// with the join of SQLite's seek, and the pending rows joined by key alone, PostgreSQL hashed
/// the whole outbox three times a claim (50 ms on a backlog of 22,000 jobs; this takes about
/// one). The walk's seek is a `LATERAL` subquery, run for each app and step whatever the
/// estimates; the pending rows are found by their keys (`= ANY`) before they are joined to
/// their turns, and their status is tested in a `CASE`, from which no partial index's predicate
/// (`status = 'pending'`) is proved: with statistics taken while the outbox held no pending
/// rows (a fresh database's first minute), the planner took the pending rows' index for one row
/// and walked it whole in place of the keys (40 ms a claim on a backlog of 4,500 jobs).
const CLAIM: &str = postgres!(
    fair_due_jobs!(
        (
            "CROSS JOIN LATERAL (SELECT queued.id, queued.due_at FROM outbox AS queued ",
            " LIMIT 1) AS outbox "
        ),
        "SELECT key, CAST(value AS BIGINT) FROM jsonb_each_text(CAST($5 AS JSONB))",
        clock!()
    ),
    ", expired AS (SELECT id FROM outbox WHERE status = 'running' AND lease_until <= ",
    clock!(),
    " ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED), ",
    "pending AS (SELECT outbox.id FROM fair JOIN outbox ON outbox.id = fair.id ",
    "WHERE outbox.id = ANY(ARRAY(SELECT id FROM fair)) ",
    "AND CASE outbox.status WHEN 'pending' THEN outbox.due_at <= ",
    clock!(),
    " ELSE FALSE END ",
    "ORDER BY fair.turn, fair.due_at, fair.id LIMIT $2 FOR UPDATE OF outbox SKIP LOCKED) ",
    "UPDATE outbox SET status = 'running', owner = $1, attempt = attempt + 1, ",
    "lease_until = ",
    clock!(),
    " + $3 ",
    "WHERE id IN (SELECT id FROM expired UNION ALL SELECT id FROM pending LIMIT $2) ",
    "RETURNING ",
    job_columns!()
);

#[cfg(test)]
mod tests {
    use picloud_test_support::{Backend as TestBackend, TestDatabase};
    use sqlx::postgres::PgConnection;
    use sqlx::Connection;

    use super::committer::{BEGIN_FLUSHED, WRITE_SYNC_REQUESTS};
    use super::*;

    /// A PostgreSQL store on a fresh database, migrated; `None` where PostgreSQL is skipped.
    async fn fresh() -> Option<(PgStore, TestDatabase)> {
        let database = TestDatabase::create(TestBackend::Postgres).await?;
        let url = database.config().database_url.clone().expect("a URL");
        let store = PgStore::open(&url, &StoreConfig::default())
            .await
            .expect("open");
        store.run_migrations().await.expect("migrate");
        Some((store, database))
    }

    /// The plan PostgreSQL makes for `sql` with `bind`'s arguments, as text, run (`ANALYZE`):
    /// with the rows each step read.
    async fn plan(
        pool: &PgPool,
        sql: &str,
        bind: impl FnOnce(
            sqlx::query::QueryAs<'_, Postgres, (String,), PgArguments>,
        ) -> sqlx::query::QueryAs<'_, Postgres, (String,), PgArguments>,
    ) -> String {
        let explain = format!("EXPLAIN (ANALYZE) {sql}");
        let lines: Vec<(String,)> = bind(sqlx::query_as(&explain))
            .fetch_all(pool)
            .await
            .expect("EXPLAIN");
        lines.into_iter().map(|(line,)| line + "\n").collect()
    }

    // #19: every sync request writes `sync_requests` twice, and its partitions are never vacuumed
    // nor analyzed (a rotation empties them). Written as `id IN (SELECT …)`, the group commit's
    // deletion was planned as a join that read a whole partition, dead rows and all, for every
    // batch: 1.1 ms a statement instead of 0.09, and hello on PostgreSQL fell from 29 k to 23 k
    // req/s. Each statement must find its rows by key in a partition full of dead rows.
    #[tokio::test]
    async fn sync_request_writes_find_their_rows_by_key_among_dead_rows() {
        let Some((store, _database)) = fresh().await else {
            return;
        };
        for dead_rows in [
            "INSERT INTO sync_requests (slot, id, app_id, script_id, owner, lease_until) \
             SELECT slot, 'request-' || n, 'app', 'script', 'node', 0 \
             FROM generate_series(1, 20000) AS n CROSS JOIN (VALUES (0), (1)) AS slots (slot)",
            "DELETE FROM sync_requests",
        ] {
            sqlx::query(dead_rows)
                .execute(&store.pool)
                .await
                .expect("dead rows");
        }
        let ids = || vec!["request-1".to_owned(), "request-2".to_owned()];
        let write = plan(&store.pool, WRITE_SYNC_REQUESTS, |query| {
            query
                .bind(ids())
                .bind(vec!["request-3".to_owned()])
                .bind(vec!["app".to_owned()])
                .bind(vec!["script".to_owned()])
                .bind(vec!["node".to_owned()])
                .bind(vec![1_000i64])
        })
        .await;
        let extend = plan(&store.pool, EXTEND_SYNC_LEASES, |query| {
            query.bind(1_000i64).bind("node").bind(ids())
        })
        .await;
        for (statement, plan) in [("the group commit", write), ("the heartbeat", extend)] {
            assert!(
                !plan.contains("Seq Scan on sync_requests"),
                "{statement} reads a whole partition:\n{plan}"
            );
        }
    }

    // The outbox's committer and the records' writer commit without waiting for the WAL's flush,
    // so that a batch of sync requests is one statement; a durable batch (accepted async jobs,
    // runs that write) waits for it all the same.
    #[test]
    fn a_connection_of_its_own_flushes_only_the_transactions_that_ask() {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let Some((store, _database)) = runtime.block_on(fresh()) else {
            return;
        };
        let mut own = OwnConnection::like(&store.pool).expect("a connection of its own");
        let (alone, flushed) = own
            .run(async |conn: &mut PgConnection| {
                let show = "SHOW synchronous_commit";
                let (alone,): (String,) = sqlx::query_as(show).fetch_one(&mut *conn).await?;
                let mut tx = conn.begin_with(BEGIN_FLUSHED).await?;
                let (flushed,): (String,) = sqlx::query_as(show).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok((alone, flushed))
            })
            .expect("the settings");
        assert_eq!(alone, "off", "a statement alone");
        assert_eq!(flushed, "on", "a durable transaction");
    }

    // #19: the claim's plan must not hang on the planner's estimates. `apps` is a table of a few
    // rows that autovacuum may never analyze (so taken for hundreds): with SQLite's correlated
    // seek and the pending rows joined by key alone, PostgreSQL hashed the whole outbox three
    // times a claim (50 ms on a backlog of 22,000 jobs instead of about one). And the outbox
    // analyzed while it held no pending job (a fresh database's first minute): its pending
    // index was taken for one row and walked whole in place of the keys (40 ms a claim).
    #[tokio::test]
    async fn the_claim_seeks_a_backlog_by_key_whatever_the_statistics_say() {
        let Some((store, _database)) = fresh().await else {
            return;
        };
        let backlog = "INSERT INTO outbox \
             (id, app_id, script_id, mode, source_kind, payload, status, due_at) \
             SELECT 'job-' || lpad(n::text, 6, '0'), 'app-' || (n % 3 + 1), 'script', 'async', \
             'http', '{}', 'pending', n FROM generate_series(1, 22000) AS n";
        let statistics: [(&str, &[&str]); 3] = [
            (
                "never analyzed",
                &[
                    "INSERT INTO apps (id, slug, name) \
                     SELECT 'app-' || n, 'app-' || n, 'app' FROM generate_series(1, 3) AS n",
                    backlog,
                ],
            ),
            ("analyzed", &["ANALYZE outbox"]),
            (
                "analyzed when no job was pending",
                &[
                    "DELETE FROM outbox",
                    "INSERT INTO outbox \
                     (id, app_id, script_id, mode, source_kind, payload, status, due_at) \
                     SELECT 'ran-' || n, 'app-1', 'script', 'async', 'http', '{}', 'running', n \
                     FROM generate_series(1, 30) AS n",
                    "ANALYZE outbox",
                    "DELETE FROM outbox",
                    backlog,
                ],
            ),
        ];
        for (state, setup) in statistics {
            for statement in setup {
                sqlx::query(statement)
                    .execute(&store.pool)
                    .await
                    .expect("the outbox's state");
            }
            let claim = plan(&store.pool, CLAIM, |query| {
                query
                    .bind("node")
                    .bind(5i64)
                    .bind(30_000i64)
                    .bind(5i64)
                    .bind("{}")
            })
            .await;
            let walked = claim.lines().any(|line| {
                line.contains("Seq Scan on outbox")
                    || line
                        .split("Rows Removed by Filter: ")
                        .nth(1)
                        .is_some_and(|removed| removed.trim().parse().unwrap_or(0) > 100)
            });
            assert!(!walked, "the claim walks the outbox ({state}):\n{claim}");
            assert!(
                !claim.contains("JIT:"),
                "the claim is compiled ({state}):\n{claim}"
            );
        }
    }
}
