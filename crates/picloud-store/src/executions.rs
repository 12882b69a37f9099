//! [`ExecutionStore`], written once for both backends: execution records (issue #18). They are
//! written by an [`crate::ExecutionWriter`] on the platform's records thread (each backend's,
//! through [`record_executions`] and [`trim_executions`]), read by the admin API and the live
//! tails of other nodes, and swept by age and by count per app, one app's range at a time.
//!
//! They are kept in batches: one row per app and write, its records a JSON array (see the
//! migration `0018_execution_batches`). A row per record cost the records thread an insert and,
//! once the app held its cap, a delete per request: `hello` at 32 connections −10 % on SQLite,
//! −13.7 % on PostgreSQL (bench/RESULTS.md). Reads decode the batches and filter in memory; an
//! app holds at most its cap plus a trim's slack of records, so a read that matches nothing
//! decodes about that many.

use std::borrow::Cow;
use std::collections::HashSet;

use async_trait::async_trait;
use picloud_core::exec::{ExecError, LogLine};
use picloud_core::records::{ExecutionFilter, ExecutionRecord, ExecutionSource};
use picloud_core::{AppId, ExecutionId, RecordId, ScriptId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::commit::CommitTx;
use crate::db::{Arg, Engine, Records, Sql};
use crate::errors::corrupt;
use crate::paging::Window;
use crate::rows::span;
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

/// The most records in one batch row.
const BATCH_RECORDS: usize = 4_096;
/// A batch row is closed once its body holds this many bytes (a record's log is capped, so one
/// record adds at most that cap and its other fields).
const BATCH_BYTES: usize = 1 << 20;
/// How far apart in time (by their ids) the records of one batch may start: an attempt of an
/// old execution, retried now, gets a batch of its own, so each batch's id range stays narrow.
const BATCH_SPAN_MS: u64 = 1_000;
/// Batches per `INSERT` on PostgreSQL (6 parameters each). On SQLite, where a statement costs
/// no round trip, one per statement ([`sql::INSERT_EXECUTION_BATCH`], prepared once).
const BATCHES_PER_INSERT: usize = 512;
/// Batches of the first read while listing; each read after it takes twice as many, up to
/// [`MOST_BATCHES_PER_READ`]: a filter that matches little, in an app of single-record batches
/// (it may hold its cap of them), costs one read per 64 batches rather than per 8, and a read
/// holds at most 64 × [`BATCH_BYTES`] of bodies.
const BATCHES_PER_READ: i64 = 8;
const MOST_BATCHES_PER_READ: i64 = 64;

/// One batch row: the records of one app, written together, oldest first.
struct Batch {
    app_id: AppId,
    first_id: RecordId,
    last_id: RecordId,
    records: i64,
    failures: i64,
    body: String,
}

impl Batch {
    fn args(&self) -> [Arg<'_>; 6] {
        [
            self.app_id.to_string().into(),
            self.last_id.to_string().into(),
            self.first_id.to_string().into(),
            self.records.into(),
            self.failures.into(),
            self.body.as_str().into(),
        ]
    }
}

/// A batch as notices name it: its app, and the id of its newest record.
pub(crate) type BatchKey = (AppId, RecordId);

/// The milliseconds since the Unix epoch in a record id (a UUID v7's first 48 bits).
fn id_millis(id: RecordId) -> u64 {
    let bytes = *id.as_uuid().as_bytes();
    bytes[..6]
        .iter()
        .fold(0, |millis, byte| (millis << 8) | u64::from(*byte))
}

/// `executions` as batch rows: per app, by id, cut at [`BATCH_RECORDS`], [`BATCH_BYTES`] or
/// [`BATCH_SPAN_MS`].
fn batches(executions: &[ExecutionRecord]) -> StoreResult<Vec<Batch>> {
    let mut sorted: Vec<&ExecutionRecord> = executions.iter().collect();
    sorted.sort_by_key(|record| (record.app_id, record.id));
    let mut batches = Vec::new();
    let mut open: Option<(u64, Batch)> = None;
    for record in sorted {
        let json = serde_json::to_string(&Kept::of(record))
            .map_err(|err| StoreError::Internal(format!("an execution record as JSON: {err}")))?;
        let millis = id_millis(record.id);
        let fits = open.as_ref().is_some_and(|(first_millis, batch)| {
            batch.app_id == record.app_id
                && millis.saturating_sub(*first_millis) <= BATCH_SPAN_MS
                && batch.records < BATCH_RECORDS as i64
                && batch.body.len() + json.len() < BATCH_BYTES
        });
        if !fits {
            batches.extend(open.take().map(|(_, batch)| batch));
            open = Some((
                millis,
                Batch {
                    app_id: record.app_id,
                    first_id: record.id,
                    last_id: record.id,
                    records: 0,
                    failures: 0,
                    body: String::from("["),
                },
            ));
        }
        let (_, batch) = open.as_mut().expect("a batch is open");
        if batch.records > 0 {
            batch.body.push(',');
        }
        batch.body.push_str(&json);
        batch.last_id = record.id;
        batch.records += 1;
        batch.failures += i64::from(record.outcome != "ok");
    }
    batches.extend(open.map(|(_, batch)| batch));
    for batch in &mut batches {
        batch.body.push(']');
    }
    Ok(batches)
}

/// A record as its batch keeps it: a JSON array of its fields, without those the batch or the
/// others say already (the app; the id, which is `RecordId::of` the execution and attempt), its
/// start in milliseconds. Half the bytes of the record's own JSON, and a third of its cost to
/// write.
#[derive(Serialize, Deserialize)]
struct Kept<'r>(
    ExecutionId,
    u32,
    ScriptId,
    ExecutionSource,
    Cow<'r, str>,
    i64,
    u64,
    u32,
    Cow<'r, str>,
    Option<u16>,
    Option<Cow<'r, ExecError>>,
    Cow<'r, [LogLine]>,
);

