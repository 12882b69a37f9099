//! The data browser: what people read of an app's KV entries and documents (the dashboard's data
//! pages), and the document indexes they declare. Reading needs `AppKvRead` / `AppDocsRead`
//! (viewers, `app:read` keys); declaring an index, `AppWrite` (it changes how the app's data is
//! kept).

use std::sync::Arc;

use picloud_core::docs::{FieldPath, Query, StoredDoc};
use picloud_core::services::KvListRequest;
use picloud_core::{AppId, Capability, CollectionName, InputError, Principal};
use picloud_store::{DocIndex, Page, Store};

use crate::auth::require;
use crate::error::{ServiceError, ServiceResult};

/// The most bytes of entries or documents one page of the browser brings into the server.
pub const BROWSE_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Which documents to show: those a filter finds (in its order, at most its `$limit`), or a
/// page of the collection by id.
#[derive(Debug, Clone, Default)]
pub struct DocsBrowse {
    /// A filter of the SDK's language (JSON).
    pub filter: Option<serde_json::Value>,
    /// Items per page of the unfiltered list (0: the default); a filter says its own `$limit`.
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Clone)]
pub struct DataService {
    store: Arc<dyn Store>,
}

impl DataService {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    async fn app_exists(&self, app_id: AppId) -> ServiceResult<()> {
        match self.store.get_app(app_id).await? {
            Some(_) => Ok(()),
            None => Err(ServiceError::not_found("app", app_id)),
        }
    }

    /// A page of the collection's KV entries, keys ascending.
    pub async fn kv(
        &self,
        actor: &Principal,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<Page<(String, serde_json::Value)>> {
        require(actor, Capability::AppKvRead(app_id))?;
        self.app_exists(app_id).await?;
        let page = self
            .store
            .kv_page(app_id, collection, request, BROWSE_MAX_BYTES)
            .await?;
        Ok(page.map(|(key, value, _)| (key, value)))
    }

    /// The documents `browse` asks for, each with its id.
    pub async fn docs(
        &self,
        actor: &Principal,
        app_id: AppId,
        collection: &CollectionName,
        browse: &DocsBrowse,
    ) -> ServiceResult<Page<(String, StoredDoc)>> {
        require(actor, Capability::AppDocsRead(app_id))?;
        self.app_exists(app_id).await?;
        match &browse.filter {
            Some(filter) => {
                if browse.cursor.is_some() {
                    return Err(InputError::new(
                        "cursor",
                        "a filtered list has no pages: narrow the filter or raise its $limit",
                    )
                    .into());
                }
                let query = Query::parse(filter)?;
                let found = self
                    .store
                    .doc_find(app_id, collection, &query, query.limit, BROWSE_MAX_BYTES)
                    .await?;
                Ok(Page {
                    items: found
                        .docs
                        .into_iter()
                        .map(|(id, doc, _)| (id.to_string(), doc))
                        .collect(),
                    next_cursor: None,
                })
            }
            None => {
                let request = KvListRequest {
                    prefix: None,
                    // 0: the store's default page.
                    limit: browse.limit,
                    cursor: browse.cursor.clone(),
                };
                let page = self
                    .store
                    .doc_page(app_id, collection, &request, BROWSE_MAX_BYTES)
                    .await?;
                Ok(page.map(|(id, doc, _)| (id, doc)))
            }
        }
    }

    /// Declares `path` indexed in the app's collection (see `DocStore::declare_doc_index`).
    #[tracing::instrument(skip_all, fields(app_id = %app_id, collection = %collection))]
    pub async fn declare_index(
        &self,
        actor: &Principal,
        app_id: AppId,
        collection: &CollectionName,
        path: &str,
    ) -> ServiceResult<DocIndex> {
        require(actor, Capability::AppWrite(app_id))?;
        let path = FieldPath::parse(path).map_err(|err| InputError::new("path", err.message))?;
        self.app_exists(app_id).await?;
        let index = self
            .store
            .declare_doc_index(app_id, collection, &path)
            .await?;
        tracing::info!(path = %index.path, "document index declared");
        Ok(index)
    }

    /// Withdraws the app's index of `path` in the collection (see `DocStore::drop_doc_index`).
    #[tracing::instrument(skip_all, fields(app_id = %app_id, collection = %collection))]
    pub async fn drop_index(
        &self,
        actor: &Principal,
        app_id: AppId,
        collection: &CollectionName,
        path: &str,
    ) -> ServiceResult<()> {
        require(actor, Capability::AppWrite(app_id))?;
        let path = FieldPath::parse(path).map_err(|err| InputError::new("path", err.message))?;
        self.app_exists(app_id).await?;
        if !self.store.drop_doc_index(app_id, collection, &path).await? {
            return Err(ServiceError::NotFound(format!(
                "no index of '{path}' in the collection '{collection}'"
            )));
        }
        tracing::info!(%path, "document index withdrawn");
        Ok(())
    }

    /// The paths the app declared indexed in the collection.
    pub async fn indexes(
        &self,
        actor: &Principal,
        app_id: AppId,
        collection: &CollectionName,
    ) -> ServiceResult<Vec<DocIndex>> {
        require(actor, Capability::AppRead(app_id))?;
        self.app_exists(app_id).await?;
        Ok(self.store.doc_indexes(app_id, collection).await?)
    }
}
