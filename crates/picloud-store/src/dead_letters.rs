//! [`DeadLetterStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::{AppId, DeadLetter, DeadLetterId, ExecutionId, Resolution};

use crate::db::{Engine, Sql, WriteTx};
use crate::errors::dead_letter_closed;
use crate::jobs::count_write;
use crate::paging::Window;
use crate::rows::{
    count, one, records, resolved_filter, span, AbandonedRow, DeadLetterRow, UsageRow,
};
use crate::{
    sql, AbandonedExecution, AppUsage, DeadLetterFilter, DeadLetterStore, Page, PageRequest,
    StoreError, StoreResult,
};

/// Deletes up to `limit` rows older than `older_than_ms` with `sweep` (a sweep statement).
async fn sweep<E: Engine>(
    store: &E,
    sweep: Sql<'static>,
    older_than_ms: i64,
    limit: u32,
) -> StoreResult<u64> {
    if limit == 0 {
        return Ok(0);
    }
    Ok(store
        .write(
            sweep,
            &[span(older_than_ms).into(), i64::from(limit).into()],
        )
        .await?)
}

#[async_trait]
impl<E: Engine> DeadLetterStore for E {
    async fn get_dead_letter(&self, id: DeadLetterId) -> StoreResult<Option<DeadLetter>> {
        let row: Option<DeadLetterRow> = self
            .fetch_optional(sql::GET_DEAD_LETTER, &[id.to_string().into()])
            .await?;
        row.map(DeadLetter::try_from).transpose()
    }

    async fn list_dead_letters(
        &self,
        app_id: AppId,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<DeadLetter>> {
        let window = Window::new(page)?;
        let rows: Vec<DeadLetterRow> = self
            .fetch_all(
                sql::LIST_DEAD_LETTERS,
                &[
                    app_id.to_string().into(),
                    window.before().into(),
                    window.fetch().into(),
                    filter.script_id.map(|id| id.to_string()).into(),
                    resolved_filter(filter.status).into(),
                ],
            )
            .await?;
        Ok(window.page(records(rows)?, |dead_letter: &DeadLetter| {
            dead_letter.id.to_string()
        }))
    }

    async fn count_unresolved_dead_letters(&self, app_id: AppId) -> StoreResult<u64> {
        let (unresolved,): (i64,) = one(self
            .fetch_optional(
                sql::COUNT_UNRESOLVED_DEAD_LETTERS,
                &[app_id.to_string().into()],
            )
            .await?)?;
        count(unresolved)
    }

    async fn replay_dead_letter(
        &self,
        id: DeadLetterId,
        execution_id: ExecutionId,
    ) -> StoreResult<DeadLetter> {
        let id = id.to_string();
        let mut tx = self.begin_write().await?;
        let row: Option<DeadLetterRow> = tx
            .fetch_optional(sql::LOCK_DEAD_LETTER, &[(&id).into()])
            .await?;
        let dead_letter = DeadLetter::try_from(row.ok_or(StoreError::NotFound("dead letter"))?)?;
        if dead_letter.resolution.is_some() {
            return Err(dead_letter_closed(&dead_letter));
        }
        tx.execute(
            sql::REPLAY_DEAD_LETTER,
            &[(&id).into(), execution_id.to_string().into()],
        )
        .await?;
        let row: Option<DeadLetterRow> = tx
            .fetch_optional(
                sql::CLOSE_DEAD_LETTER,
                &[(&id).into(), Resolution::Replayed.as_str().into()],
            )
            .await?;
        // Last, like every count: on PostgreSQL the lock on the app's usage is held only
        // through the commit.
        let usage: Option<UsageRow> = tx
            .fetch_optional(
                sql::LOCK_APP_USAGE,
                &[dead_letter.app_id.to_string().into()],
            )
            .await?;
        AppUsage::from(usage.ok_or(StoreError::NotFound("app"))?)
            .admit(0, 1, self.app_quotas())
            .map_err(StoreError::OverLimit)?;
        count_write(&mut tx, dead_letter.app_id, 0, 1).await?;
        tx.commit().await?;
        one(row)?.try_into()
    }

    async fn resolve_dead_letter(&self, id: DeadLetterId) -> StoreResult<DeadLetter> {
        let row: Option<DeadLetterRow> = self
            .write_optional(
                sql::CLOSE_DEAD_LETTER,
                &[id.to_string().into(), Resolution::Resolved.as_str().into()],
            )
            .await?;
        if let Some(row) = row {
            return row.try_into();
        }
        // Closed already (or never there): a closed dead letter never opens again.
        let closed = self
            .get_dead_letter(id)
            .await?
            .ok_or(StoreError::NotFound("dead letter"))?;
        Err(dead_letter_closed(&closed))
    }

    async fn sweep_dead_letters(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        sweep(self, sql::SWEEP_DEAD_LETTERS, older_than_ms, limit).await
    }

    async fn sweep_abandoned_executions(&self, older_than_ms: i64, limit: u32) -> StoreResult<u64> {
        sweep(self, sql::SWEEP_ABANDONED_EXECUTIONS, older_than_ms, limit).await
    }

    async fn list_abandoned_executions(
        &self,
        app_id: AppId,
        page: &PageRequest,
    ) -> StoreResult<Page<AbandonedExecution>> {
        let window = Window::new(page)?;
        let rows: Vec<AbandonedRow> = self
            .fetch_all(
                sql::LIST_ABANDONED_EXECUTIONS,
                &[
                    app_id.to_string().into(),
                    window.before().into(),
                    window.fetch().into(),
                ],
            )
            .await?;
        Ok(
            window.page(records(rows)?, |abandoned: &AbandonedExecution| {
                abandoned.execution_id.to_string()
            }),
        )
    }
}
