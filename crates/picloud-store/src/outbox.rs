//! [`OutboxStore`]: the completions (retry, dead letter, abandon, release) written once for both
//! backends; the commits, the claim and the lease extension through each backend's hooks — the
//! measured hot paths (see `bench/RESULTS.md`), shaped for each database.

use async_trait::async_trait;
use picloud_core::firing::dead_letter_firings;
use picloud_core::{AppId, DeadLetter, DeadLetterId, ExecutionId, ScriptId};

use crate::db::{Engine, WriteTx};
use crate::errors::corrupt;
use crate::jobs::{count_jobs, enqueue, triggered_job, JobCounts, JobValues};
use crate::rows::{count, json_value, one, span, DeadLetterRow, JobRow};
use crate::{
    sql, ClaimedJob, JobAttempt, OutboxBatch, OutboxCommitter, OutboxDepth, OutboxLag, OutboxStore,
    RunVerdict, StoreResult,
};

/// Deletes the attempt's row in `tx` (fenced: `None` when the row has moved on), returning it.
async fn take_job<T: WriteTx>(tx: &mut T, job: JobAttempt) -> StoreResult<Option<JobRow>> {
    Ok(tx
        .fetch_optional(
            sql::DELETE_JOB,
            &[job.id.to_string().into(), i64::from(job.attempt).into()],
        )
        .await?)
}

#[async_trait]
impl<E: Engine> OutboxStore for E {
    async fn commit_outbox(&self, batch: &OutboxBatch) -> StoreResult<Vec<RunVerdict>> {
        self.write_outbox(batch).await
    }

    fn outbox_committer(&self) -> StoreResult<Box<dyn OutboxCommitter>> {
        self.committer()
    }

    async fn claim_jobs(
        &self,
        owner: &str,
        limit: u32,
        per_app: u32,
        running: &[(AppId, u32)],
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.claim(owner, limit, per_app, running, lease_ms).await
    }

    async fn extend_leases(
        &self,
        owner: &str,
        jobs: &[JobAttempt],
        serving: &[ExecutionId],
        lease_ms: i64,
    ) -> StoreResult<u64> {
        if jobs.is_empty() && serving.is_empty() {
            return Ok(0);
        }
        self.extend(owner, jobs, serving, lease_ms).await
    }

    async fn retry_job(&self, job: JobAttempt, delay_ms: i64, error: &str) -> StoreResult<bool> {
        let retried = self
            .write(
                sql::RETRY_JOB,
                &[
                    job.id.to_string().into(),
                    i64::from(job.attempt).into(),
                    span(delay_ms).into(),
                    error.into(),
                ],
            )
            .await?;
        Ok(retried > 0)
    }

    async fn dead_letter_job(
        &self,
        job: JobAttempt,
        error: &str,
    ) -> StoreResult<Option<DeadLetter>> {
        let mut tx = self.begin_write().await?;
        let Some(failed) = take_job(&mut tx, job).await? else {
            return Ok(None);
        };
        let row: Option<DeadLetterRow> = tx
            .fetch_optional(
                sql::INSERT_DEAD_LETTER,
                &[
                    DeadLetterId::new().to_string().into(),
                    (&failed.app_id).into(),
                    (&failed.script_id).into(),
                    (&failed.id).into(),
                    (&failed.source_kind).into(),
                    (&failed.mode).into(),
                    (&failed.payload).into(),
                    error.into(),
                    failed.attempt.into(),
                    failed.trigger_depth.into(),
                ],
            )
            .await?;
        let dead_letter = DeadLetter::try_from(one(row)?)?;
        let scripts: Vec<(String,)> = tx
            .fetch_all(sql::DEAD_LETTER_TRIGGER_SCRIPTS, &[(&failed.app_id).into()])
            .await?;
        let scripts = scripts
            .iter()
            .map(|(id,)| ScriptId::parse(id).map_err(corrupt("triggers")))
            .collect::<StoreResult<Vec<_>>>()?;
        let payload = json_value("outbox", &failed.payload)?;
        let jobs: Vec<_> = dead_letter_firings(&dead_letter, &payload, &scripts)
            .into_iter()
            .map(|firing| triggered_job(dead_letter.app_id, firing))
            .collect();
        let jobs = JobValues::all(&jobs)?;
        enqueue(&mut tx, &jobs).await?;
        let mut counts = JobCounts::default();
        counts.removed(&failed.app_id);
        counts.recorded(&jobs);
        count_jobs(&mut tx, &counts).await?;
        tx.commit().await?;
        Ok(Some(dead_letter))
    }

    async fn fail_dead_letter_handler(
        &self,
        job: JobAttempt,
        dead_letter: DeadLetterId,
        error: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(handler) = take_job(&mut tx, job).await? else {
            return Ok(false);
        };
        tx.execute(
            sql::DEAD_LETTER_HANDLER_FAILED,
            &[dead_letter.to_string().into(), error.into()],
        )
        .await?;
        count_jobs(&mut tx, &JobCounts::removing(&handler)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn abandon_sync(
        &self,
        id: ExecutionId,
        app_id: AppId,
        script_id: ScriptId,
        reason: &str,
    ) -> StoreResult<bool> {
        let id = id.to_string();
        let mut tx = self.begin_write().await?;
        tx.execute(sql::DELETE_SYNC_REQUEST, &[id.as_str().into()])
            .await?;
        let recorded = tx
            .execute(
                sql::INSERT_ABANDONED,
                &[
                    id.into(),
                    app_id.to_string().into(),
                    script_id.to_string().into(),
                    reason.into(),
                ],
            )
            .await?;
        tx.commit().await?;
        Ok(recorded == 1)
    }

    async fn sweep_sync_requests(&self, rotate_after_ms: i64) -> StoreResult<u64> {
        self.sweep_sync(rotate_after_ms).await
    }

    async fn release_jobs(&self, owner: &str) -> StoreResult<u64> {
        Ok(self.write(sql::RELEASE_JOBS, &[owner.into()]).await?)
    }

    async fn outbox_depth(&self) -> StoreResult<OutboxDepth> {
        let (pending, running): (i64, i64) =
            one(self.fetch_optional(sql::OUTBOX_DEPTH, &[]).await?)?;
        Ok(OutboxDepth {
            pending: count(pending)?,
            running: count(running)?,
        })
    }

    async fn outbox_lag(&self) -> StoreResult<OutboxLag> {
        let (due, oldest_due_ms): (i64, i64) =
            one(self.fetch_optional(sql::OUTBOX_LAG, &[]).await?)?;
        Ok(OutboxLag {
            due: count(due)?,
            // A job that fell due within the clock's jitter between the two reads of it.
            oldest_due_ms: u64::try_from(oldest_due_ms).unwrap_or(0),
        })
    }
}
