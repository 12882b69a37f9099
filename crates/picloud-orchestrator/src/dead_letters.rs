//! Dead letters: list (by status and script), replay (one, or the unresolved ones in bulk),
//! resolve. Listing needs `AppRead`;
//! replaying and resolving need `AppDeadLetterManage`. A replay enqueues the job again (a new
//! execution id, durably) and wakes the dispatcher.

use std::sync::Arc;

use picloud_core::{AppId, Capability, DeadLetter, DeadLetterId, ExecutionId, Principal, ScriptId};
use picloud_store::{DeadLetterFilter, DeadLetterStatus, Page, PageRequest, Store, StoreError};
use tokio::sync::Notify;

use crate::auth::{require, require_on};
use crate::error::{ServiceError, ServiceResult};
use crate::page::check_page;

/// A replayed dead letter and the execution that runs it again.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub dead_letter: DeadLetter,
    pub execution_id: ExecutionId,
}

#[derive(Clone)]
pub struct DeadLetterService {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
}

impl DeadLetterService {
    pub(crate) fn new(store: Arc<dyn Store>, wake: Arc<Notify>) -> Self {
        Self { store, wake }
    }

    /// Newest first.
    pub async fn list(
        &self,
        actor: &Principal,
        app_id: AppId,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> ServiceResult<Page<DeadLetter>> {
        require(actor, Capability::AppRead(app_id))?;
        check_page(page)?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        Ok(self.store.list_dead_letters(app_id, filter, page).await?)
    }

    /// How many dead letters of the app wait for attention.
    pub async fn count_unresolved(&self, actor: &Principal, app_id: AppId) -> ServiceResult<u64> {
        require(actor, Capability::AppRead(app_id))?;
        Ok(self.store.count_unresolved_dead_letters(app_id).await?)
    }

    #[tracing::instrument(skip_all, fields(dead_letter_id = %id))]
    pub async fn replay(&self, actor: &Principal, id: DeadLetterId) -> ServiceResult<Replayed> {
        self.authorize(actor, id).await?;
        let execution_id = ExecutionId::new();
        let dead_letter = self
            .store
            .replay_dead_letter(id, execution_id)
            .await
            .map_err(|err| gone(err, id))?;
        self.wake.notify_one();
        tracing::info!(%execution_id, "dead letter replayed");
        Ok(Replayed {
            dead_letter,
            execution_id,
        })
    }

    #[tracing::instrument(skip_all, fields(dead_letter_id = %id))]
    pub async fn resolve(&self, actor: &Principal, id: DeadLetterId) -> ServiceResult<DeadLetter> {
        self.authorize(actor, id).await?;
        let dead_letter = self
            .store
            .resolve_dead_letter(id)
            .await
            .map_err(|err| gone(err, id))?;
        tracing::info!("dead letter resolved");
        Ok(dead_letter)
    }

    /// Replays the app's unresolved dead letters — only `script_id`'s when given — newest first,
    /// at most `limit` of them (1 to [`PageRequest::MAX_LIMIT`]): the dashboard's bulk replay. One
    /// that was replayed or resolved meanwhile is skipped.
    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn replay_unresolved(
        &self,
        actor: &Principal,
        app_id: AppId,
        script_id: Option<ScriptId>,
        limit: u32,
    ) -> ServiceResult<Vec<Replayed>> {
        require(actor, Capability::AppDeadLetterManage(app_id))?;
        let filter = DeadLetterFilter {
            status: DeadLetterStatus::Unresolved,
            script_id,
        };
        let page = PageRequest {
            limit,
            cursor: None,
        };
        let letters = self.list(actor, app_id, &filter, &page).await?;
        let mut replayed = Vec::with_capacity(letters.items.len());
        for letter in letters.items {
            match self.replay(actor, letter.id).await {
                Ok(one) => replayed.push(one),
                Err(ServiceError::NotFound(_) | ServiceError::Conflict(_)) => {}
                Err(other) => return Err(other),
            }
        }
        tracing::info!(count = replayed.len(), "dead letters replayed");
        Ok(replayed)
    }

    async fn authorize(&self, actor: &Principal, id: DeadLetterId) -> ServiceResult<()> {
        let dead_letter = self
            .store
            .get_dead_letter(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("dead letter", id))?;
        require_on(
            actor,
            Capability::AppDeadLetterManage(dead_letter.app_id),
            "dead letter",
            id,
        )
    }
}

fn gone(err: StoreError, id: DeadLetterId) -> ServiceError {
    match err {
        StoreError::NotFound(_) => ServiceError::not_found("dead letter", id),
        other => other.into(),
    }
}
