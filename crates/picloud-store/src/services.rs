//! [`StoreServices`]: what scripts read ([`ScriptServices`]) — KV, documents, dead letters —
//! over a [`Store`]. Their writes do
//! not come through here: they are a run's effects, committed by the orchestrator
//! ([`crate::KvStore::commit_run`]).
//!
//! Every call acts for the app of the running execution, which the executor passes in; a script
//! never names an app, and another app's dead letter is as unknown to it as a missing one. A
//! failure comes back as a sentence the script's author can act on; what the database said stays
//! in the log.

use std::sync::Arc;

use async_trait::async_trait;
use picloud_core::docs::{Query, StoredDoc};
use picloud_core::exec::ScriptRef;
use picloud_core::services::{Found, KvListRequest, ServiceResult};
use picloud_core::tx::{Version, VersionedPage};
use picloud_core::{
    AppId, CollectionName, DeadLetterId, DocumentId, KvKey, ModuleSource, ScriptServices,
    ServiceCallError, ServiceErrorKind,
};

use crate::errors::dead_letter_closed;
use crate::{Store, StoreError};

/// The app's KV store, documents and dead letters, as scripts read them.
pub struct StoreServices {
    store: Arc<dyn Store>,
    /// The most bytes one page or find brings in: what an execution may hold.
    read_max_bytes: usize,
}

impl StoreServices {
    /// Services whose pages and finds bring at most `read_max_bytes` each (an execution's
    /// memory budget, `Limits::max_memory_bytes`).
    pub fn new(store: Arc<dyn Store>, read_max_bytes: usize) -> Self {
        Self {
            store,
            read_max_bytes,
        }
    }
}

impl std::fmt::Debug for StoreServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreServices")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

/// The same answer for a dead letter that does not exist and for one of another app.
fn no_dead_letter(id: DeadLetterId) -> ServiceCallError {
    ServiceCallError::new(
        ServiceErrorKind::NotFound,
        format!("no dead letter with id {id} in this app"),
    )
}

/// A store error as a script sees it. Causes of `Unavailable` and `Internal` are logged here
/// and never shown: they may hold SQL or connection details.
fn service_error(err: StoreError) -> ServiceCallError {
    match err {
        StoreError::InvalidInput(message) => {
            ServiceCallError::new(ServiceErrorKind::Invalid, message)
        }
        StoreError::NotFound(what) => ServiceCallError::new(
            ServiceErrorKind::NotFound,
            format!("the {what} was not found"),
        ),
        StoreError::Conflict(message) => ServiceCallError::new(ServiceErrorKind::Conflict, message),
        StoreError::OverLimit(over) => {
            ServiceCallError::new(ServiceErrorKind::QuotaExceeded, over.to_string())
        }
        StoreError::ReadTooLarge(_) => {
            ServiceCallError::new(ServiceErrorKind::TooLarge, err.to_string())
        }
        StoreError::Unavailable(cause) => {
            tracing::warn!("a data service call found the database unavailable: {cause}");
            ServiceCallError::new(
                ServiceErrorKind::Unavailable,
                "the database is unavailable right now; try again in a moment",
            )
        }
        // There is no kind for a bug; "unavailable" at least tells the script it was not its
        // input.
        StoreError::Internal(cause) => {
            tracing::error!("a data service call failed: {cause}");
            ServiceCallError::new(
                ServiceErrorKind::Unavailable,
                "the data service failed unexpectedly; the error was logged for the operator",
            )
        }
    }
}

#[async_trait]
impl ModuleSource for StoreServices {
    async fn lookup(&self, app_id: AppId, name: &str) -> ServiceResult<Option<ScriptRef>> {
        let module = self
            .store
            .get_module(app_id, name)
            .await
            .map_err(service_error)?;
        Ok(module.map(|script| ScriptRef {
            id: script.id,
            name: script.name.to_string(),
            updated_at: script.updated_at,
            source: script.source.into(),
        }))
    }
}

#[async_trait]
impl ScriptServices for StoreServices {
    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<(serde_json::Value, Version)>> {
        self.store
            .kv_read(app_id, collection, key)
            .await
            .map_err(service_error)
    }

    async fn kv_version(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<Version>> {
        self.store
            .kv_version(app_id, collection, key)
            .await
            .map_err(service_error)
    }

    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<VersionedPage> {
        let page = self
            .store
            .kv_page(app_id, collection, request, self.read_max_bytes)
            .await
            .map_err(service_error)?;
        Ok(VersionedPage {
            items: page.items,
            cursor: page.next_cursor,
        })
    }

    async fn doc_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        id: DocumentId,
    ) -> ServiceResult<Option<(StoredDoc, Version)>> {
        self.store
            .doc_read(app_id, collection, id)
            .await
            .map_err(service_error)
    }

    async fn doc_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<VersionedPage<StoredDoc>> {
        let page = self
            .store
            .doc_page(app_id, collection, request, self.read_max_bytes)
            .await
            .map_err(service_error)?;
        Ok(VersionedPage {
            items: page.items,
            cursor: page.next_cursor,
        })
    }

    async fn doc_find(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        query: &Query,
        fetch: u32,
    ) -> ServiceResult<Found> {
        self.store
            .doc_find(app_id, collection, query, fetch, self.read_max_bytes)
            .await
            .map_err(service_error)
    }

    async fn dead_letter_open(&self, app_id: AppId, id: DeadLetterId) -> ServiceResult<()> {
        match self
            .store
            .get_dead_letter(id)
            .await
            .map_err(service_error)?
        {
            Some(dead_letter) if dead_letter.app_id == app_id => match dead_letter.resolution {
                None => Ok(()),
                Some(_) => Err(service_error(dead_letter_closed(&dead_letter))),
            },
            _ => Err(no_dead_letter(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_causes_never_reach_the_script() {
        let internal = service_error(StoreError::Internal(
            "syntax error at or near \"SELEC\"".to_owned(),
        ));
        assert_eq!(internal.kind, ServiceErrorKind::Unavailable);
        assert!(
            !internal.message.contains("SELEC"),
            "no SQL in the message: {}",
            internal.message
        );
        let unavailable = service_error(StoreError::Unavailable(
            "connection refused (os error 111) to 10.0.0.5:5432".to_owned(),
        ));
        assert_eq!(unavailable.kind, ServiceErrorKind::Unavailable);
        assert!(
            unavailable.message.contains("try again") && !unavailable.message.contains("10.0.0.5"),
            "says to try again, hides the address: {}",
            unavailable.message
        );
    }

    #[test]
    fn refusals_keep_their_sentence_and_kind() {
        for (err, kind) in [
            (
                StoreError::InvalidInput("the cursor is not one this server issued".into()),
                ServiceErrorKind::Invalid,
            ),
            (
                StoreError::Conflict("the dead letter was already resolved".into()),
                ServiceErrorKind::Conflict,
            ),
            (StoreError::NotFound("app"), ServiceErrorKind::NotFound),
        ] {
            let shown = err.to_string();
            let mapped = service_error(err);
            assert_eq!(mapped.kind, kind, "{shown}");
            if kind != ServiceErrorKind::NotFound {
                assert_eq!(mapped.message, shown, "the sentence is kept");
            }
        }
    }
}
