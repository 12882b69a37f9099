//! The outbox's statements that take many rows: jobs as the inserts bind them ([`JobValues`]),
//! the multi-row insert ([`insert_jobs`], then [`crate::sql::INSERT_FROM_JOB`]; every insert of
//! jobs, the SQLite committer's row-by-row one included, fills the columns of
//! `sql::insert_into_outbox!`), the fence of a write to many attempts ([`push_attempts`]), and
//! the counts of queued jobs they keep ([`JobCounts`]).

use std::collections::BTreeMap;

use picloud_core::firing::Firing;
use picloud_core::{AppId, ExecutionId, JobPayload};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::db::{Arg, DbResult, WriteTx};
use crate::rows::{payload_text, records, JobRow};
use crate::sql::{self, job_value_columns};
use crate::{ClaimedJob, JobAttempt, NewJob, StoreResult};

/// A [`NewJob`] as the outbox insert binds it.
#[derive(Debug)]
pub struct JobValues {
    pub(crate) id: String,
    pub(crate) app_id: String,
    pub(crate) script_id: String,
    pub(crate) source_kind: String,
    pub(crate) payload: String,
    pub(crate) trigger_depth: i64,
}

impl JobValues {
    pub fn new(job: &NewJob) -> StoreResult<Self> {
        Ok(Self {
            id: job.id.to_string(),
            app_id: job.app_id.to_string(),
            script_id: job.script_id.to_string(),
            source_kind: job.payload.source().to_owned(),
            payload: payload_text(&job.payload)?,
            trigger_depth: i64::from(job.trigger_depth),
        })
    }

    pub fn all(jobs: &[NewJob]) -> StoreResult<Vec<Self>> {
        jobs.iter().map(Self::new).collect()
    }
}

/// Jobs per insert statement: 6 parameters a row keeps a statement well below SQLite's 32,766
/// and PostgreSQL's 65,535 parameters.
pub(crate) const JOBS_PER_INSERT: usize = 500;

/// Puts `jobs` into the outbox, in the caller's transaction, [`JOBS_PER_INSERT`] at a time.
pub(crate) async fn enqueue<T: WriteTx>(tx: &mut T, jobs: &[JobValues]) -> DbResult<()> {
    for chunk in jobs.chunks(JOBS_PER_INSERT) {
        tx.insert_jobs(chunk).await?;
    }
    Ok(())
}

/// `WITH job (…) AS (VALUES (…), …) ` followed by `insert_from_job`, the backend's
/// [`sql::INSERT_FROM_JOB`]. At most [`JOBS_PER_INSERT`] jobs, at least one.
pub(crate) fn insert_jobs<'a, DB>(
    jobs: &'a [JobValues],
    insert_from_job: &str,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    debug_assert!(!jobs.is_empty() && jobs.len() <= JOBS_PER_INSERT);
    let mut query = QueryBuilder::new(concat!("WITH job (", job_value_columns!(), ") AS ("));
    query.push_values(jobs, |mut row, job| {
        row.push_bind(job.id.as_str())
            .push_bind(job.app_id.as_str())
            .push_bind(job.script_id.as_str())
            .push_bind(job.source_kind.as_str())
            .push_bind(job.payload.as_str())
            .push_bind(job.trigger_depth);
    });
    query.push(") ").push(insert_from_job);
    query
}

/// Appends `(id, attempt) IN (VALUES (…), …)`: the fence of a write to these attempts.
/// `attempts` must not be empty.
pub(crate) fn push_attempts<'a, DB>(query: &mut QueryBuilder<'a, DB>, attempts: &[JobAttempt])
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    query.push("(id, attempt) IN (");
    query.push_values(attempts, |mut row, attempt| {
        row.push_bind(attempt.id.to_string())
            .push_bind(i64::from(attempt.attempt));
    });
    query.push(")");
}

/// Attempts per fenced statement (2 parameters each).
pub(crate) const ATTEMPTS_PER_STATEMENT: usize = 1_000;

/// The job a trigger enqueues: async, pending, due now.
pub(crate) fn triggered_job(app_id: AppId, firing: Firing) -> NewJob {
    NewJob {
        id: ExecutionId::new(),
        app_id,
        script_id: firing.script_id,
        payload: JobPayload::Trigger {
            event: firing.event,
        },
        trigger_depth: firing.trigger_depth,
    }
}

/// Applies `counts` to `app_job_counts` ([`sql::COUNT_JOBS`]) in the caller's transaction, app
/// by app in their order (see [`JobCounts`]).
pub(crate) async fn count_jobs<T: WriteTx>(tx: &mut T, counts: &JobCounts) -> DbResult<()> {
    for (app_id, recorded, removed) in counts.by_app() {
        let args: [Arg<'_>; 3] = [app_id.into(), recorded.into(), removed.into()];
        tx.execute(sql::COUNT_JOBS, &args).await?;
    }
    Ok(())
}

/// Changes to `app_job_counts` made in one transaction, per app: jobs recorded and removed. Applied last and in app order ([`JobCounts::by_app`]), so that transactions that
/// count jobs of several apps (two nodes' group commits) take the rows' locks in one order and
/// never deadlock.
#[derive(Debug, Default)]
pub(crate) struct JobCounts(BTreeMap<String, (i64, i64)>);

impl JobCounts {
    /// Counts `jobs` as recorded.
    pub fn recorded(&mut self, jobs: &[JobValues]) {
        for job in jobs {
            self.0.entry(job.app_id.clone()).or_default().0 += 1;
        }
    }

    /// The count of one job removed, as [`sql::DELETE_JOB`] returned it.
    pub fn removing(job: &JobRow) -> Self {
        let mut counts = Self::default();
        counts.removed(&job.app_id);
        counts
    }

    /// Counts a job of the app `app_id` removed from the outbox.
    pub fn removed(&mut self, app_id: &str) {
        self.0.entry(app_id.to_owned()).or_default().1 += 1;
    }

    /// `(app id, recorded, removed)`, in app order.
    pub fn by_app(&self) -> impl Iterator<Item = (&str, i64, i64)> {
        self.0
            .iter()
            .map(|(app_id, (recorded, removed))| (app_id.as_str(), *recorded, *removed))
    }
}

/// Claimed jobs, oldest due first (a database returns updated rows in no particular order).
pub(crate) fn claimed(mut rows: Vec<JobRow>) -> StoreResult<Vec<ClaimedJob>> {
    rows.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    records(rows)
}

/// The jobs a claimer runs now, per app, as the JSON object `{"<app id>": <jobs>}` that
/// [`fair_due_jobs`] reads.
pub(crate) fn running_jobs(running: &[(AppId, u32)]) -> String {
    let pairs: serde_json::Map<String, serde_json::Value> = running
        .iter()
        .map(|(app, jobs)| (app.to_string(), (*jobs).into()))
        .collect();
    serde_json::Value::Object(pairs).to_string()
}
