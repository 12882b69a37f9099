//! [`ExecutionStore`], written once for both backends: execution records (issue #18). They are
//! written by an [`crate::ExecutionWriter`] on the platform's records thread (each backend's,
//! through [`record_executions`] and [`trim_executions`]), read by the admin API and the live
//! tails of other nodes, and swept by age and by count per app, one app's range at a time (the
//! table is clustered by app and time-ordered id; see its migration).

use std::collections::HashSet;

use async_trait::async_trait;
use picloud_core::records::{ExecutionFilter, ExecutionRecord};
use picloud_core::{AppId, ExecutionId, RecordId, Timestamp};

use crate::commit::CommitTx;
use crate::db::{Arg, Engine, Records, Sql};
use crate::paging::Window;
use crate::rows::{records, span, ExecutionRow};
use crate::Backend;
use crate::{sql, ExecutionStore, ExecutionWriter, Page, PageRequest, StoreError, StoreResult};

/// The text that sorts before the id of every record made at or after `millis` (ids are UUID v7,
/// whose first 48 bits are their Unix time in milliseconds) and after every earlier one.
fn id_bound(millis: i64) -> String {
    let millis = u64::try_from(millis).unwrap_or(0) & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        millis >> 16,
        millis & 0xffff
    )
}

/// Records per `INSERT` on PostgreSQL: 16 parameters each, well within its 65,535 per
/// statement. On SQLite, where a statement costs no round trip, one record per statement
/// ([`sql::INSERT_EXECUTION`], prepared once): statements of hundreds, prepared for every
/// commit, measured three times slower (bench/RESULTS.md, #18).
const RECORDS_PER_INSERT: usize = 256;
/// The parameters of one record.
const RECORD_PARAMETERS: usize = 16;

/// Writes `executions` in the transaction `tx` belongs to, on PostgreSQL many per statement
/// (one statement per record cost a round trip each). An attempt recorded already is left out,
/// and on PostgreSQL a record of an app that is gone.
pub(crate) async fn record_executions<T: CommitTx>(
    tx: &mut T,
    executions: &[ExecutionRecord],
) -> StoreResult<()> {
    if T::BACKEND == Backend::Sqlite {
        for record in executions {
            tx.execute(Sql::same(sql::INSERT_EXECUTION), &record_args(record)?)
                .await?;
        }
        return Ok(());
    }
    for chunk in executions.chunks(RECORDS_PER_INSERT) {
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(chunk.len() * RECORD_PARAMETERS);
        for record in chunk {
            args.extend(record_args(record)?);
        }
        let text = insert_records(chunk.len());
        tx.execute(Sql::same(&text), &args).await?;
    }
    Ok(())
}

/// [`crate::ExecutionWriter::trim`] in the transaction `tx` belongs to.
pub(crate) async fn trim_executions<T: CommitTx>(
    tx: &mut T,
    app_id: AppId,
    keep: u64,
    limit: u32,
) -> StoreResult<u64> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    tx.execute(
        sql::SWEEP_EXCESS_EXECUTIONS,
        &[
            app_id.to_string().into(),
            keep.into(),
            i64::from(limit).into(),
        ],
    )
    .await
}

