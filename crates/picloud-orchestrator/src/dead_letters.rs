//! Dead letters: list (by status and script), replay, resolve. Listing needs `AppRead`;
//! replaying and resolving need `AppDeadLetterManage`. A replay enqueues the job again (a new
//! execution id, durably) and wakes the dispatcher.

use std::sync::Arc;

use picloud_core::{AppId, Capability, DeadLetter, DeadLetterId, ExecutionId, Principal};
use picloud_store::{DeadLetterFilter, Page, PageRequest, Store, StoreError};
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
