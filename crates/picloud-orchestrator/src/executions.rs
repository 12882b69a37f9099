//! Execution records (issue #18): what each execution did, for the people of its app, and the
//! sync executions whose callers had gone. Viewers read them (`AppRead`); someone without access
//! to the app finds none, as if it did not exist.

use std::sync::Arc;

use picloud_core::records::{ExecutionFilter, ExecutionRecord};
use picloud_core::{AppId, Capability, ExecutionId, Principal};
use picloud_store::{AbandonedExecution, Page, PageRequest, Store};

use crate::auth::{require, require_on};
use crate::error::{ServiceError, ServiceResult};
use crate::page::check_page;
use crate::tail::{LogTail, Refused, Tail, MAX_TAILS_PER_APP};

#[derive(Clone)]
pub struct ExecutionService {
    store: Arc<dyn Store>,
    tail: Arc<LogTail>,
}

impl ExecutionService {
    pub(crate) fn new(store: Arc<dyn Store>, tail: Arc<LogTail>) -> Self {
        Self { store, tail }
    }

    /// Whether `actor` may read `app_id`'s executions, and the app exists.
    async fn readable(&self, actor: &Principal, app_id: AppId) -> ServiceResult<()> {
        require(actor, Capability::AppRead(app_id))?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        Ok(())
    }

    /// Opens a live tail of the app's records from now on (filter them with
    /// [`ExecutionFilter::matches`]).
    pub async fn tail(&self, actor: &Principal, app_id: AppId) -> ServiceResult<Tail> {
        self.readable(actor, app_id).await?;
        self.tail
            .subscribe(app_id)
            .map_err(|refused| match refused {
                Refused::TooMany => ServiceError::OverQuota(format!(
                    "the app has {MAX_TAILS_PER_APP} live tails open already; close one first"
                )),
                Refused::Closed => ServiceError::Unavailable("the server is shutting down".into()),
            })
    }

    /// Ends every live tail: see [`LogTail::close`].
    pub fn close_tails(&self) {
        self.tail.close();
    }

    /// The app's records matching `filter`, newest first.
    pub async fn list(
        &self,
        actor: &Principal,
        app_id: AppId,
        filter: &ExecutionFilter,
        page: &PageRequest,
    ) -> ServiceResult<Page<ExecutionRecord>> {
        self.readable(actor, app_id).await?;
        check_page(page)?;
        Ok(self.store.list_executions(app_id, filter, page).await?)
    }

    /// The app's sync executions whose callers had gone (timed out or disconnected, or their
    /// node died), newest first; kept `abandoned_execution_days`.
    pub async fn abandoned(
        &self,
        actor: &Principal,
        app_id: AppId,
        page: &PageRequest,
    ) -> ServiceResult<Page<AbandonedExecution>> {
        self.readable(actor, app_id).await?;
        check_page(page)?;
        Ok(self.store.list_abandoned_executions(app_id, page).await?)
    }

    /// Every recorded attempt of the execution `id`, first attempt first.
    pub async fn get(
        &self,
        actor: &Principal,
        id: ExecutionId,
    ) -> ServiceResult<Vec<ExecutionRecord>> {
        let records = self.store.get_execution(id).await?;
        let app_id = records
            .first()
            .map(|record| record.app_id)
            .ok_or_else(|| ServiceError::not_found("execution", id))?;
        require_on(actor, Capability::AppRead(app_id), "execution", id)?;
        Ok(records)
    }
}
