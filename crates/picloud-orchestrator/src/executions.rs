//! Execution records (issue #18): what each execution did, for the people of its app. Viewers
//! read them (`AppRead`); someone without access to the app finds none, as if it did not exist.

use std::sync::Arc;

use picloud_core::records::{ExecutionFilter, ExecutionRecord};
use picloud_core::{AppId, Capability, ExecutionId, Principal};
use picloud_store::{Page, PageRequest, Store};

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

    /// Opens a live tail of the app's records from now on (filter them with
    /// [`ExecutionFilter::matches`]).
    pub async fn tail(&self, actor: &Principal, app_id: AppId) -> ServiceResult<Tail> {
        require(actor, Capability::AppRead(app_id))?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
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
        require(actor, Capability::AppRead(app_id))?;
        check_page(page)?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        Ok(self.store.list_executions(app_id, filter, page).await?)
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