/// `WITH record (…) AS (VALUES ($1, …), …) INSERT …` for `count` records (see
/// [`sql::INSERT_EXECUTIONS`]).
fn insert_records(count: usize) -> String {
    let rows: Vec<String> = (0..count)
        .map(|row| {
            let params: Vec<String> = (1..=RECORD_PARAMETERS)
                .map(|n| format!("${}", row * RECORD_PARAMETERS + n))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "WITH record ({}) AS (VALUES {}) {}",
        sql::EXECUTION_COLUMNS,
        rows.join(", "),
        sql::INSERT_EXECUTIONS
    )
}

/// The values of one record, in [`sql::EXECUTION_COLUMNS`]' order; its id is always
/// [`RecordId::of`] its execution and attempt, which finds it (see the table's migration).
fn record_args(record: &ExecutionRecord) -> StoreResult<[Arg<'_>; RECORD_PARAMETERS]> {
    let logs = serde_json::to_string(&record.logs)
        .map_err(|err| StoreError::Internal(format!("an execution's log as JSON: {err}")))?;
    let error = record.error.as_ref();
    Ok([
        RecordId::of(record.execution_id, record.attempt)
            .to_string()
            .into(),
        record.execution_id.to_string().into(),
        i64::from(record.attempt).into(),
        record.app_id.to_string().into(),
        record.script_id.to_string().into(),
        record.source.as_str().into(),
        record.summary.as_str().into(),
        record.outcome.as_str().into(),
        record.status.map(i64::from).into(),
        error.map(|e| e.message.as_str()).into(),
        error.and_then(|e| e.line).map(i64::from).into(),
        error.and_then(|e| e.column).map(i64::from).into(),
        i64::from(record.runs).into(),
        record.started_at.as_millis().into(),
        i64::try_from(record.duration_us).unwrap_or(i64::MAX).into(),
        logs.into(),
    ])
}

#[async_trait]
impl<E: Engine> ExecutionStore for E {
    async fn list_executions(
        &self,
        app_id: AppId,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ExecutionRecord>> {
        let window = Window::new(page)?;
        let rows: Vec<ExecutionRow> = self
            .records()
            .fetch_all(
                sql::LIST_EXECUTIONS,
                &[
                    app_id.to_string().into(),
                    window.before().into(),
                    window.fetch().into(),
                    filter.script_id.map(|id| id.to_string()).into(),
                    filter.outcome.as_deref().into(),
                    filter.source.map(|source| source.as_str()).into(),
                    filter.since.map(|at| at.as_millis()).into(),
                    filter.until.map(|at| at.as_millis()).into(),
                ],
            )
            .await?;
        Ok(window.page(records(rows)?, |record: &ExecutionRecord| {
            record.id.to_string()
        }))
    }

    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Vec<ExecutionRecord>> {
        let (first, last) = RecordId::range_of(id);
        let rows: Vec<ExecutionRow> = self
            .records()
            .fetch_all(
                sql::GET_EXECUTION,
                &[first.to_string().into(), last.to_string().into()],
            )
            .await?;
        records(rows)
    }

    async fn executions_by_id(
        &self,
        app_id: AppId,
        ids: &[RecordId],
    ) -> StoreResult<Vec<ExecutionRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|n| format!("${n}")).collect();
        let text = format!(
            "SELECT {} FROM executions WHERE app_id = $1 AND id IN ({}) ORDER BY id",
            sql::EXECUTION_COLUMNS,
            placeholders.join(", ")
        );
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(ids.len() + 1);
        args.push(app_id.to_string().into());
        args.extend(ids.iter().map(|id| Arg::from(id.to_string())));
        let rows: Vec<ExecutionRow> = self.records().fetch_all(Sql::same(&text), &args).await?;
        records(rows)
    }

    async fn sweep_executions(
        &self,
        older_than_ms: i64,
        keep_per_app: u64,
        limit: u32,
    ) -> StoreResult<u64> {
        if limit == 0 {
            return Ok(0);
        }
        let before = id_bound(
            Timestamp::now()
                .as_millis()
                .saturating_sub(span(older_than_ms)),
        );
        let keep = i64::try_from(keep_per_app).unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        let existing: HashSet<String> = self
            .fetch_all::<(String,)>(sql::APP_IDS, &[])
            .await?
            .into_iter()
            .map(|(id,)| id)
            .collect();
        let recorded: Vec<(String,)> = self
            .records()
            .fetch_all(sql::APPS_WITH_EXECUTIONS, &[])
            .await?;
        let mut deleted = 0;
        for (app_id,) in &recorded {
            let records = self.records();
            if !existing.contains(app_id) {
                deleted += records
                    .write(sql::SWEEP_APP_EXECUTIONS, &[app_id.into(), limit.into()])
                    .await?;
                continue;
            }
            deleted += records
                .write(
                    sql::SWEEP_OLD_EXECUTIONS,
                    &[app_id.into(), before.as_str().into(), limit.into()],
                )
                .await?;
            deleted += records
                .write(
                    sql::SWEEP_EXCESS_EXECUTIONS,
                    &[app_id.into(), keep.into(), limit.into()],
                )
                .await?;
        }
        Ok(deleted)
    }

    fn execution_writer(&self, origin: &str) -> StoreResult<Box<dyn ExecutionWriter>> {
        Engine::execution_writer(self, origin)
    }
}
