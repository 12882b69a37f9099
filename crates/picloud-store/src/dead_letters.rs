//! [`DeadLetterStore`], written once for both backends.

use async_trait::async_trait;
use picloud_core::services::WriteOrigin;
use picloud_core::tx::{DeadLetterAction, Effects};
use picloud_core::{AppId, DeadLetter, DeadLetterId, ExecutionId};

use crate::db::{Engine, Sql};
use crate::errors::dead_letter_closed;
use crate::paging::Window;
use crate::rows::{count, one, records, resolved_filter, span, AbandonedRow, DeadLetterRow};
use crate::{
    sql, AbandonedExecution, DeadLetterFilter, DeadLetterStore, Page, PageRequest, RunCommit,
    RunVerdict, StoreError, StoreResult,
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

/// Replays or resolves a dead letter: a run of this one action ([`crate::KvStore::commit_run`]),
/// so that it takes its locks and counts its job as a script's does.
async fn close<E: Engine>(store: &E, action: DeadLetterAction) -> StoreResult<DeadLetter> {
    let (DeadLetterAction::Replay { id, .. } | DeadLetterAction::Resolve { id }) = action;
    let dead_letter = store
        .get_dead_letter(id)
        .await?
        .ok_or(StoreError::NotFound("dead letter"))?;
    let run = RunCommit {
        origin: WriteOrigin {
            app_id: dead_letter.app_id,
            trigger_depth: 0,
            trigger_jobs_left: 0,
        },
        effects: Effects {
            dead_letters: vec![action],
            ..Effects::default()
        },
        finishes: None,
    };
    let verdict = store.commit(run).await?;
    let now = store
        .get_dead_letter(id)
        .await?
        .ok_or(StoreError::NotFound("dead letter"))?;
    match verdict {
        RunVerdict::Committed { .. } => Ok(now),
        // Closed meanwhile (or before: a closed dead letter never opens again).
        RunVerdict::Conflict => Err(dead_letter_closed(&now)),
        RunVerdict::Refused(over) => Err(StoreError::OverLimit(over)),
        RunVerdict::AppGone | RunVerdict::Fenced => Err(StoreError::NotFound("dead letter")),
    }
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

    async fn count_unresolved_dead_letters_by_app(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = self
            .fetch_all(sql::COUNT_UNRESOLVED_DEAD_LETTERS_BY_APP, &[])
            .await?;
        rows.into_iter()
            .map(|(slug, unresolved)| Ok((slug, count(unresolved)?)))
            .collect()
    }

    async fn replay_dead_letter(
        &self,
        id: DeadLetterId,
        execution_id: ExecutionId,
    ) -> StoreResult<DeadLetter> {
        close(self, DeadLetterAction::Replay { id, execution_id }).await
    }

    async fn resolve_dead_letter(&self, id: DeadLetterId) -> StoreResult<DeadLetter> {
        close(self, DeadLetterAction::Resolve { id }).await
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