impl<'r> Kept<'r> {
    fn of(record: &'r ExecutionRecord) -> Self {
        Self(
            record.execution_id,
            record.attempt,
            record.script_id,
            record.source,
            Cow::Borrowed(&record.summary),
            record.started_at.as_millis(),
            record.duration_us,
            record.runs,
            Cow::Borrowed(&record.outcome),
            record.status,
            record.error.as_ref().map(Cow::Borrowed),
            Cow::Borrowed(&record.logs),
        )
    }

    fn record(self, app_id: AppId) -> ExecutionRecord {
        let Self(
            execution_id,
            attempt,
            script_id,
            source,
            summary,
            started_at,
            duration_us,
            runs,
            outcome,
            status,
            error,
            logs,
        ) = self;
        ExecutionRecord {
            id: RecordId::of(execution_id, attempt),
            execution_id,
            attempt,
            app_id,
            script_id,
            source,
            summary: summary.into_owned(),
            started_at: Timestamp::from_millis(started_at),
            duration_us,
            runs,
            outcome: outcome.into_owned(),
            status,
            error: error.map(Cow::into_owned),
            logs: logs.into_owned(),
        }
    }
}

/// The records of the batches `rows` (app id, body).
fn unbatch(rows: Vec<(String, String)>) -> StoreResult<Vec<ExecutionRecord>> {
    const TABLE: &str = "execution_batches";
    let mut records = Vec::new();
    for (app_id, body) in rows {
        let app_id = AppId::parse(&app_id).map_err(corrupt(TABLE))?;
        let batch: Vec<Kept<'_>> = serde_json::from_str(&body).map_err(corrupt(TABLE))?;
        records.extend(batch.into_iter().map(|kept| kept.record(app_id)));
    }
    Ok(records)
}

/// `records` by id, each once (a write tried again may have written a record twice).
fn in_id_order(mut records: Vec<ExecutionRecord>) -> Vec<ExecutionRecord> {
    records.sort_by_key(|record| record.id);
    records.dedup_by_key(|record| record.id);
    records
}

/// Writes `executions` in the transaction `tx` belongs to, as batch rows ([`batches`]), on
/// PostgreSQL many per statement (one statement per row cost a round trip each). A batch written
/// already is left out, and on PostgreSQL a batch of an app that is gone. Answers the batches.
pub(crate) async fn record_executions<T: CommitTx>(
    tx: &mut T,
    executions: &[ExecutionRecord],
) -> StoreResult<Vec<BatchKey>> {
    let batches = batches(executions)?;
    if T::BACKEND == Backend::Sqlite {
        for batch in &batches {
            tx.execute(Sql::same(sql::INSERT_EXECUTION_BATCH), &batch.args())
                .await?;
        }
    } else {
        for chunk in batches.chunks(BATCHES_PER_INSERT) {
            let args: Vec<Arg<'_>> = chunk.iter().flat_map(Batch::args).collect();
            tx.execute(Sql::same(&insert_batches(chunk.len())), &args)
                .await?;
        }
    }
    Ok(batches
        .iter()
        .map(|batch| (batch.app_id, batch.last_id))
        .collect())
}

/// [`crate::ExecutionWriter::trim`] in the transaction `tx` belongs to: the records deleted.
pub(crate) async fn trim_executions<T: CommitTx>(
    tx: &mut T,
    app_id: AppId,
    keep: u64,
    limit: u32,
) -> StoreResult<u64> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let deleted: Vec<(i64,)> = tx
        .fetch_all(
            sql::SWEEP_EXCESS_EXECUTIONS,
            &[
                app_id.to_string().into(),
                keep.into(),
                i64::from(limit).into(),
            ],
        )
        .await?;
    Ok(total(&deleted))
}

/// The records the deleted batches `deleted` held.
fn total(deleted: &[(i64,)]) -> u64 {
    deleted
        .iter()
        .map(|(records,)| u64::try_from(*records).unwrap_or(0))
        .sum()
}

/// `WITH batch (…) AS (VALUES ($1, …), …) INSERT …` for `count` batches (see
/// [`sql::INSERT_EXECUTION_BATCHES`]).
fn insert_batches(count: usize) -> String {
    const PARAMETERS: usize = 6;
    let rows: Vec<String> = (0..count)
        .map(|row| {
            let params: Vec<String> = (1..=PARAMETERS)
                .map(|n| format!("${}", row * PARAMETERS + n))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "WITH batch ({}) AS (VALUES {}) {}",
        sql::BATCH_COLUMNS,
        rows.join(", "),
        sql::INSERT_EXECUTION_BATCHES
    )
}

#[async_trait]
impl<E: Engine> ExecutionStore for E {
    /// Reads the app's batches newest first, a few at a time, until the page is certain: a
    /// batch not read yet holds no record newer than the last batch read (batches are in the
    /// order of their newest record), so the records newer than that are final.
    async fn list_executions(
        &self,
        app_id: AppId,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<ExecutionRecord>> {
        let window = Window::new(page)?;
        let want = usize::try_from(window.fetch()).unwrap_or(usize::MAX);
        let before = RecordId::parse(window.before()).ok();
        let wants_failure = filter
            .outcome
            .as_deref()
            .is_some_and(|outcome| outcome != "ok");
        let wants_success = filter.outcome.as_deref() == Some("ok");
        let mut found: Vec<ExecutionRecord> = Vec::new();
        let mut after: Option<String> = None;
        let mut per_read = BATCHES_PER_READ;
        loop {
            let rows: Vec<(String, String)> = self
                .records()
                .fetch_all(
                    sql::LIST_EXECUTION_BATCHES,
                    &[
                        app_id.to_string().into(),
                        window.before().into(),
                        after.as_deref().into(),
                        per_read.into(),
                        wants_failure.into(),
                        wants_success.into(),
                    ],
                )
                .await?;
            let exhausted = i64::try_from(rows.len()).unwrap_or(i64::MAX) < per_read;
            per_read = (per_read * 2).min(MOST_BATCHES_PER_READ);
            let mut bodies = Vec::with_capacity(rows.len());
            for (last_id, body) in rows {
                after = Some(last_id);
                bodies.push((app_id.to_string(), body));
            }
            found.extend(unbatch(bodies)?.into_iter().filter(|record| {
                before.is_none_or(|before| record.id < before) && filter.matches(record)
            }));
            // Newest first, each once; more than a page can never be needed.
            found = in_id_order(found);
            found.reverse();
            found.truncate(want);
            let frontier = after.as_deref().and_then(|id| RecordId::parse(id).ok());
            let certain = found
                .iter()
                .filter(|record| frontier.is_none_or(|frontier| record.id > frontier))
                .count();
            if exhausted || certain >= want {
                break;
            }
        }
        Ok(window.page(found, |record: &ExecutionRecord| record.id.to_string()))
    }

    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Vec<ExecutionRecord>> {
        let (first, last) = RecordId::range_of(id);
        let rows: Vec<(String, String)> = self
            .records()
            .fetch_all(
                sql::FIND_EXECUTION_BATCHES,
                &[first.to_string().into(), last.to_string().into()],
            )
            .await?;
        let mut records = in_id_order(unbatch(rows)?);
        records.retain(|record| record.execution_id == id);
        Ok(records)
    }

    async fn executions_in_batches(
        &self,
        app_id: AppId,
        batches: &[RecordId],
    ) -> StoreResult<Vec<ExecutionRecord>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..batches.len() + 2).map(|n| format!("${n}")).collect();
        let text = format!(
            "{} ({})",
            sql::APP_EXECUTION_BATCHES,
            placeholders.join(", ")
        );
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(batches.len() + 1);
        args.push(app_id.to_string().into());
        args.extend(batches.iter().map(|id| Arg::from(id.to_string())));
        let rows: Vec<(String, String)> = self.records().fetch_all(Sql::same(&text), &args).await?;
        Ok(in_id_order(unbatch(rows)?))
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
                let gone: Vec<(i64,)> = records
                    .fetch_all(sql::SWEEP_APP_EXECUTIONS, &[app_id.into(), limit.into()])
                    .await?;
                deleted += total(&gone);
                continue;
            }
            let old: Vec<(i64,)> = records
                .fetch_all(
                    sql::SWEEP_OLD_EXECUTIONS,
                    &[app_id.into(), before.as_str().into(), limit.into()],
                )
                .await?;
            let excess: Vec<(i64,)> = records
                .fetch_all(
                    sql::SWEEP_EXCESS_EXECUTIONS,
                    &[app_id.into(), keep.into(), limit.into()],
                )
                .await?;
            deleted += total(&old) + total(&excess);
        }
        Ok(deleted)
    }

    fn execution_writer(&self, origin: &str) -> StoreResult<Box<dyn ExecutionWriter>> {
        Engine::execution_writer(self, origin)
    }
}
